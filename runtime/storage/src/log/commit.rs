//! Manifest commits of the log: one writer at a time within the broker
//! (the manifest mutex), compare-and-swap against other brokers.

use super::Log;
use crate::error::{Result, StorageError};
use crate::manifest::Manifest;

impl Log {
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
        let mut current = self.manifest.lock().await;
        let mut next = current.clone();
        let out = f(&mut next)?;
        next.version = current.version + 1;
        let landed = match self.manifests.commit(&mut next).await {
            Ok(lost) => {
                for (topic, index) in lost {
                    if let Ok(p) = self.partition(&topic, index) {
                        tracing::warn!(%topic, partition = index, "another node leads this partition now; this one stops serving it");
                        p.stop_serving();
                    }
                }
                Ok(())
            }
            Err(e @ StorageError::Fenced { .. }) => {
                tracing::error!(error = %e, "this broker has been fenced; it will stop writing");
                if let StorageError::Fenced { theirs, by, .. } = &e {
                    self.fence.mark_fenced(*theirs, by);
                }
                Err(e)
            }
            // An error without an answer may hide a PUT that landed: then
            // this version is ours and committed, and building the next
            // commit on the old version would collide with it.
            Err(e) => match self.manifests.landed(&next).await {
                Some(true) => {
                    tracing::info!(version = next.version, error = %e, "manifest commit reported an error but landed");
                    Ok(())
                }
                _ => Err(e),
            },
        };
        landed?;
        *current = next;
        drop(current);
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
