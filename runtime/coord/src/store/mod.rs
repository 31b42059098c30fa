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
mod sessions;
pub(crate) mod versioned;

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::ObjectStore;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{CoordError, Result};
use crate::keys::{validate_meta_key, Keys};
use crate::leadership::{self, MAX_CAS_ATTEMPTS};
use crate::session::{Session, SessionDriver, SessionSettings};
use crate::types::{
    Expect, Leader, LeaderEpoch, LeaderWatch, Member, MetaWatch, NodeId, NodeInfo, NodeWatch,
    TopicPartition, Versioned as Value,
};
use crate::Coordinator;
use sessions::Observed;
use versioned::{Head, Versioned};

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

    /// Writes a partition's leader record as version `version + 1`.
    async fn write_leader(&self, key: &str, version: u64, leader: &Leader) -> Result<bool> {
        let body = encode("leader", key, leader)?;
        self.kv().create(key, version + 1, Some(&body)).await
    }

    /// Writes (`Some`) or deletes (`None`) a metadata value under `expect`;
    /// returns the new version (unchanged for deleting nothing).
    async fn meta_write(&self, key: &str, value: Option<Bytes>, expect: Expect) -> Result<u64> {
        validate_meta_key(key)?;
        let full = self.keys().meta(key);
        let present =
            |h: &Option<Head>| h.as_ref().filter(|h| h.value.is_some()).map(|h| h.version);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let head = self.kv().head(&full).await?;
            if !expect.admits(present(&head)) {
                return Err(leadership::meta_conflict(key, expect, present(&head)));
            }
            let version = head.as_ref().map_or(0, |h| h.version);
            if value.is_none() && present(&head).is_none() {
                return Ok(version);
            }
            if self
                .kv()
                .create(&full, version + 1, value.as_deref())
                .await?
            {
                return Ok(version + 1);
            }
            if expect != Expect::Any {
                let now = self.kv().head(&full).await?;
                return Err(leadership::meta_conflict(key, expect, present(&now)));
            }
        }
        Err(leadership::cas_exhausted(key))
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
        let (sid, driver, started) = self.start_session(&node, settings).await?;
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
                return leadership::already_led(session, l, started);
            }
            let leader = leadership::acquired(session, tp, rec.map_or(0, |l| l.epoch));
            if self.write_leader(&key, version, &leader).await? {
                session.hold(&leader, started);
                return Ok(leader);
            }
        }
        Err(leadership::cas_exhausted(&key))
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
            leadership::check_expected(tp, expected, epoch)?;
            let live = rec.as_ref().filter(|_| live);
            let leader = leadership::transferred(by, tp, live, epoch, to, &target.session);
            if self.write_leader(&key, version, &leader).await? {
                if target.session == by.id() {
                    by.hold(&leader, started);
                }
                tracing::info!(%tp, to, epoch = leader.epoch, "leadership transferred");
                return Ok(leader);
            }
        }
        Err(leadership::cas_exhausted(&key))
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
        self.meta_write(key, Some(value), expect).await
    }

    async fn meta_delete(&self, key: &str, expect: Expect) -> Result<()> {
        self.meta_write(key, None, expect).await.map(|_| ())
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
