//! Timer tasks of the group state machine: member session expiry and rebalance deadlines.
//!
//! Each task holds only a `Weak` reference to its group and is aborted (via [`TaskGuard`]) as
//! soon as the member or rebalance it serves goes away, so none outlives its purpose.

use std::future::Future;
use std::sync::Weak;

use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::warn;

use super::state::Group;

/// Aborts the wrapped task when dropped, so a timer dies with the member or rebalance it
/// belongs to instead of lingering until it fires.
pub(crate) struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn spawn_guarded<F>(fut: F) -> Option<TaskGuard>
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Some(TaskGuard(handle.spawn(fut).abort_handle())),
        // Only reachable if a handler is driven outside tokio; the group still works, it just
        // loses time-based expiry.
        Err(_) => {
            warn!("no tokio runtime available; group timer not started");
            None
        }
    }
}

pub(super) async fn watch_session(group: Weak<Mutex<Group>>, member_id: String) {
    loop {
        let next = {
            let Some(group) = group.upgrade() else {
                return;
            };
            let mut group = group.lock();
            match group.check_session(&member_id) {
                Some(next) => next,
                None => return,
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

pub(super) async fn rebalance_timer(group: Weak<Mutex<Group>>, epoch: u64, at: Instant) {
    tokio::time::sleep_until(at).await;
    if let Some(group) = group.upgrade() {
        group.lock().on_rebalance_timer(epoch);
    }
}
