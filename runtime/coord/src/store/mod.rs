//! The object store backend: coordination through conditional writes
//! (`PutMode::Create` of numbered versions, see [`versioned`]), so an
//! embedded broker needs no other service. Works on LocalFileSystem,
//! InMemory and S3 stores with conditional PUT (SeaweedFS, AWS S3).
//!
//! A session is a heartbeat key its node rewrites every renewal. Nothing
//! expires by itself in an object store, so liveness is observed: a node
//! that sees another session's heartbeat unchanged for that session's TTL
//! (by its own monotonic clock, from when it first saw that version) reaps
//! it by writing a deletion as the heartbeat's next version. Renewal and
//! reaping race for the same version, so exactly one wins: a session that
//! was reaped learns it at its next renewal, and a reaper never kills a
//! session that renewed. The holder's renewal completed before the reaper
//! first saw it, so the holder's validity (renewal start + TTL) has passed
//! when the reaper's observation ends. Leaderships and memberships name
//! their session and count only while it lives.
//!
//! Costs: reads are listings (each `leaders()` lists the sessions and the
//! leader records), watches poll. Fine for one broker and small clusters;
//! docs/design/0014-coordinator.md says when to use etcd instead.

mod poll;
pub(crate) mod versioned;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{CoordError, Result};
use crate::keys::{validate_meta_key, Keys};
use crate::session::{Session, SessionDriver, SessionSettings};
use crate::types::{
    Expect, Leader, LeaderEpoch, LeaderWatch, Member, MetaWatch, NodeId, NodeInfo, NodeWatch,
    TopicPartition, Versioned as Value,
};
use crate::Coordinator;
use versioned::{Head, Versioned};

/// How many times a write is retried when a concurrent writer took the
/// version first (each attempt re-reads).
const MAX_CAS_ATTEMPTS: usize = 32;

/// Settings of the object store backend.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Directory of the coordinator's objects in the store.
    pub root: String,
    /// How often watches poll.
    pub poll_interval: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            root: "coord".to_string(),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// A heartbeat's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    node: NodeId,
    ttl_ms: u64,
}

/// What this process has seen of one session.
#[derive(Debug, Clone)]
struct Observed {
    version: u64,
    since: Instant,
    ttl: Duration,
    dead: bool,
}

struct Inner {
    kv: Versioned,
    keys: Keys,
    poll: Duration,
    observed: parking_lot::Mutex<HashMap<String, Observed>>,
}

/// The object store coordinator; cheap to clone.
#[derive(Clone)]
pub struct StoreCoordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StoreCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCoordinator")
            .field("root", &self.inner.keys.root())
            .finish()
    }
}

fn encode<T: Serialize>(what: &'static str, key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| CoordError::corrupt(what, key, e))
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, key: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| CoordError::corrupt(what, key, e))
}

impl StoreCoordinator {
    /// A coordinator on `store`.
    pub fn new(store: Arc<dyn ObjectStore>, settings: StoreSettings) -> StoreCoordinator {
        StoreCoordinator {
            inner: Arc::new(Inner {
                kv: Versioned { store },
                keys: Keys::new(&settings.root),
                poll: settings.poll_interval,
                observed: parking_lot::Mutex::new(HashMap::new()),
            }),
        }
    }

