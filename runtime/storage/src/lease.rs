//! The owner lease: how a broker learns, before taking over a log, whether
//! another broker is still serving it.
//!
//! The owner renews `owner/lease.json` (a counter, its epoch and name) every
//! lease interval and marks it released on a clean shutdown. A broker about to
//! open the log reads it; if it is held and not released, it waits three
//! intervals and reads again. A changed counter means the owner is alive: the
//! newcomer refuses to start (unless told to take over, which fences the
//! owner). An unchanged one means the owner is gone (crashed), so taking over
//! is safe. Comparing counters, not timestamps, keeps clocks out of it.
//!
//! The lease only tells alive from dead. Fencing — making sure the old owner
//! cannot acknowledge anything once the newcomer serves — is the epoch
//! claim's job ([`crate::fence`]); the lease carries the old owner's
//! confirmation validity so the newcomer knows how long to wait after its
//! claim.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::paths;

/// The lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    /// Writer epoch of the holder.
    pub epoch: u64,
    /// Holder's name.
    pub broker: String,
    /// Renewal counter.
    pub renewals: u64,
    /// Set on a clean shutdown.
    pub released: bool,
    /// How long one ownership confirmation lets the holder acknowledge
    /// (absent in leases written before epoch claims).
    #[serde(default)]
    pub validity_ms: Option<u64>,
}

async fn read(store: &Arc<dyn ObjectStore>) -> Result<Option<Lease>> {
    let key = paths::lease();
    let get = match store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(StorageError::ObjectStore {
                op: "get",
                key: key.to_string(),
                source,
            })
        }
    };
    let bytes = get
        .bytes()
        .await
        .map_err(|source| StorageError::ObjectStore {
            op: "get",
            key: key.to_string(),
            source,
        })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StorageError::Corrupt {
            what: "lease",
            key: key.to_string(),
            reason: e.to_string(),
        })
}

/// Writes the lease.
pub(crate) async fn write(store: &Arc<dyn ObjectStore>, lease: &Lease) -> Result<()> {
    let key = paths::lease();
    let body = serde_json::to_vec(lease).map_err(|e| StorageError::Corrupt {
        what: "lease",
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    store
        .put(&key, PutPayload::from(body))
        .await
        .map(|_| ())
        .map_err(|source| StorageError::ObjectStore {
            op: "put",
            key: key.to_string(),
            source,
        })
}

/// Returns once claiming the log is safe: no lease, a released one, or one
/// that was not renewed for three intervals. With `takeover`, a live owner is
/// overridden (and will be fenced). The answer is how long the newcomer must
/// wait after claiming its epoch before it reads the log: the holder's
/// confirmation validity plus a margin, or nothing when no holder can still
/// be acknowledging (no lease, or a released one).
pub(crate) async fn wait_until_free(
    store: &Arc<dyn ObjectStore>,
    interval: Duration,
    takeover: bool,
) -> Result<Option<Duration>> {
    let Some(first) = read(store).await? else {
        return Ok(None);
    };
    if first.released {
        return Ok(None);
    }
    // The holder's own validity (it may run with other settings), and half
    // an interval for clock-rate differences and scheduling.
    let fence_wait = first
        .validity_ms
        .map_or(interval * 2, Duration::from_millis)
        + interval / 2;
    if takeover {
        tracing::warn!(holder = %first.broker, epoch = first.epoch, "taking over the log from a broker that may still run; it will be fenced");
        return Ok(Some(fence_wait));
    }
    tracing::info!(holder = %first.broker, epoch = first.epoch, "the log's lease is held; checking whether its owner is alive");
    // Waiting for the owner's next renewals is what tells alive from dead.
    tokio::time::sleep(interval * 3).await;
    match read(store).await? {
        Some(now) if !now.released && now.renewals != first.renewals => {
            Err(StorageError::OwnedElsewhere {
                broker: now.broker,
                epoch: now.epoch,
            })
        }
        Some(now) if now.released => Ok(None),
        _ => Ok(Some(fence_wait)),
    }
}

impl crate::log::Log {
    /// Starts renewing the owner lease until `shutdown` or fencing. Each
    /// renewal first checks the epoch claims: that keeps the confirmation
    /// acknowledgements need fresh, and an idle broker learns it was taken
    /// over within one interval instead of at its next write.
    pub fn spawn_lease_renewal(
        self: &Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(log.config.lease_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renewals = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                if log.is_fenced() {
                    return;
                }
                let written = log.written_unconfirmed();
                match log.fence.check().await {
                    Err(StorageError::Fenced { theirs, by, .. }) => {
                        tracing::error!(epoch = theirs, %by, "another broker took over the log; this one stops writing");
                        return;
                    }
                    // The store may be briefly unreachable: keep trying.
                    Err(e) => tracing::warn!(error = %e, "could not check log ownership"),
                    // The check started after those writes: they are safe.
                    Ok(()) => log.publish_written(written),
                }
                renewals += 1;
                let lease = crate::lease::Lease {
                    epoch: log.epoch,
                    broker: log.config.broker_id.clone(),
                    renewals,
                    released: false,
                    validity_ms: Some(log.fence.validity().as_millis() as u64),
                };
                if let Err(e) = crate::lease::write(&log.private, &lease).await {
                    tracing::warn!(error = %e, "could not renew the owner lease");
                }
            }
        })
    }
}
