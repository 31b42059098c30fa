//! Manifest commits of the log: one writer at a time within the broker
//! (the manifest mutex), compare-and-swap against other brokers.
//!
//! A commit, once started, runs to its end in a task of its own, and so
//! does every public operation built on one ([`Log::to_completion`]). An
//! object store PUT that has left the client cannot be called back: if a
//! caller that stopped waiting (a client hung up, a handler was dropped)
//! cut the commit off after its PUT, the version would be in the store but
//! not in memory, and the next commit would find "its" version taken by
//! this very broker and fence it (docs/design/0021).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::Log;
use crate::error::{Result, StorageError};
use crate::manifest::Manifest;

/// How long a commit whose PUT got no answer keeps asking the store
/// whether it landed before it gives up (holding the manifest lock, so no
/// other commit can take the version meanwhile). Giving up is safe: the
/// next commit supersedes a version this broker left behind.
const LANDED_CHECKS: [u64; 6] = [50, 100, 200, 400, 800, 1600];

impl Log {
    /// Runs `op` on this log to its end in a task of its own: a caller that
    /// stops waiting does not cut a manifest commit off from the in-memory
    /// state that follows it.
    pub(crate) async fn to_completion<T, F>(&self, op: impl FnOnce(Arc<Log>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let log = self.me.upgrade().ok_or(StorageError::WalClosed)?;
        joined(tokio::spawn(op(log))).await
    }

    /// Applies `f` to a copy of the manifest and commits it as the next
    /// version; the in-memory copy changes only if the commit lands. The
    /// commit counts only once the fence confirms this broker still owns the
    /// log: a create can land on a version number another broker wrote and
    /// deleted long ago.
    pub(crate) async fn update_manifest<T>(
        &self,
        f: impl FnOnce(&mut Manifest) -> Result<T>,
    ) -> Result<T> {
        if self.fence.is_fenced() {
            return Err(self.fence.fenced_error());
        }
        let log = self.me.upgrade().ok_or(StorageError::WalClosed)?;
        let current = Arc::clone(&self.manifest).lock_owned().await;
        let mut next = current.clone();
        let out = f(&mut next)?;
        next.version = current.version + 1;
        joined(tokio::spawn(commit(log, current, next))).await?;
        match self.fence.confirm().await {
            // The version is committed and the in-memory manifest says so:
            // callers must treat it as done (an uploader that retried would
            // upload the same offsets again into a second segment). If
            // another broker did claim the log meanwhile, it reads this
            // version after its wait, or its own commit of this version
            // made ours fail above.
            Ok(()) | Err(StorageError::OwnershipUnconfirmed { .. }) => Ok(out),
            Err(e) => Err(e),
        }
    }
}

/// The result of a task run to completion; its panic goes on in the caller.
async fn joined<T>(task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    match task.await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(StorageError::WalClosed),
    }
}

/// Commits `next` over `current` (held locked throughout) and installs it
/// in memory if it landed.
async fn commit(
    log: Arc<Log>,
    mut current: OwnedMutexGuard<Manifest>,
    mut next: Manifest,
) -> Result<()> {
    match log.manifests.commit(&mut next).await {
        Ok(lost) => {
            for (topic, index) in lost {
                if let Ok(p) = log.partition(&topic, index) {
                    tracing::warn!(%topic, partition = index, "another node leads this partition now; this one stops serving it");
                    p.stop_serving();
                }
            }
        }
        Err(e @ StorageError::Fenced { .. }) => {
            tracing::error!(error = %e, "this broker has been fenced; it will stop writing");
            if let StorageError::Fenced { theirs, by, .. } = &e {
                log.fence.mark_fenced(*theirs, by);
            }
            return Err(e);
        }
        // An error without an answer may hide a PUT that landed: then this
        // version is ours and committed, and building the next commit on
        // the old version would collide with it. Ask until the store says.
        Err(e) => {
            let mut landed = log.manifests.landed(&next).await;
            for wait_ms in LANDED_CHECKS {
                if landed.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                landed = log.manifests.landed(&next).await;
            }
            match landed {
                Some(true) => {
                    tracing::info!(version = next.version, error = %e, "manifest commit reported an error but landed");
                }
                Some(false) => return Err(e),
                // The caller hears that it failed, and the in-memory state
                // stays without it. If it did land, the version is this
                // broker's own and the next commit supersedes it
                // (`ManifestStore::commit`), so the log keeps what callers
                // were told.
                None => {
                    tracing::warn!(version = next.version, error = %e, "manifest commit got no answer and the store cannot say whether it landed; the next commit supersedes it if it did");
                    return Err(e);
                }
            }
        }
    }
    *current = next;
    Ok(())
}
