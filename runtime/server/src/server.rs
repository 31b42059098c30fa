//! Listeners and graceful shutdown.
//!
//! Shutdown order: stop accepting, let connections finish the request they
//! are on, stop the uploader, then upload what is left and close the WAL, so
//! that a clean exit leaves nothing in the WAL that is not in the object store.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::{Broker, Components};
use crate::connection;
use crate::settings::{Settings, SettingsError};

/// How long shutdown waits for connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: std::net::SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// A setting cannot work; the settings have to change.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The data dir could not be created.
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The fault drill's watcher thread could not start.
    #[error("cannot start the fault drill for {path}: {source}")]
    FaultDrill {
        /// The fault file.
        path: std::path::PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The object store could not be opened, or the log on it (whether a
    /// retry can help is the storage error's to say).
    #[error("cannot open the log: {0}")]
    Storage(#[from] vigil_storage::StorageError),
    /// The wasm host could not start (not retriable: the machine or the
    /// host settings have to change).
    #[error("cannot start the wasm host: {0}")]
    Host(#[from] vigil_host::HostError),
    /// The detector engine could not start.
    #[error("cannot start detectors: {0}")]
    Detectors(#[source] vigil_engine::DetectorError),
}

/// A running broker.
pub struct Running {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Kafka address actually bound (port 0 resolved).
    pub kafka_addr: std::net::SocketAddr,
    /// Admin address actually bound.
    pub admin_addr: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Binds the listeners, opens the log on `components` and starts serving.
pub async fn start(mut settings: Settings, components: Components) -> Result<Running, ServeError> {
    settings.validate()?;
    let config = &settings.server;
    let kafka = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            what: "kafka",
            addr: config.listen,
            source,
        })?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| ServeError::Bind {
            what: "admin",
            addr: config.admin_listen,
            source,
        })?;
    let kafka_addr = kafka.local_addr().map_err(|source| ServeError::Bind {
        what: "kafka",
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| ServeError::Bind {
        what: "admin",
        addr: config.admin_listen,
        source,
    })?;
    // Listening on port 0 picks a free port: from here on the settings say
    // which one we got, so that it is advertised and names this broker.
    settings.server.listen = kafka_addr;
    settings.server.admin_listen = admin_addr;
    let broker = Broker::open(settings, components).await?;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let lease = broker.log.spawn_lease_renewal(rx.clone());
    tasks.spawn(async move {
        if let Err(e) = lease.await {
            tracing::error!(error = %e, "the lease renewal task failed");
        }
    });
    let uploader = broker.log.spawn_uploader(rx.clone());
    tasks.spawn(async move {
        if let Err(e) = uploader.await {
            tracing::error!(error = %e, "the uploader task failed");
        }
    });
    tasks.spawn(crate::admin::serve(admin, broker.clone(), rx.clone()));
    tasks.spawn(accept_loop(kafka, broker.clone(), rx));
    Ok(Running {
        broker,
        kafka_addr,
        admin_addr,
        shutdown,
        tasks,
    })
}

async fn accept_loop(listener: TcpListener, broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection::serve(stream, peer, broker.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Usually EMFILE: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = until_shutdown(&mut stop) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections did not finish in time; closing them");
        conns.abort_all();
    }
}

/// Resolves once `rx` says the broker is shutting down. A wrapper so that the
/// watch guard never lives inside a `select!` (it is not `Send`).
pub(crate) async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Running {
    /// Stops serving and closes the log cleanly.
    pub async fn shutdown(mut self) {
        // Detector runners commit their checkpoints through the WAL, so they
        // stop while it still takes writes.
        self.broker.detectors.shutdown().await;
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.broker.log.close().await;
        tracing::info!("vigil stopped cleanly");
    }
}
