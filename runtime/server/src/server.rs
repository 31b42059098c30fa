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
use crate::connection::{self, ConnLimits, Endpoint};
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
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] vigil_coord::CoordError),
    #[error("cannot start detectors: {0}")]
    Detectors(#[source] vigil_engine::DetectorError),
    /// TLS files, listeners or the bootstrap super user are unusable.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
}

/// A running broker.
pub struct Running {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Kafka address actually bound (port 0 resolved).
    pub kafka_addr: std::net::SocketAddr,
    /// Every Kafka listener's bound address: `kafka_addr`, then one per
    /// `listener` setting, in order.
    pub kafka_addrs: Vec<std::net::SocketAddr>,
    /// Admin address actually bound.
    pub admin_addr: std::net::SocketAddr,
    /// The `metrics-listen` address actually bound, if set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Binds the listeners, opens the log on `components` and starts serving.
pub async fn start(mut settings: Settings, components: Components) -> Result<Running, ServeError> {
    settings.validate()?;
    let specs = settings.security.kafka_listeners(&settings.server)?;
    let mut kafka_listeners = Vec::with_capacity(specs.len());
    for spec in &specs {
        let bound = TcpListener::bind(spec.bind).await;
        let listener = bound.map_err(|source| ServeError::Bind {
            what: "kafka",
            addr: spec.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            what: "kafka",
            addr: spec.bind,
            source,
        })?;
        kafka_listeners.push((listener, addr));
    }
    // Bound before the log opens, like the other listeners, so that a busy
    // address fails startup before anything is running.
    let metrics = match settings.security.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    what: "metrics",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let kafka_addrs: Vec<_> = kafka_listeners.iter().map(|(_, a)| *a).collect();
    let kafka_addr = kafka_addrs[0];
    let config = &settings.server;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| ServeError::Bind {
            what: "admin",
            addr: config.admin_listen,
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
    settings.security.listener = specs[1..]
        .iter()
        .zip(&kafka_addrs[1..])
        .map(|(spec, addr)| spec.bound_to(*addr))
        .collect();
    let broker = Broker::open(settings, components).await?;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let lease = broker.log.spawn_lease_renewal(rx.clone());
    tasks.spawn(async move {
        if let Err(e) = lease.await {
            tracing::error!(error = %e, "the lease renewal task failed");
        }
    });
    if let Some(cluster) = &broker.cluster {
        tasks.spawn(cluster.follow_security(broker.security.clone(), rx.clone()));
        for task in cluster.spawn(rx.clone()) {
            tasks.spawn(async move {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "a cluster task failed");
                }
            });
        }
    }
    let uploader = broker.log.spawn_uploader(rx.clone());
    tasks.spawn(async move {
        if let Err(e) = uploader.await {
            tracing::error!(error = %e, "the uploader task failed");
        }
    });
    let mut metrics_addr = None;
    if let Some(listener) = metrics {
        metrics_addr = listener.local_addr().ok();
        tasks.spawn(crate::admin::serve_metrics(
            listener,
            broker.clone(),
            rx.clone(),
        ));
    }
    tasks.spawn(crate::security::deployments::follow(
        broker.clone(),
        rx.clone(),
    ));
    tasks.spawn(crate::admin::serve(admin, broker.clone(), rx.clone()));
    let c = &broker.settings.server;
    // One cap over all listeners: it bounds the broker's descriptors.
    let limits = ConnLimits::new(c.max_connections, c.max_connections_per_ip);
    for (index, (listener, _)) in kafka_listeners.into_iter().enumerate() {
        let protocol = specs[index].protocol;
        let tls = broker
            .security
            .tls
            .as_ref()
            .and_then(|t| t.for_kafka(protocol));
        let endpoint = Endpoint {
            index,
            protocol,
            tls,
        };
        tasks.spawn(accept_loop(
            listener,
            endpoint,
            limits.clone(),
            broker.clone(),
            rx.clone(),
        ));
    }
    Ok(Running {
        broker,
        kafka_addr,
        kafka_addrs,
        admin_addr,
        metrics_addr,
        shutdown,
        tasks,
    })
}

async fn accept_loop(
    listener: TcpListener,
    endpoint: Endpoint,
    limits: Arc<ConnLimits>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    let mut backoff = AcceptBackoff::default();
    let mut refused = LogEvery::default();
    loop {
        let paused = backoff.paused_until;
        tokio::select! {
            r = listener.accept(), if paused.is_none() => match r {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    match limits.admit(peer.ip()) {
                        Ok(slot) => {
                            let _ = stream.set_nodelay(true);
                            conns.spawn(connection::serve(stream, peer, broker.clone(), shutdown.clone(), slot, endpoint.clone()));
                        }
                        Err(why) => {
                            // Accepted and closed at once: the client sees a
                            // hang-up and backs off; we keep our descriptors.
                            drop(stream);
                            broker.metrics.conn.reject(why);
                            if let Some(suppressed) = refused.due() {
                                tracing::warn!(%peer, limit = why.reason(), open = limits.open(), suppressed, "connection refused: limit reached");
                            }
                        }
                    }
                }
                Err(e) => {
                    broker.metrics.conn.accept_errors.inc();
                    backoff.failed(&e);
                }
            },
            _ = tokio::time::sleep_until(paused.unwrap_or_else(tokio::time::Instant::now)), if paused.is_some() => {
                backoff.paused_until = None;
            }
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

/// Shortest and longest pause of the accept loop after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// How often a repeated warning is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Pauses accepting after a failure (usually EMFILE/ENFILE: out of file
/// descriptors), doubling the pause while failures go on, so that the loop
/// neither spins nor floods the log; the connections already open keep
/// being served meanwhile.
#[derive(Default)]
struct AcceptBackoff {
    pause: Option<Duration>,
    paused_until: Option<tokio::time::Instant>,
    log: LogEvery,
}

impl AcceptBackoff {
    fn failed(&mut self, e: &std::io::Error) {
        let pause = match self.pause {
            None => ACCEPT_BACKOFF.0,
            Some(p) => (p * 2).min(ACCEPT_BACKOFF.1),
        };
        self.pause = Some(pause);
        self.paused_until = Some(tokio::time::Instant::now() + pause);
        if let Some(suppressed) = self.log.due() {
            tracing::warn!(error = %e, ?pause, suppressed, "accept failed; pausing the Kafka listener (out of file descriptors? see vigil_accept_errors_total)");
        }
    }

    fn succeeded(&mut self) {
        self.pause = None;
    }
}

/// Rate-limits a warning to one per [`LOG_INTERVAL`], counting the rest.
#[derive(Default)]
struct LogEvery {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl LogEvery {
    /// `Some(events suppressed since the last log)` when a log is due.
    fn due(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
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
        if let Some(cluster) = &self.broker.cluster {
            // Hand partitions over while the listeners still answer, so
            // clients learn the new leaders from this broker's metadata.
            cluster.drain().await;
        }
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.broker.log.close().await;
        tracing::info!("vigil stopped cleanly");
    }
}
