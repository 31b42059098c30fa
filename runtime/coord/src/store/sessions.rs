//! Sessions on the object store: heartbeats, observed liveness and
//! reaping (see the module docs of [`super`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::versioned::Head;
use super::{decode, encode, StoreCoordinator};
use crate::error::{CoordError, Result};
use crate::session::{SessionDriver, SessionSettings};
use crate::types::{Leader, NodeId, NodeInfo};
use crate::Coordinator;

/// A heartbeat's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    node: NodeId,
    ttl_ms: u64,
}

/// What this process has seen of one session.
#[derive(Debug, Clone)]
pub(super) struct Observed {
    version: u64,
    since: Instant,
    ttl: Duration,
    dead: bool,
}

impl StoreCoordinator {
    /// The sessions alive as far as this process can tell, reaping those
    /// it has seen unrenewed for their TTL.
    pub(super) async fn live_sessions(&self) -> Result<HashSet<String>> {
        let prefix = self.keys().sessions();
        let newest = self.kv().newest(&prefix).await?;
        let listed_at = Instant::now();
        let mut alive = HashSet::new();
        for (key, version) in newest {
            let Some(sid) = self.keys().parse_session(&key).map(str::to_string) else {
                continue;
            };
            let known = self.inner.observed.lock().get(&sid).cloned();
            let obs = match known {
                Some(o) if o.version == version => o,
                _ => {
                    let Some(head) = self.kv().read_version(&key, version).await? else {
                        // Pruned under us: it was renewed; see it next time.
                        alive.insert(sid);
                        continue;
                    };
                    let o = match head.value {
                        None => Observed {
                            version,
                            since: listed_at,
                            ttl: Duration::ZERO,
                            dead: true,
                        },
                        Some(v) => {
                            let hb: Heartbeat = decode("heartbeat", &key, &v)?;
                            Observed {
                                version,
                                since: listed_at,
                                ttl: Duration::from_millis(hb.ttl_ms),
                                dead: false,
                            }
                        }
                    };
                    self.inner.observed.lock().insert(sid.clone(), o.clone());
                    o
                }
            };
            if obs.dead {
                continue;
            }
            if listed_at.duration_since(obs.since) <= obs.ttl {
                alive.insert(sid);
                continue;
            }
            // Unrenewed for its TTL: reap it, racing its renewal.
            if self.kv().create(&key, version + 1, None).await? {
                tracing::warn!(session = %sid, "reaped an expired coordinator session");
                self.inner.observed.lock().insert(
                    sid,
                    Observed {
                        version: version + 1,
                        since: listed_at,
                        ttl: Duration::ZERO,
                        dead: true,
                    },
                );
            } else {
                alive.insert(sid);
            }
        }
        Ok(alive)
    }

    /// Creates a new session's first heartbeat: its id, its renewal
    /// driver, and when the creating write started.
    pub(super) async fn start_session(
        &self,
        node: &NodeInfo,
        settings: SessionSettings,
    ) -> Result<(String, Arc<Driver>, Instant)> {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let key = self.keys().session(&sid);
        let heartbeat = encode(
            "heartbeat",
            &key,
            &Heartbeat {
                node: node.node_id,
                ttl_ms: settings.ttl.as_millis() as u64,
            },
        )?;
        let started = Instant::now();
        if !self.kv().create(&key, 1, Some(&heartbeat)).await? {
            return Err(CoordError::store(
                "put",
                &key,
                "a fresh session id was already taken",
            ));
        }
        let driver = Arc::new(Driver {
            coord: self.clone(),
            key,
            heartbeat,
            version: AtomicU64::new(1),
            renewing: tokio::sync::Mutex::new(()),
        });
        Ok((sid, driver, started))
    }
}

/// Renews one session's heartbeat.
pub(super) struct Driver {
    coord: StoreCoordinator,
    key: String,
    heartbeat: Vec<u8>,
    version: AtomicU64,
    renewing: tokio::sync::Mutex<()>,
}

#[async_trait]
impl SessionDriver for Driver {
    async fn renew(&self, _session: &str) -> Result<Option<Duration>> {
        // One renewal at a time: two would race each other for the next
        // version and the loser would take itself for reaped.
        let _one = self.renewing.lock().await;
        let v = self.version.load(Ordering::SeqCst);
        if self
            .coord
            .kv()
            .create(&self.key, v + 1, Some(&self.heartbeat))
            .await?
        {
            self.version.store(v + 1, Ordering::SeqCst);
            let hb: Heartbeat = decode("heartbeat", &self.key, &self.heartbeat)?;
            return Ok(Some(Duration::from_millis(hb.ttl_ms)));
        }
        match self.coord.kv().head(&self.key).await? {
            // A reaper wrote the deletion: the session is gone.
            None | Some(Head { value: None, .. }) => Ok(None),
            // Only this session writes heartbeats: a newer one is ours (a
            // retried request that landed twice). Catch up, renew next time.
            Some(Head { version, .. }) => {
                self.version.fetch_max(version, Ordering::SeqCst);
                Err(CoordError::store(
                    "put",
                    &self.key,
                    "heartbeat version moved on; catching up",
                ))
            }
        }
    }

    async fn leaders(&self) -> Result<Vec<Leader>> {
        self.coord.leaders().await
    }

    async fn end(&self, _session: &str) -> Result<()> {
        let v = self.version.load(Ordering::SeqCst);
        self.coord
            .kv()
            .create(&self.key, v + 1, None)
            .await
            .map(|_| ())
    }
}
