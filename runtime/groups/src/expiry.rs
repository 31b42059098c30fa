//! Committed-offset expiry (Kafka's `offsets.retention.minutes`).
//!
//! A group with no members whose last commit is older than the retention loses its
//! committed offsets, and the group itself is forgotten. Without this, every group id a
//! client ever committed under would stay in memory and in the durable key/value state
//! forever. Deletion goes through [`GroupStore::persist`](crate::GroupStore::persist) as
//! tombstones, so an expired offset stays expired after a restart.
//!
//! Simplification against Kafka (KIP-211): Kafka counts the retention from the moment the
//! group became empty (or, for a group that never had members, from each offset's commit);
//! here it counts from the group's newest commit, so a group whose members stop committing
//! and then leave may expire sooner than in Kafka. A group with members never expires.

use std::sync::Weak;
use std::time::Duration;

use tracing::{info, warn};

use super::state::GroupState;
use super::GroupCoordinator;

impl GroupCoordinator {
    /// Deletes the committed offsets of every group that has no members and whose newest
    /// commit is at least the configured retention old, then forgets such groups. Returns how
    /// many offsets were deleted. Offsets committed while the deletion was being persisted
    /// are kept.
    pub async fn expire_offsets(&self) -> usize {
        let now = self.store.now_ms();
        let retention_ms =
            i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let mut expired = 0;
        for (group_id, group) in self.all_groups() {
            // Decided and sent to the store under the group's lock, like a commit, so the
            // store sees the tombstones in order with the group's commits.
            let (seq, persist, keys) = {
                let mut g = group.lock();
                if g.state != GroupState::Empty || !g.members.is_empty() {
                    continue;
                }
                let newest = g.offsets().map(|(_, v)| v.commit_timestamp_ms).max();
                if newest.is_some_and(|t| now.saturating_sub(t) < retention_ms) {
                    continue;
                }
                let keys: Vec<(String, i32)> = g.offsets().map(|(k, _)| k.clone()).collect();
                if keys.is_empty() {
                    drop(g);
                    self.forget_if_unused(&group_id);
                    continue;
                }
                let (seq, persist) = super::deletion::send_tombstones(self, &mut g, &keys);
                (seq, persist, keys)
            };
            let offsets = keys.len();
            match super::deletion::apply_tombstones(group, seq, keys, persist).await {
                Ok(removed) => {
                    expired += removed;
                    info!(group = %group_id, offsets, "committed offsets expired");
                    self.forget_if_unused(&group_id);
                }
                Err(e) => {
                    warn!(group = %group_id, error = %e, "could not delete expired offsets; will retry");
                }
            }
        }
        expired
    }

    /// Removes a group that has neither members nor offsets from the map. It is marked
    /// `Dead` first, so a request that picked it up just before answers
    /// `COORDINATOR_NOT_AVAILABLE` and retries on a fresh group.
    pub(crate) fn forget_if_unused(&self, group_id: &str) {
        // Map lock, then group lock: the order the rest of the coordinator allows.
        let mut groups = self.groups.lock();
        let Some(group) = groups.get(group_id).cloned() else {
            return;
        };
        let mut g = group.lock();
        if g.state == GroupState::Empty
            && g.members.is_empty()
            && g.offsets().next().is_none()
            && g.inflight_commits == 0
        {
            g.state = GroupState::Dead;
            groups.remove(group_id);
        }
    }

    /// Starts the periodic expiry (every `offsets_retention_check_interval`) when called
    /// inside a tokio runtime. The task holds only a weak reference and ends with the
    /// coordinator.
    pub(crate) fn spawn_offset_expiry(coordinator: Weak<Self>, every: Duration) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            warn!("no tokio runtime available; committed offsets will not expire");
            return;
        };
        // A zero interval would make `interval` panic; settings forbid it, this keeps the
        // task safe for any caller.
        let every = every.max(Duration::from_millis(1));
        handle.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(c) = coordinator.upgrade() else {
                    return;
                };
                c.expire_offsets().await;
                drop(c);
            }
        });
    }
}
