//! Epoch fencing: a broker that lost the log can never acknowledge a write,
//! commit a manifest or collect garbage, however long it was paused.
//!
//! Each broker that opens the log claims a writer epoch by creating
//! `epochs/<epoch>.json` with `PutMode::Create`. Claims are never deleted, so
//! a create of an already claimed epoch always fails and epochs only grow —
//! unlike manifest versions, whose old objects are deleted (a create on a
//! deleted manifest key succeeds, which is how a stale owner used to slip
//! through). "Am I still the owner?" is one listing of the claims after ours.
//!
//! Acknowledging needs more than a flag: a paused broker wakes up believing
//! it owns the log. So every acknowledgement (both WAL modes), every manifest
//! commit and every garbage collection asks [`Fence::confirm`], which passes
//! only while the last successful check *started* less than `validity` ago
//! (a monotonic clock keeps running while a process is stopped), and checks
//! again otherwise. A newcomer that claims a higher epoch waits `validity`
//! (plus a margin) before it reads the log: by then every check the old owner
//! started before the claim has expired, and every later check sees the
//! claim. Records the old owner acknowledged before that are in the store
//! (object WAL) or were uploaded; what a paused local-WAL broker acked but
//! never uploaded stays on its disk (the limit of local mode, see
//! docs/design/0009-hardening.md).
//!
//! The price: with the object store as the coordinator, a broker that cannot
//! reach the store for longer than `validity` stops acknowledging (retriable
//! errors) until it can confirm ownership again. That is the safe side of a
//! partition: a broker cut off from the store cannot know it still owns the
//! log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::paths;

/// How often a claim is retried when other brokers claim concurrently.
const MAX_CLAIM_ATTEMPTS: usize = 64;

/// What an epoch claim object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    epoch: u64,
    broker: String,
    /// Tells our own claim (a retried create whose reply was lost) from
    /// another broker's claim of the same epoch under the same name.
    nonce: String,
}

/// This broker's claim on the log and the proof of its freshness.
pub struct Fence {
    store: Arc<dyn ObjectStore>,
    epoch: u64,
    validity: Duration,
    confirm_wait: Duration,
    /// Start of the last check that found no newer claim.
    confirmed: parking_lot::Mutex<Option<Instant>>,
    fenced: Arc<AtomicBool>,
    /// The newer epoch and its broker, once seen.
    superseded_by: parking_lot::Mutex<Option<(u64, String)>>,
    /// For checks from the local WAL's writer thread.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("epoch", &self.epoch)
            .field("validity", &self.validity)
            .field("fenced", &self.is_fenced())
            .finish()
    }
}

/// The highest claimed epoch, if any.
async fn highest_claim(store: &Arc<dyn ObjectStore>) -> Result<Option<u64>> {
    let prefix = paths::epochs_prefix();
    let metas = crate::store::list_all(store.as_ref(), &prefix).await?;
    Ok(metas
        .iter()
        .filter_map(|m| paths::parse_epoch_claim(&m.location))
        .max())
}

