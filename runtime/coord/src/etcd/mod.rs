//! The etcd v3 backend: a session is an etcd lease kept alive by the
//! session's renewal task; a member record and a partition's holder record
//! are keys attached to the lease, so etcd deletes them when it expires.
//! A partition's epoch lives in a separate key that is never attached to a
//! lease and never deleted, so epochs only grow across leaders that die.
//! Every change of leadership is one transaction comparing the epoch key's
//! and the holder key's `mod_revision` with what the caller read.

mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
};
use tokio::sync::mpsc;

use crate::error::{CoordError, Result};
use crate::keys::{validate_meta_key, Keys};
use crate::leadership::{self, MAX_CAS_ATTEMPTS};
use crate::session::{Session, SessionDriver, SessionSettings};
use crate::types::{
    Expect, Leader, LeaderEpoch, LeaderWatch, Member, MetaWatch, NodeId, NodeInfo, NodeWatch,
    TopicPartition, Versioned,
};
use crate::Coordinator;

/// Settings of the etcd backend.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `host:port` or `http://host:port` of the etcd members.
    pub endpoints: Vec<String>,
    /// Key root of this cluster (several clusters can share an etcd).
    pub root: String,
    /// Timeout of each request.
    pub request_timeout: Duration,
}

impl EtcdSettings {
    /// Parses `etcd://host:port[,host:port...][/root]`.
    pub fn from_url(url: &str) -> Result<EtcdSettings> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| CoordError::Invalid {
                what: "etcd coordinator URL",
                reason: format!("{url:?} does not start with etcd://"),
            })?;
        let (hosts, root) = match rest.split_once('/') {
            Some((h, r)) if !r.is_empty() => (h, format!("/{r}")),
            Some((h, _)) => (h, "/vigil".to_string()),
            None => (rest, "/vigil".to_string()),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(CoordError::Invalid {
                what: "etcd coordinator URL",
                reason: format!("{url:?} names no host:port"),
            });
        }
        Ok(EtcdSettings {
            endpoints,
            root,
            request_timeout: Duration::from_secs(5),
        })
    }
}

/// The etcd coordinator; cheap to clone.
#[derive(Clone)]
pub struct EtcdCoordinator {
    client: Client,
    keys: Keys,
}

impl std::fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("root", &self.keys.root())
            .finish()
    }
}

fn lease_hex(id: i64) -> String {
    format!("{id:016x}")
}

fn parse_lease(session: &str) -> Result<i64> {
    u64::from_str_radix(session, 16)
        .map(|v| v as i64)
        .map_err(|e| CoordError::Invalid {
            what: "etcd session id",
            reason: format!("{session:?}: {e}"),
        })
}

fn json<T: serde::Serialize>(what: &'static str, key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| CoordError::corrupt(what, key, e))
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, kv: &KeyValue) -> Result<T> {
    serde_json::from_slice(kv.value())
        .map_err(|e| CoordError::corrupt(what, String::from_utf8_lossy(kv.key()), e))
}