    fn kv(&self) -> &Versioned {
        &self.inner.kv
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The sessions alive as far as this process can tell, reaping those
    /// it has seen unrenewed for their TTL.
    async fn live_sessions(&self) -> Result<HashSet<String>> {
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

    async fn head_of<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
    ) -> Result<(u64, Option<T>)> {
        match self.kv().head(key).await? {
            None => Ok((0, None)),
            Some(Head {
                version,
                value: None,
            }) => Ok((version, None)),
            Some(Head {
                version,
                value: Some(v),
            }) => Ok((version, Some(decode(what, key, &v)?))),
        }
    }

    async fn live_member(&self, id: NodeId) -> Result<Option<Member>> {
        let (_, m): (_, Option<Member>) = self.head_of("member", &self.keys().member(id)).await?;
        match m {
            Some(m) if self.live_sessions().await?.contains(&m.session) => Ok(Some(m)),
            _ => Ok(None),
        }
    }

    /// Live members with their record versions, by full key.
    async fn member_snapshot(&self) -> Result<BTreeMap<String, (u64, Member)>> {
        let heads = self.kv().heads(&self.keys().members()).await?;
        let alive = self.live_sessions().await?;
        let mut out = BTreeMap::new();
        for (key, head) in heads {
            if let Some(v) = head.value {
                let m: Member = decode("member", &key, &v)?;
                if alive.contains(&m.session) {
                    out.insert(key, (head.version, m));
                }
            }
        }
        Ok(out)
    }

    /// Live leaders by full key.
    async fn leader_snapshot(&self) -> Result<BTreeMap<String, Leader>> {
        let heads = self.kv().heads(&self.keys().leaders()).await?;
        let alive = self.live_sessions().await?;
        let mut out = BTreeMap::new();
        for (key, head) in heads {
            if let Some(v) = head.value {
                let l: Leader = decode("leader", &key, &v)?;
                if !l.session.is_empty() && alive.contains(&l.session) {
                    out.insert(key, l);
                }
            }
        }
        Ok(out)
    }

    /// Reads a partition's record: (version, last leader, whether it lives).
    async fn partition(&self, tp: &TopicPartition) -> Result<(u64, Option<Leader>, bool)> {
        let (version, rec): (_, Option<Leader>) =
            self.head_of("leader", &self.keys().leader(tp)).await?;
        let live = match &rec {
            Some(l) if !l.session.is_empty() => self.live_sessions().await?.contains(&l.session),
            _ => false,
        };
        Ok((version, rec, live))
    }

    fn cas_exhausted(key: &str) -> CoordError {
        CoordError::Conflict {
            key: key.to_string(),
            expected: "a quiet moment".to_string(),
            found: format!("{MAX_CAS_ATTEMPTS} concurrent writes in a row"),
        }
    }

    fn conflict(key: &str, expect: Expect, found: &Option<Head>) -> CoordError {
        CoordError::Conflict {
            key: key.to_string(),
            expected: match expect {
                Expect::Any => "anything".to_string(),
                Expect::Absent => "no value".to_string(),
                Expect::Version(v) => format!("version {v}"),
            },
            found: match found {
                Some(Head {
                    version,
                    value: Some(_),
                }) => format!("version {version}"),
                _ => "no value".to_string(),
            },
        }
    }
}

struct Driver {
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

#[async_trait]
impl Coordinator for StoreCoordinator {
    fn backend(&self) -> &'static str {
        "object-store"
    }

    async fn join(&self, node: NodeInfo, settings: SessionSettings) -> Result<Arc<Session>> {
        settings.validate()?;
        let member_key = self.keys().member(node.node_id);
        // A previous life of this node id may still be renewing, or may have
        // crashed: wait up to one TTL for it to expire before refusing.
        let deadline = Instant::now() + settings.ttl + self.inner.poll;
        let member_version = loop {
            let (version, m): (_, Option<Member>) = self.head_of("member", &member_key).await?;
            match m {
                Some(m) if self.live_sessions().await?.contains(&m.session) => {
                    if Instant::now() >= deadline {
                        return Err(CoordError::DuplicateNode {
                            node: node.node_id,
                            session: m.session,
                        });
                    }
                    tokio::time::sleep(self.inner.poll.min(settings.ttl / 4)).await;
                }
                _ => break version,
            }
        };
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let hb_key = self.keys().session(&sid);
        let heartbeat = encode(
            "heartbeat",
            &hb_key,
            &Heartbeat {
                node: node.node_id,
                ttl_ms: settings.ttl.as_millis() as u64,
            },
        )?;
        let started = Instant::now();
        if !self.kv().create(&hb_key, 1, Some(&heartbeat)).await? {
            return Err(CoordError::store(
                "put",
                &hb_key,
                "a fresh session id was already taken",
            ));
        }
        let driver = Arc::new(Driver {
            coord: self.clone(),
            key: hb_key,
            heartbeat,
            version: AtomicU64::new(1),
            renewing: tokio::sync::Mutex::new(()),
        });
        let member = Member {
            node: node.clone(),
            session: sid.clone(),
        };
        let body = encode("member", &member_key, &member)?;
        if !self
            .kv()
            .create(&member_key, member_version + 1, Some(&body))
            .await?
        {
            let _ = driver.end(&sid).await;
            let holder = self.live_member(node.node_id).await?.map(|m| m.session);
            return Err(CoordError::DuplicateNode {
                node: node.node_id,
                session: holder.unwrap_or_else(|| "(a concurrent join)".to_string()),
            });
        }
        tracing::info!(node = node.node_id, session = %sid, "joined the cluster (object store)");
        Ok(Session::start(
            node,
            sid,
            settings,
            started,
            settings.ttl,
            driver,
        ))
    }

