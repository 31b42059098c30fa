//! Watches on the object store, which has no change notifications: poll a
//! snapshot every interval and send the differences.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::keys::Keys;
use crate::types::Watched;
use crate::watch::{send, Decode, RawChange, WATCH_BUFFER};

/// A snapshot: full key → (version, value).
pub(crate) type Snapshot = BTreeMap<String, (u64, Bytes)>;

/// Starts a polling watch; it ends when the receiver is dropped. A failed
/// poll is retried at the next interval; the first successful poll after a
/// failure sends a `Resync`, as an etcd watch does after a reconnect.
pub(crate) fn spawn<D, F, Fut>(
    keys: Keys,
    interval: Duration,
    decode: D,
    mut snapshot: F,
) -> mpsc::Receiver<Watched<D::Event, D::State>>
where
    D: Decode,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = crate::Result<Snapshot>> + Send,
{
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let mut last: Option<Snapshot> = None;
        loop {
            match snapshot().await {
                Ok(now) => {
                    let items = match &last {
                        None => vec![Watched::Resync(
                            now.iter()
                                .filter_map(|(k, (ver, val))| decode.state(&keys, k, val, *ver))
                                .collect(),
                        )],
                        Some(before) => diff(before, &now)
                            .iter()
                            .filter_map(|c| decode.event(&keys, c))
                            .map(Watched::Change)
                            .collect(),
                    };
                    for item in items {
                        if !send(&tx, item).await {
                            return;
                        }
                    }
                    last = Some(now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "object store watch poll failed; resynchronising");
                    last = None;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

fn diff(before: &Snapshot, now: &Snapshot) -> Vec<RawChange> {
    let mut out = Vec::new();
    for (k, (ver, val)) in now {
        if before.get(k).is_none_or(|(v, _)| v != ver) {
            out.push(RawChange {
                key: k.clone(),
                value: Some(val.clone()),
                version: *ver,
            });
        }
    }
    for (k, (ver, _)) in before {
        if !now.contains_key(k) {
            out.push(RawChange {
                key: k.clone(),
                value: None,
                version: *ver,
            });
        }
    }
    out
}