fn lease_missing(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

impl EtcdCoordinator {
    /// Connects to etcd (the connection is lazy: an unreachable etcd
    /// surfaces as retriable errors of the first calls).
    pub async fn connect(settings: &EtcdSettings) -> Result<EtcdCoordinator> {
        let opts = ConnectOptions::new()
            .with_timeout(settings.request_timeout)
            .with_connect_timeout(settings.request_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(&settings.endpoints, Some(opts))
            .await
            .map_err(|e| CoordError::etcd("connect", settings.endpoints.join(","), e))?;
        Ok(EtcdCoordinator {
            client,
            keys: Keys::new(&settings.root),
        })
    }

    /// The key layout (tests and tools).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut c = self.client.clone();
        let mut resp = c
            .get(key, None)
            .await
            .map_err(|e| CoordError::etcd("get", key, e))?;
        Ok(resp.take_kvs().into_iter().next())
    }

    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let mut c = self.client.clone();
        let mut resp = c
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| CoordError::etcd("get", prefix, e))?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((resp.take_kvs(), rev))
    }

    async fn txn(&self, key: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let mut c = self.client.clone();
        c.txn(txn).await.map_err(|e| {
            if lease_missing(&e) {
                CoordError::SessionLost {
                    node: -1,
                    session: "?".to_string(),
                    reason: format!("etcd refused a write bound to an expired lease ({key})"),
                }
            } else {
                CoordError::etcd("txn", key, e)
            }
        })
    }

    /// The persisted epoch of `tp` and the revision to compare against.
    async fn epoch_of(&self, tp: &TopicPartition) -> Result<(LeaderEpoch, i64)> {
        let key = self.keys.leader_epoch(tp);
        match self.get(&key).await? {
            None => Ok((0, 0)),
            Some(kv) => {
                let epoch = std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| CoordError::corrupt("leader epoch", &key, "not a number"))?;
                Ok((epoch, kv.mod_revision()))
            }
        }
    }

    async fn holder_of(&self, tp: &TopicPartition) -> Result<Option<(Leader, i64)>> {
        match self.get(&self.keys.leader_holder(tp)).await? {
            None => Ok(None),
            Some(kv) => Ok(Some((decode("leader", &kv)?, kv.mod_revision()))),
        }
    }

    /// One compare-and-swap of a partition's leadership: epoch and holder
    /// unchanged since read, then both written.
    async fn swap_leader(
        &self,
        tp: &TopicPartition,
        epoch_rev: i64,
        holder_rev: Option<i64>,
        leader: &Leader,
    ) -> Result<bool> {
        let epoch_key = self.keys.leader_epoch(tp);
        let holder_key = self.keys.leader_holder(tp);
        let lease = parse_lease(&leader.session)?;
        let holder_cmp = match holder_rev {
            Some(rev) => Compare::mod_revision(holder_key.clone(), CompareOp::Equal, rev),
            None => Compare::create_revision(holder_key.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(epoch_key.clone(), CompareOp::Equal, epoch_rev),
                holder_cmp,
            ])
            .and_then([
                TxnOp::put(epoch_key, leader.epoch.to_string(), None),
                TxnOp::put(
                    holder_key.clone(),
                    json("leader", &holder_key, leader)?,
                    Some(PutOptions::new().with_lease(lease)),
                ),
            ]);
        Ok(self.txn(&holder_key, txn).await?.succeeded())
    }

    async fn member(&self, id: NodeId) -> Result<Option<Member>> {
        match self.get(&self.keys.member(id)).await? {
            None => Ok(None),
            Some(kv) => decode("member", &kv).map(Some),
        }
    }
}

struct Driver {
    coord: EtcdCoordinator,
    keeper:
        tokio::sync::Mutex<Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>>,
}

#[async_trait]
impl SessionDriver for Driver {
    async fn renew(&self, session: &str) -> Result<Option<Duration>> {
        let id = parse_lease(session)?;
        let mut slot = self.keeper.lock().await;
        if slot.is_none() {
            // A new keep-alive stream (first renewal, or after etcd or the
            // connection came back).
            let mut c = self.coord.client.clone();
            match c.lease_keep_alive(id).await {
                Ok(k) => *slot = Some(k),
                Err(e) if lease_missing(&e) => return Ok(None),
                Err(e) => return Err(CoordError::etcd("lease keep-alive", session, e)),
            }
        }
        let Some((keeper, stream)) = slot.as_mut() else {
            return Err(CoordError::etcd("lease keep-alive", session, "no stream"));
        };
        let answer = async {
            keeper.keep_alive().await?;
            stream.message().await
        }
        .await;
        match answer {
            Ok(Some(resp)) if resp.ttl() > 0 => Ok(Some(Duration::from_secs(resp.ttl() as u64))),
            Ok(Some(_)) => Ok(None),
            Ok(None) => {
                *slot = None;
                Err(CoordError::etcd(
                    "lease keep-alive",
                    session,
                    "stream closed",
                ))
            }
            Err(e) => {
                *slot = None;
                Err(CoordError::etcd("lease keep-alive", session, e))
            }
        }
    }

    async fn leaders(&self) -> Result<Vec<Leader>> {
        self.coord.leaders().await
    }