    async fn members(&self) -> Result<Vec<Member>> {
        Ok(self
            .member_snapshot()
            .await?
            .into_values()
            .map(|(_, m)| m)
            .collect())
    }

    async fn watch_members(&self) -> Result<mpsc::Receiver<NodeWatch>> {
        let me = self.clone();
        Ok(poll::spawn(
            self.keys().clone(),
            self.inner.poll,
            crate::watch::Members,
            move || {
                let me = me.clone();
                async move {
                    let snap = me.member_snapshot().await?;
                    snap.into_iter()
                        .map(|(k, (v, m))| {
                            Ok((k.clone(), (v, Bytes::from(encode("member", &k, &m)?))))
                        })
                        .collect()
                }
            },
        ))
    }

    async fn acquire(&self, session: &Session, tp: &TopicPartition) -> Result<Leader> {
        let key = self.keys().leader(tp);
        for _ in 0..MAX_CAS_ATTEMPTS {
            session.ensure_alive()?;
            let started = Instant::now();
            let (version, rec, live) = self.partition(tp).await?;
            if let Some(l) = rec.as_ref().filter(|_| live) {
                if l.session == session.id() {
                    return Ok(l.clone());
                }
                return Err(CoordError::HeldElsewhere {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    leader: l.node,
                    epoch: l.epoch,
                });
            }
            let leader = Leader {
                tp: tp.clone(),
                node: session.node().node_id,
                epoch: rec.map_or(0, |l| l.epoch) + 1,
                session: session.id().to_string(),
                fence_wait_ms: 0,
            };
            if self
                .kv()
                .create(&key, version + 1, Some(&encode("leader", &key, &leader)?))
                .await?
            {
                session.hold(&leader, started);
                return Ok(leader);
            }
        }
        Err(Self::cas_exhausted(&key))
    }

    async fn transfer(
        &self,
        by: &Session,
        tp: &TopicPartition,
        expected: Option<LeaderEpoch>,
        to: NodeId,
    ) -> Result<Leader> {
        let key = self.keys().leader(tp);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let started = Instant::now();
            let target = self
                .live_member(to)
                .await?
                .ok_or(CoordError::UnknownNode { node: to })?;
            let (version, rec, live) = self.partition(tp).await?;
            let epoch = rec.as_ref().map_or(0, |l| l.epoch);
            if let Some(exp) = expected.filter(|e| *e != epoch) {
                return Err(CoordError::Conflict {
                    key: tp.to_string(),
                    expected: format!("epoch {exp}"),
                    found: format!("epoch {epoch}"),
                });
            }
            let fence_wait = match rec.as_ref().filter(|_| live) {
                Some(l) if l.session == by.id() => {
                    by.relinquish(tp, l.epoch);
                    Duration::ZERO
                }
                Some(_) => by.settings().validity,
                None => Duration::ZERO,
            };
            let leader = Leader {
                tp: tp.clone(),
                node: to,
                epoch: epoch + 1,
                session: target.session.clone(),
                fence_wait_ms: fence_wait.as_millis() as u64,
            };
            if self
                .kv()
                .create(&key, version + 1, Some(&encode("leader", &key, &leader)?))
                .await?
            {
                if target.session == by.id() {
                    by.hold(&leader, started);
                }
                tracing::info!(%tp, to, epoch = leader.epoch, "leadership transferred");
                return Ok(leader);
            }
        }
        Err(Self::cas_exhausted(&key))
    }

    async fn release(
        &self,
        session: &Session,
        tp: &TopicPartition,
        epoch: LeaderEpoch,
    ) -> Result<()> {
        session.relinquish(tp, epoch);
        let key = self.keys().leader(tp);
        let (version, rec, _) = self.partition(tp).await?;
        let Some(l) = rec.filter(|l| l.session == session.id() && l.epoch == epoch) else {
            return Ok(());
        };
        // A vacant record keeps the epoch, so the next leader's is higher.
        let vacant = Leader {
            session: String::new(),
            fence_wait_ms: 0,
            ..l
        };
        self.kv()
            .create(&key, version + 1, Some(&encode("leader", &key, &vacant)?))
            .await
            .map(|_| ())
    }