async fn read_claim(store: &Arc<dyn ObjectStore>, epoch: u64) -> Result<Option<Claim>> {
    let key = paths::epoch_claim(epoch);
    let bytes = match store.get(&key).await {
        Ok(g) => g
            .bytes()
            .await
            .map_err(|e| StorageError::store("get", &key, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(StorageError::store("get", &key, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StorageError::Corrupt {
            what: "epoch claim",
            key: key.to_string(),
            reason: e.to_string(),
        })
}

impl Fence {
    /// Claims the next writer epoch: above every claim and above `floor`
    /// (the latest manifest's writer epoch, for stores written before epoch
    /// claims existed). Call from within a tokio runtime.
    pub async fn claim(
        store: Arc<dyn ObjectStore>,
        broker: &str,
        floor: u64,
        validity: Duration,
    ) -> Result<Fence> {
        let nonce = uuid::Uuid::new_v4().to_string();
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let epoch = highest_claim(&store).await?.unwrap_or(0).max(floor) + 1;
            let claim = Claim {
                epoch,
                broker: broker.to_string(),
                nonce: nonce.clone(),
            };
            let key = paths::epoch_claim(epoch);
            let body = serde_json::to_vec(&claim).map_err(|e| StorageError::Corrupt {
                what: "epoch claim",
                key: key.to_string(),
                reason: format!("cannot serialize: {e}"),
            })?;
            // No newer claim can exist before ours has landed: a claimer
            // picks a number above the highest it lists.
            let started = Instant::now();
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let landed = match store.put_opts(&key, PutPayload::from(body), opts).await {
                Ok(_) => true,
                // Lost reply of our own create, or another broker's claim.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    read_claim(&store, epoch).await?.as_ref() == Some(&claim)
                }
                Err(e) => match read_claim(&store, epoch).await {
                    Ok(Some(c)) if c == claim => true,
                    _ => return Err(StorageError::store("put", &key, e)),
                },
            };
            if landed {
                tracing::info!(epoch, broker, "claimed writer epoch");
                return Ok(Fence {
                    store,
                    epoch,
                    validity,
                    confirm_wait: validity.max(Duration::from_secs(1)),
                    confirmed: parking_lot::Mutex::new(Some(started)),
                    fenced: Arc::new(AtomicBool::new(false)),
                    superseded_by: parking_lot::Mutex::new(None),
                    runtime: tokio::runtime::Handle::current(),
                });
            }
        }
        Err(StorageError::Invalid(format!(
            "could not claim a writer epoch after {MAX_CLAIM_ATTEMPTS} attempts: other brokers keep claiming (retriable)"
        )))
    }

    /// A fence for `epoch` without writing a claim, confirmed for an hour:
    /// for unit tests of components that only need an epoch.
    #[cfg(test)]
    pub(crate) fn unclaimed_for_tests(store: Arc<dyn ObjectStore>, epoch: u64) -> Fence {
        Fence {
            store,
            epoch,
            validity: Duration::from_secs(3600),
            confirm_wait: Duration::from_secs(1),
            confirmed: parking_lot::Mutex::new(Some(Instant::now())),
            fenced: Arc::new(AtomicBool::new(false)),
            superseded_by: parking_lot::Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// This broker's writer epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How long a successful check lets this broker acknowledge.
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// Whether a newer epoch was seen (for good: a fenced broker never
    /// writes again).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// The fenced flag, shared with completions that learn it first.
    pub(crate) fn fenced_flag(&self) -> Arc<AtomicBool> {
        self.fenced.clone()
    }

    /// Records that epoch `theirs` of broker `by` superseded this one.
    pub(crate) fn mark_fenced(&self, theirs: u64, by: &str) {
        *self.superseded_by.lock() = Some((theirs, by.to_string()));
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// The error a fenced broker answers with.
    pub fn fenced_error(&self) -> StorageError {
        let (theirs, by) = self
            .superseded_by
            .lock()
            .clone()
            .unwrap_or((self.epoch + 1, "a newer broker".to_string()));
        StorageError::Fenced {
            ours: self.epoch,
            theirs,
            by,
        }
    }

    /// Whether ownership was confirmed recently enough to acknowledge now.
    pub fn valid_now(&self) -> bool {
        !self.is_fenced()
            && self
                .confirmed
                .lock()
                .is_some_and(|t| t.elapsed() < self.validity)
    }

    /// Lists the claims above ours: none confirms ownership (from the time
    /// the check started), one fences this broker for good.
    pub async fn check(&self) -> Result<()> {
        if self.is_fenced() {
            return Err(self.fenced_error());
        }
        let started = Instant::now();
        let prefix = paths::epochs_prefix();
        let ours = paths::epoch_claim(self.epoch);
        let listing = tokio::time::timeout(
            self.confirm_wait,
            self.store
                .list_with_offset(Some(&prefix), &ours)
                .try_collect::<Vec<_>>(),
        )
        .await;
        let metas = match listing {
            Err(_) => {
                return Err(StorageError::OwnershipUnconfirmed {
                    epoch: self.epoch,
                    reason: format!(
                        "listing epoch claims took longer than {:?}",
                        self.confirm_wait
                    ),
                })
            }
            Ok(Err(e)) => return Err(StorageError::store("list", &prefix, e)),
            Ok(Ok(m)) => m,
        };
        let newer = metas
            .iter()
            .filter_map(|m| paths::parse_epoch_claim(&m.location))
            .filter(|e| *e > self.epoch)
            .max();
        match newer {
            Some(theirs) => {
                let by = match read_claim(&self.store, theirs).await {
                    Ok(Some(c)) => c.broker,
                    _ => "unknown".to_string(),
                };
                tracing::error!(ours = self.epoch, theirs, %by, "another broker claimed the log; this broker stops writing");
                self.mark_fenced(theirs, &by);
                Err(self.fenced_error())
            }
            None => {
                let mut confirmed = self.confirmed.lock();
                if confirmed.is_none_or(|t| t < started) {
                    *confirmed = Some(started);
                }
                Ok(())
            }
        }
    }

    /// Passes if ownership is confirmed now, checking again (with backoff,
    /// for at most about `validity`, at least a second) if the last
    /// confirmation is too old. Fails with `Fenced` for good, or with the
    /// retriable `OwnershipUnconfirmed` when the store cannot tell.
    pub async fn confirm(&self) -> Result<()> {
        if self.valid_now() {
            return Ok(());
        }
        let deadline = Instant::now() + self.confirm_wait;
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.check().await {
                Ok(()) => return Ok(()),
                Err(e @ StorageError::Fenced { .. }) => return Err(e),
                Err(e) => {
                    if Instant::now() + backoff >= deadline {
                        tracing::warn!(epoch = self.epoch, error = %e, "cannot confirm log ownership; refusing to acknowledge");
                        return Err(StorageError::OwnershipUnconfirmed {
                            epoch: self.epoch,
                            reason: e.to_string(),
                        });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// [`confirm`](Fence::confirm) from a thread outside the runtime (the
    /// local WAL's writer).
    pub fn confirm_blocking(&self) -> Result<()> {
        if self.valid_now() {
            return Ok(());
        }
        self.runtime.block_on(self.confirm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn claims_grow_and_a_newer_claim_fences_the_older() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Fence::claim(store.clone(), "a", 0, Duration::from_secs(60))
            .await
            .expect("a claims");
        assert_eq!(a.epoch(), 1);
        a.check().await.expect("a owns the log");
        let b = Fence::claim(store.clone(), "b", 0, Duration::from_secs(60))
            .await
            .expect("b claims");
        assert_eq!(b.epoch(), 2);
        // Still valid by time, but the check sees b.
        match a.check().await {
            Err(StorageError::Fenced { ours, theirs, by }) => {
                assert_eq!((ours, theirs, by.as_str()), (1, 2, "b"));
            }
            other => panic!("expected fencing, got {other:?}"),
        }
        assert!(!a.valid_now());
        assert!(matches!(
            a.confirm().await,
            Err(StorageError::Fenced { .. })
        ));
        b.confirm().await.expect("b owns the log");
        // A floor from an older manifest format lifts the next epoch.
        let c = Fence::claim(store, "c", 9, Duration::from_secs(60))
            .await
            .expect("c claims");
        assert_eq!(c.epoch(), 10);
    }

    #[tokio::test]
    async fn an_expired_confirmation_is_checked_again_before_it_passes() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Fence::claim(store.clone(), "a", 0, Duration::from_millis(1))
            .await
            .expect("claim");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!a.valid_now(), "the claim's confirmation expired");
        a.confirm().await.expect("a fresh check confirms");
        let _b = Fence::claim(store, "b", 0, Duration::from_secs(1))
            .await
            .expect("claim");
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            a.confirm().await,
            Err(StorageError::Fenced { .. })
        ));
    }
}
