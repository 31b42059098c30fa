//! The object backend: each group commit is one object,
//! `wal/<epoch>/<seq>.wal`, holding entries in the same format as a local
//! segment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use super::codec::decode_entries;
use super::{
    complete_group, next_backoff, refuse_queued, stops_writer, Command, Group, Sealed, WalEntry,
};
use crate::error::{Result, StorageError};
use crate::fence::Fence;
use crate::kv::KvMap;
use crate::paths;

/// Prefix of WAL objects, for operators and tests.
pub const OBJECT_WAL_PREFIX: &str = "wal/";

/// WAL objects of this store.
pub(super) struct Objects {
    store: Arc<dyn ObjectStore>,
    fence: Arc<Fence>,
    /// Objects found at open (replayed, or leftovers already covered by the
    /// manifest); deleted at the first `delete_through`.
    leftovers: parking_lot::Mutex<Vec<Path>>,
}

impl Objects {
    /// Lists WAL objects and replays, in order, those after `through` (the
    /// manifest's watermark).
    pub(super) async fn open(
        store: Arc<dyn ObjectStore>,
        fence: Arc<Fence>,
        through: Option<(u64, u64)>,
        keep_found: bool,
    ) -> Result<(Vec<WalEntry>, Objects)> {
        let (entries, keys) = read_objects(store.as_ref(), through).await?;
        if !keys.is_empty() {
            tracing::info!(
                objects = keys.len(),
                entries = entries.len(),
                "read WAL objects"
            );
        }
        Ok((
            entries,
            Objects {
                store,
                fence,
                leftovers: parking_lot::Mutex::new(if keep_found { Vec::new() } else { keys }),
            },
        ))
    }

    /// Starts the writer task.
    pub(super) fn start(
        &self,
        rx: mpsc::UnboundedReceiver<Command>,
        kv: KvMap,
        closing: Arc<AtomicBool>,
        window: Duration,
        group_bytes: usize,
    ) -> tokio::task::JoinHandle<()> {
        let writer = Writer {
            store: self.store.clone(),
            fence: self.fence.clone(),
            seq: 0,
            window,
            group_bytes,
            kv,
            closing,
        };
        tokio::spawn(writer.run(rx))
    }

    /// Deletes leftovers from open and this epoch's objects up to `through`.
    pub(super) async fn delete_through(&self, through: Option<u64>) -> Result<usize> {
        let mut keys: Vec<Path> = std::mem::take(&mut *self.leftovers.lock());
        if let Some(t) = through {
            let prefix = Path::from(format!("wal/{:010}", self.fence.epoch()));
            let mine = crate::store::list_all(self.store.as_ref(), &prefix).await?;
            keys.extend(
                mine.into_iter()
                    .filter(|m| paths::parse_wal_object(&m.location).is_some_and(|(_, s)| s <= t))
                    .map(|m| m.location),
            );
        }
        let mut n = 0;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => {
                    // Covered by the manifest either way; the next cycle's
                    // listing finds it again only if it is ours, so keep the
                    // leftover for another try.
                    self.leftovers.lock().push(key.clone());
                    return Err(StorageError::store("delete", &key, e));
                }
            }
        }
        Ok(n)
    }
}