    async fn end(&self, session: &str) -> Result<()> {
        let id = parse_lease(session)?;
        let mut c = self.coord.client.clone();
        match c.lease_revoke(id).await {
            Ok(_) => Ok(()),
            Err(e) if lease_missing(&e) => Ok(()),
            Err(e) => Err(CoordError::etcd("lease revoke", session, e)),
        }
    }
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn join(&self, node: NodeInfo, settings: SessionSettings) -> Result<Arc<Session>> {
        settings.validate()?;
        let key = self.keys.member(node.node_id);
        // A previous life of this node id may still be renewing, or may have
        // crashed: wait up to one TTL for its lease to expire before refusing.
        let deadline = Instant::now() + settings.ttl + Duration::from_secs(1);
        while let Some(m) = self.member(node.node_id).await? {
            if Instant::now() >= deadline {
                return Err(CoordError::DuplicateNode {
                    node: node.node_id,
                    session: m.session,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Instant::now();
        let mut c = self.client.clone();
        let grant = c
            .lease_grant(settings.ttl.as_secs().max(1) as i64, None)
            .await
            .map_err(|e| CoordError::etcd("lease grant", &key, e))?;
        let lease = grant.id();
        let session = lease_hex(lease);
        let member = Member {
            node: node.clone(),
            session: session.clone(),
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                json("member", &key, &member)?,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if !self.txn(&key, txn).await?.succeeded() {
            let _ = c.lease_revoke(lease).await;
            let holder = self.member(node.node_id).await?.map(|m| m.session);
            return Err(CoordError::DuplicateNode {
                node: node.node_id,
                session: holder.unwrap_or_else(|| "(just expired)".to_string()),
            });
        }
        let driver = Arc::new(Driver {
            coord: self.clone(),
            keeper: tokio::sync::Mutex::new(None),
        });
        tracing::info!(node = node.node_id, session, "joined the cluster (etcd)");
        Ok(Session::start(
            node,
            session,
            settings,
            started,
            Duration::from_secs(grant.ttl().max(1) as u64),
            driver,
        ))
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let (kvs, _) = self.get_prefix(&self.keys.members()).await?;
        let mut v: Vec<Member> = kvs
            .iter()
            .map(|kv| decode("member", kv))
            .collect::<Result<_>>()?;
        v.sort_by_key(|m| m.node.node_id);
        Ok(v)
    }

    async fn watch_members(&self) -> Result<mpsc::Receiver<NodeWatch>> {
        Ok(watch::spawn(
            self.clone(),
            self.keys.members(),
            crate::watch::Members,
        ))
    }

    async fn acquire(&self, session: &Session, tp: &TopicPartition) -> Result<Leader> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            session.ensure_alive()?;
            let started = Instant::now();
            let (epoch, epoch_rev) = self.epoch_of(tp).await?;
            if let Some((holder, _)) = self.holder_of(tp).await? {
                return leadership::already_led(session, &holder, started);
            }
            let leader = leadership::acquired(session, tp, epoch);
            match self.swap_leader(tp, epoch_rev, None, &leader).await {
                Ok(true) => {
                    session.hold(&leader, started);
                    return Ok(leader);
                }
                Ok(false) => continue,
                Err(CoordError::SessionLost { reason, .. }) => {
                    return Err(session.lost_error(reason))
                }
                Err(e) => return Err(e),
            }
        }
        Err(leadership::cas_exhausted(&tp.to_string()))
    }

    async fn transfer(
        &self,
        by: &Session,
        tp: &TopicPartition,
        expected: Option<LeaderEpoch>,
        to: NodeId,
    ) -> Result<Leader> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let started = Instant::now();
            let target = self
                .member(to)
                .await?
                .ok_or(CoordError::UnknownNode { node: to })?;
            let (epoch, epoch_rev) = self.epoch_of(tp).await?;
            leadership::check_expected(tp, expected, epoch)?;
            let holder = self.holder_of(tp).await?;
            let live = holder.as_ref().map(|(h, _)| h);
            let leader = leadership::transferred(by, tp, live, epoch, to, &target.session);
            match self
                .swap_leader(tp, epoch_rev, holder.as_ref().map(|(_, r)| *r), &leader)
                .await
            {
                Ok(true) => {
                    if target.session == by.id() {
                        by.hold(&leader, started);
                    }
                    tracing::info!(%tp, to, epoch = leader.epoch, "leadership transferred");
                    return Ok(leader);
                }
                // Lost the race: re-read (and fail if the epoch moved on
                // while the caller named one).
                Ok(false) => {}
                // The target's lease expired between reading it and writing.
                Err(CoordError::SessionLost { .. }) => {
                    return Err(CoordError::UnknownNode { node: to })
                }
                Err(e) => return Err(e),
            }
        }
        Err(leadership::cas_exhausted(&tp.to_string()))
    }

    async fn release(
        &self,
        session: &Session,
        tp: &TopicPartition,
        epoch: LeaderEpoch,
    ) -> Result<()> {
        session.relinquish(tp, epoch);
        let Some((holder, rev)) = self.holder_of(tp).await? else {
            return Ok(());
        };
        if holder.session != session.id() || holder.epoch != epoch {
            return Ok(());
        }
        let key = self.keys.leader_holder(tp);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key.clone(), None)]);
        self.txn(&key, txn).await.map(|_| ())
    }

    async fn leader(&self, tp: &TopicPartition) -> Result<Option<Leader>> {
        Ok(self.holder_of(tp).await?.map(|(l, _)| l))
    }

    async fn leaders(&self) -> Result<Vec<Leader>> {
        let (kvs, _) = self.get_prefix(&self.keys.leader_holders()).await?;
        let mut v: Vec<Leader> = kvs
            .iter()
            .map(|kv| decode("leader", kv))
            .collect::<Result<_>>()?;
        v.sort_by(|a, b| a.tp.cmp(&b.tp));
        Ok(v)
    }

    async fn watch_leaders(&self) -> Result<mpsc::Receiver<LeaderWatch>> {
        Ok(watch::spawn(
            self.clone(),
            self.keys.leader_holders(),
            crate::watch::Leaders(Keys::parse_leader_holder),
        ))
    }

    async fn meta_get(&self, key: &str) -> Result<Option<Versioned>> {
        validate_meta_key(key)?;
        Ok(self.get(&self.keys.meta(key)).await?.map(|kv| Versioned {
            key: key.to_string(),
            value: Bytes::copy_from_slice(kv.value()),
            version: kv.mod_revision() as u64,
        }))
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<Versioned>> {
        let (kvs, _) = self.get_prefix(&self.keys.meta(prefix)).await?;
        let mut v: Vec<Versioned> = kvs
            .iter()
            .filter_map(|kv| {
                let full = std::str::from_utf8(kv.key()).ok()?;
                Some(Versioned {
                    key: self.keys.parse_meta(full)?.to_string(),
                    value: Bytes::copy_from_slice(kv.value()),
                    version: kv.mod_revision() as u64,
                })
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    async fn meta_put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64> {
        let full = self.keys.meta(key);
        let op = TxnOp::put(full, value.to_vec(), None);
        let resp = self.meta_txn(key, op, expect).await?;
        Ok(resp.header().map_or(0, |h| h.revision()) as u64)
    }

    async fn meta_delete(&self, key: &str, expect: Expect) -> Result<()> {
        let op = TxnOp::delete(self.keys.meta(key), None);
        self.meta_txn(key, op, expect).await.map(|_| ())
    }

    async fn watch_meta(&self, prefix: &str) -> Result<mpsc::Receiver<MetaWatch>> {
        Ok(watch::spawn(
            self.clone(),
            self.keys.meta(prefix),
            crate::watch::Meta,
        ))
    }
}

fn meta_compare(full: &str, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::create_revision(full, CompareOp::Equal, 0)),
        Expect::Version(v) => Some(Compare::mod_revision(full, CompareOp::Equal, v as i64)),
    }
}

impl EtcdCoordinator {
    /// Runs `op` on metadata key `key` if `expect` holds.
    async fn meta_txn(
        &self,
        key: &str,
        op: TxnOp,
        expect: Expect,
    ) -> Result<etcd_client::TxnResponse> {
        validate_meta_key(key)?;
        let full = self.keys.meta(key);
        let mut txn = Txn::new();
        if let Some(cmp) = meta_compare(&full, expect) {
            txn = txn.when([cmp]);
        }
        let resp = self.txn(&full, txn.and_then([op])).await?;
        if !resp.succeeded() {
            return Err(self.meta_conflict(key, expect).await);
        }
        Ok(resp)
    }

    async fn meta_conflict(&self, key: &str, expect: Expect) -> CoordError {
        match self.meta_get(key).await {
            Ok(found) => leadership::meta_conflict(key, expect, found.map(|v| v.version)),
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_urls_parse() {
        let s = EtcdSettings::from_url("etcd://127.0.0.1:2379,10.0.0.2:2379").expect("url");
        assert_eq!(
            s.endpoints,
            vec!["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(s.root, "/vigil");
        let s = EtcdSettings::from_url("etcd://h:1/prod/c1").expect("url");
        assert_eq!((s.endpoints.len(), s.root.as_str()), (1, "/prod/c1"));
        assert!(EtcdSettings::from_url("http://h:1").is_err());
        assert!(EtcdSettings::from_url("etcd://").is_err());
    }

    #[test]
    fn session_ids_round_trip_lease_ids() {
        for id in [1i64, 0x7fff_ffff_ffff_ffff, 694_206_942_069] {
            assert_eq!(parse_lease(&lease_hex(id)).expect("parse"), id);
        }
        assert!(parse_lease("not-hex").is_err());
    }
}
