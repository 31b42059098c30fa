//! The cluster coordinator: membership, per-partition leadership with
//! fencing epochs, and small cluster metadata, on an existing engine rather
//! than a home-made consensus.
//!
//! [`Coordinator`] is the abstraction; two backends implement it:
//! - [`etcd::EtcdCoordinator`]: etcd v3 leases, transactions and watches,
//!   for production clusters;
//! - [`store::StoreCoordinator`]: the object store's conditional writes
//!   (`PutMode::Create` of numbered versions), the embedded default that
//!   needs no other service.
//!
//! A node [`join`](Coordinator::join)s with a [`Session`]; leaderships are
//! bound to the session and lapse with it. Before acknowledging a write the
//! node asks [`Session::check`], which answers from a local view whose
//! validity is bounded in time (see [`session`]). Design:
//! docs/design/0014-coordinator.md.

pub mod error;
pub mod etcd;
pub mod keys;
mod leadership;
pub mod placement;
pub mod session;
pub mod store;
pub mod types;
mod watch;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

pub use error::{CoordError, Result};
pub use session::{Session, SessionSettings, SessionState};
pub use types::{
    Expect, Leader, LeaderEpoch, LeaderEvent, LeaderWatch, Member, MetaEvent, MetaWatch, NodeEvent,
    NodeId, NodeInfo, NodeWatch, TopicPartition, Versioned, Watched,
};

/// Membership, leadership and metadata on one backend. Every method may be
/// called from any node; the ones taking a [`Session`] act as that node.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// The backend's name (`etcd`, `object-store`), for logs and status.
    fn backend(&self) -> &'static str;

    /// Registers `node` with a new session and starts renewing it. Fails
    /// with [`CoordError::DuplicateNode`] while another live session holds
    /// the same node id.
    async fn join(&self, node: NodeInfo, settings: SessionSettings) -> Result<Arc<Session>>;

    /// Every live member, by node id.
    async fn members(&self) -> Result<Vec<Member>>;

    /// Membership changes. The first item is a `Resync` with the current
    /// members; another `Resync` follows whenever the watch had to
    /// reconnect. The watch ends when the receiver is dropped.
    async fn watch_members(&self) -> Result<mpsc::Receiver<NodeWatch>>;

    /// Makes `session`'s node the leader of `tp` at the next epoch if the
    /// partition has no live leader. Returns the current leadership if the
    /// node already leads it; fails with [`CoordError::HeldElsewhere`] if
    /// another live node does.
    async fn acquire(&self, session: &Session, tp: &TopicPartition) -> Result<Leader>;

    /// Moves `tp` to node `to` at the next epoch, if its current epoch is
    /// `expected` (`None`: whatever it is). Called by the current leader it
    /// is a clean handover (the caller stops acknowledging first); called
    /// by another node while the leader lives it is a forced takeover, and
    /// the new leader waits out the old one's validity before acknowledging.
    async fn transfer(
        &self,
        by: &Session,
        tp: &TopicPartition,
        expected: Option<LeaderEpoch>,
        to: NodeId,
    ) -> Result<Leader>;

    /// Gives up `session`'s leadership of `tp` at `epoch` (it stops passing
    /// checks at once). A no-op if the node no longer leads it at that epoch.
    async fn release(
        &self,
        session: &Session,
        tp: &TopicPartition,
        epoch: LeaderEpoch,
    ) -> Result<()>;

    /// The live leader of `tp`, if any.
    async fn leader(&self, tp: &TopicPartition) -> Result<Option<Leader>>;

    /// Every partition's live leader, sorted by partition.
    async fn leaders(&self) -> Result<Vec<Leader>>;

    /// Leadership changes (first item: a `Resync` with every leader).
    async fn watch_leaders(&self) -> Result<mpsc::Receiver<LeaderWatch>>;

    /// A metadata value (keys: [`keys::meta`]).
    async fn meta_get(&self, key: &str) -> Result<Option<Versioned>>;

    /// Every metadata value whose key starts with `prefix`, sorted by key.
    async fn meta_list(&self, prefix: &str) -> Result<Vec<Versioned>>;

    /// Writes a metadata value if `expect` holds; returns its new version.
    /// Fails with [`CoordError::Conflict`] if it does not.
    async fn meta_put(&self, key: &str, value: Bytes, expect: Expect) -> Result<u64>;

    /// Deletes a metadata value if `expect` holds (deleting a missing key
    /// with `Expect::Any` is a no-op).
    async fn meta_delete(&self, key: &str, expect: Expect) -> Result<()>;

    /// Changes under a metadata prefix (first item: a `Resync`).
    async fn watch_meta(&self, prefix: &str) -> Result<mpsc::Receiver<MetaWatch>>;
}
