//! etcd watches with resynchronisation: read the prefix, send it as a
//! `Resync`, then watch from the next revision; when the stream breaks
//! (etcd restarted, connection lost, history compacted), start over.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use super::EtcdCoordinator;
use crate::types::Watched;
use crate::watch::{send, Decode, RawChange, WATCH_BUFFER};

/// Starts a watch task for `prefix`; it ends when the receiver is dropped.
pub(super) fn spawn<D: Decode>(
    coord: EtcdCoordinator,
    prefix: String,
    decode: D,
) -> mpsc::Receiver<Watched<D::Event, D::State>> {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            if tx.is_closed() {
                return;
            }
            match run(&coord, &prefix, &decode, &tx).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(%prefix, error = %e, "etcd watch broke; resynchronising");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = tx.closed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    rx
}

/// One life of the watch: `Ok` when the receiver is gone, `Err` when the
/// stream must be restarted.
async fn run<D: Decode>(
    coord: &EtcdCoordinator,
    prefix: &str,
    decode: &D,
    tx: &mpsc::Sender<Watched<D::Event, D::State>>,
) -> crate::Result<()> {
    let (kvs, rev) = coord.get_prefix(prefix).await?;
    let state = kvs
        .iter()
        .filter_map(|kv| {
            let key = std::str::from_utf8(kv.key()).ok()?;
            decode.state(&coord.keys, key, kv.value(), kv.mod_revision() as u64)
        })
        .collect();
    if !send(tx, Watched::Resync(state)).await {
        return Ok(());
    }
    let mut client = coord.client.clone();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(rev + 1);
    let mut stream = client
        .watch(prefix, Some(opts))
        .await
        .map_err(|e| crate::CoordError::etcd("watch", prefix, e))?;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = tx.closed() => return Ok(()),
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return Err(crate::CoordError::etcd("watch", prefix, "stream ended")),
            Err(e) => return Err(crate::CoordError::etcd("watch", prefix, e)),
        };
        if resp.canceled() {
            return Err(crate::CoordError::etcd(
                "watch",
                prefix,
                format!("cancelled by etcd: {}", resp.cancel_reason()),
            ));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                continue;
            };
            let change = RawChange {
                key: key.to_string(),
                value: match ev.event_type() {
                    EventType::Put => Some(Bytes::copy_from_slice(kv.value())),
                    EventType::Delete => None,
                },
                version: kv.mod_revision() as u64,
            };
            if let Some(e) = decode.event(&coord.keys, &change) {
                if !send(tx, Watched::Change(e)).await {
                    return Ok(());
                }
            }
        }
    }
}
