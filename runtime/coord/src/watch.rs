//! Turning raw key changes into typed watch items, shared by the backends.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::keys::Keys;
use crate::types::{Leader, LeaderEvent, Member, MetaEvent, NodeEvent, Versioned, Watched};

/// Capacity of a watch channel: a consumer that falls this far behind makes
/// the watch task wait (backpressure), never drops changes.
pub(crate) const WATCH_BUFFER: usize = 1024;

/// One key's change as the backend reports it: `value` is `None` for a
/// deletion.
#[derive(Debug, Clone)]
pub(crate) struct RawChange {
    pub key: String,
    pub value: Option<Bytes>,
    pub version: u64,
}

/// How one kind of watch decodes raw keys.
pub(crate) trait Decode: Send + Sync + 'static {
    type Event: Send + 'static;
    type State: Send + 'static;
    /// The typed state of a present key (None: not of this kind, or corrupt
    /// and logged).
    fn state(&self, keys: &Keys, key: &str, value: &[u8], version: u64) -> Option<Self::State>;
    /// The typed event of a change.
    fn event(&self, keys: &Keys, change: &RawChange) -> Option<Self::Event>;
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key, error = %e, "skipping corrupt {what} record in a watch");
            None
        }
    }
}

/// Members.
pub(crate) struct Members;
impl Decode for Members {
    type Event = NodeEvent;
    type State = Member;
    fn state(&self, keys: &Keys, key: &str, value: &[u8], _: u64) -> Option<Member> {
        keys.parse_member(key)?;
        parse("member", key, value)
    }
    fn event(&self, keys: &Keys, c: &RawChange) -> Option<NodeEvent> {
        let id = keys.parse_member(&c.key)?;
        match &c.value {
            Some(v) => Some(NodeEvent::Joined(parse("member", &c.key, v)?)),
            None => Some(NodeEvent::Left(id)),
        }
    }
}

/// Leaders: `key_of` tells which keys hold leader records in this backend.
pub(crate) struct Leaders(pub fn(&Keys, &str) -> Option<crate::types::TopicPartition>);
impl Decode for Leaders {
    type Event = LeaderEvent;
    type State = Leader;
    fn state(&self, keys: &Keys, key: &str, value: &[u8], _: u64) -> Option<Leader> {
        (self.0)(keys, key)?;
        parse("leader", key, value)
    }
    fn event(&self, keys: &Keys, c: &RawChange) -> Option<LeaderEvent> {
        let tp = (self.0)(keys, &c.key)?;
        match &c.value {
            Some(v) => Some(LeaderEvent::Elected(parse("leader", &c.key, v)?)),
            None => Some(LeaderEvent::Vacant(tp)),
        }
    }
}

/// Metadata.
pub(crate) struct Meta;
impl Decode for Meta {
    type Event = MetaEvent;
    type State = Versioned;
    fn state(&self, keys: &Keys, key: &str, value: &[u8], version: u64) -> Option<Versioned> {
        Some(Versioned {
            key: keys.parse_meta(key)?.to_string(),
            value: Bytes::copy_from_slice(value),
            version,
        })
    }
    fn event(&self, keys: &Keys, c: &RawChange) -> Option<MetaEvent> {
        let key = keys.parse_meta(&c.key)?.to_string();
        Some(match &c.value {
            Some(v) => MetaEvent::Put(Versioned {
                key,
                value: v.clone(),
                version: c.version,
            }),
            None => MetaEvent::Deleted(key),
        })
    }
}

/// Sends typed items; `false` once the receiver is gone.
pub(crate) async fn send<E, S>(tx: &mpsc::Sender<Watched<E, S>>, item: Watched<E, S>) -> bool {
    tx.send(item).await.is_ok()
}