struct Writer {
    store: Arc<dyn ObjectStore>,
    fence: Arc<Fence>,
    seq: u64,
    window: Duration,
    group_bytes: usize,
    kv: KvMap,
    closing: Arc<AtomicBool>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut group = Group::default();
            let deadline = tokio::time::Instant::now() + self.window;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                if !group.push(cmd, self.group_bytes) {
                    break;
                }
                // The batching window: keep collecting until it closes, so
                // many producers share one PUT.
                next = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .unwrap_or_default();
            }
            // Encoded before the await: completions are not Sync, so the
            // entries themselves must not be borrowed across it.
            let body = group.encode();
            let Group {
                entries,
                roll,
                close,
                ..
            } = group;
            if !entries.is_empty() {
                let written = self.write_group(body).await;
                let ok = written.is_ok();
                let outcome = match written {
                    Ok(()) => self.fence.confirm().await,
                    Err(e) => Err(e),
                };
                complete_group(&mut self.kv, entries, ok, &outcome);
                if stops_writer(&outcome) {
                    self.closing.store(true, Ordering::SeqCst);
                    refuse_queued(&mut rx);
                    return;
                }
            }
            if let Some(reply) = roll {
                let _ = reply.send(Sealed {
                    sealed_through: self.seq.checked_sub(1),
                    kv: self.kv.clone(),
                });
            }
            if close {
                refuse_queued(&mut rx);
                return;
            }
        }
    }

    /// PUTs the group as one object, retrying with backoff while the store
    /// fails. Whether the group may be acknowledged is the fence's to say.
    async fn write_group(&mut self, body: bytes::Bytes) -> Result<()> {
        let key = paths::wal_object(self.fence.epoch(), self.seq);
        let mut backoff = Duration::from_millis(10);
        loop {
            if self.fence.is_fenced() {
                return Err(self.fence.fenced_error());
            }
            match self.store.put(&key, PutPayload::from(body.clone())).await {
                Ok(_) => {
                    self.seq += 1;
                    return Ok(());
                }
                Err(e) => {
                    let e = StorageError::store("put", &key, e);
                    tracing::warn!(key = %key, error = %e, "WAL object write failed; retrying");
                    if self.closing.load(Ordering::SeqCst) {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                }
            }
        }
    }
}

/// Reads, in order, the entries of every WAL object in `store` (a node's
/// private store) after `through`; returns them with every WAL object key
/// listed (those before `through` included).
pub(crate) async fn read_objects(
    store: &dyn ObjectStore,
    through: Option<(u64, u64)>,
) -> Result<(Vec<WalEntry>, Vec<Path>)> {
    let keys = list_objects(store).await?;
    let mut entries = Vec::new();
    for Listed { position, key, .. } in &keys {
        if through.is_some_and(|t| *position <= t) {
            continue;
        }
        let data = store
            .get(key)
            .await
            .map_err(|e| StorageError::store("get", key, e))?
            .bytes()
            .await
            .map_err(|e| StorageError::store("get", key, e))?;
        entries.extend(decode_object(key, &data)?);
    }
    Ok((entries, keys.into_iter().map(|l| l.key).collect()))
}

/// One WAL object as listed.
pub(crate) struct Listed {
    /// Its (epoch, sequence): the order its writer wrote it in.
    pub position: (u64, u64),
    pub key: Path,
    /// When the store says it was written.
    pub written: chrono::DateTime<chrono::Utc>,
}

/// The WAL objects in `store` (a node's private store), oldest first.
pub(crate) async fn list_objects(store: &dyn ObjectStore) -> Result<Vec<Listed>> {
    let prefix = paths::wal_prefix();
    let metas = crate::store::list_all(store, &prefix).await?;
    let mut keys: Vec<Listed> = metas
        .into_iter()
        .filter_map(|m| {
            paths::parse_wal_object(&m.location).map(|position| Listed {
                position,
                key: m.location,
                written: m.last_modified,
            })
        })
        .collect();
    keys.sort_by_key(|l| l.position);
    Ok(keys)
}

/// Every entry of one WAL object; corrupt if any byte does not decode.
pub(crate) fn decode_object(key: &Path, data: &[u8]) -> Result<Vec<WalEntry>> {
    let (found, valid) = decode_entries(data);
    if valid != data.len() {
        // PUTs are atomic, so this is corruption, not a torn write.
        return Err(StorageError::Corrupt {
            what: "WAL object",
            key: key.to_string(),
            reason: format!("only {valid} of {} bytes decode", data.len()),
        });
    }
    Ok(found)
}