    async fn leader(&self, tp: &TopicPartition) -> Result<Option<Leader>> {
        let (_, rec, live) = self.partition(tp).await?;
        Ok(rec.filter(|_| live))
    }

    async fn leaders(&self) -> Result<Vec<Leader>> {
        let mut v: Vec<Leader> = self.leader_snapshot().await?.into_values().collect();
        v.sort_by(|a, b| a.tp.cmp(&b.tp));
        Ok(v)
    }

    async fn watch_leaders(&self) -> Result<mpsc::Receiver<LeaderWatch>> {
        let me = self.clone();
        Ok(poll::spawn(
            self.keys().clone(),
            self.inner.poll,
            crate::watch::Leaders(Keys::parse_leader),
            move || {
                let me = me.clone();
                async move {
                    me.leader_snapshot()
                        .await?
                        .into_iter()
                        .map(|(k, l)| {
                            Ok((
                                k.clone(),
                                (l.epoch as u64, Bytes::from(encode("leader", &k, &l)?)),
                            ))
                        })
                        .collect()
                }
            },
        ))
    }

    async fn meta_get(&self, key: &str) -> Result<Option<Value>> {
        validate_meta_key(key)?;
        Ok(match self.kv().head(&self.keys().meta(key)).await? {
            Some(Head {
                version,
                value: Some(value),
            }) => Some(Value {
                key: key.to_string(),
                value,
                version,
            }),
            _ => None,
        })
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<Value>> {
        let heads = self.kv().heads(&self.keys().meta(prefix)).await?;
        Ok(heads
            .into_iter()
            .filter_map(|(k, h)| {
                Some(Value {
                    key: self.keys().parse_meta(&k)?.to_string(),
                    value: h.value?,
                    version: h.version,
                })
            })
            .collect())
    }

    async fn meta_put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64> {
        validate_meta_key(key)?;
        let full = self.keys().meta(key);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let head = self.kv().head(&full).await?;
            let present = head
                .as_ref()
                .filter(|h| h.value.is_some())
                .map(|h| h.version);
            let ok = match expect {
                Expect::Any => true,
                Expect::Absent => present.is_none(),
                Expect::Version(v) => present == Some(v),
            };
            if !ok {
                return Err(Self::conflict(key, expect, &head));
            }
            let next = head.as_ref().map_or(0, |h| h.version) + 1;
            if self.kv().create(&full, next, Some(&value)).await? {
                return Ok(next);
            }
            if expect != Expect::Any {
                let now = self.kv().head(&full).await?;
                return Err(Self::conflict(key, expect, &now));
            }
        }
        Err(Self::cas_exhausted(key))
    }

    async fn meta_delete(&self, key: &str, expect: Expect) -> Result<()> {
        validate_meta_key(key)?;
        let full = self.keys().meta(key);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let head = self.kv().head(&full).await?;
            let present = head
                .as_ref()
                .filter(|h| h.value.is_some())
                .map(|h| h.version);
            let ok = match expect {
                Expect::Any => true,
                Expect::Absent => present.is_none(),
                Expect::Version(v) => present == Some(v),
            };
            if !ok {
                return Err(Self::conflict(key, expect, &head));
            }
            let Some(version) = present else {
                return Ok(());
            };
            if self.kv().create(&full, version + 1, None).await? {
                return Ok(());
            }
            if expect != Expect::Any {
                let now = self.kv().head(&full).await?;
                return Err(Self::conflict(key, expect, &now));
            }
        }
        Err(Self::cas_exhausted(key))
    }

    async fn watch_meta(&self, prefix: &str) -> Result<mpsc::Receiver<MetaWatch>> {
        let me = self.clone();
        let full = self.keys().meta(prefix);
        Ok(poll::spawn(
            self.keys().clone(),
            self.inner.poll,
            crate::watch::Meta,
            move || {
                let me = me.clone();
                let full = full.clone();
                async move {
                    Ok(me
                        .kv()
                        .heads(&full)
                        .await?
                        .into_iter()
                        .filter_map(|(k, h)| Some((k, (h.version, h.value?))))
                        .collect())
                }
            },
        ))
    }
}
