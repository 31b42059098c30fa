//! Retention and garbage collection.
//!
//! Retention drops whole uploaded runs from the front of a partition when
//! they are older than `retention.ms` or push the partition over
//! `retention.bytes` (Kafka's rules, with runs for segments), by committing a
//! manifest that no longer lists them and moving the log start offset.
//! Nothing is deleted at that point. A run's age is its largest record
//! timestamp, unless that is absent (-1) or implausible (over a year before,
//! or over an hour after, now): then it is when the run was uploaded, so a
//! client's clock cannot get fresh data dropped or old data kept for ever.
//!
//! Garbage collection then deletes every data object under `objects/`,
//! segment object under `data/` and state object under `state/` that the
//! manifest does not reference and that is older than the grace period. That
//! one rule covers objects emptied by retention, objects of deleted topics,
//! and uploads orphaned by a crash between PUT and manifest commit; the grace
//! period keeps it away from an upload whose commit is still in flight. A
//! crash at any step leaves objects that a later pass collects.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::TryStreamExt;

use crate::error::Result;
use crate::log::Log;

/// Kafka's default `retention.ms` (7 days).
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionStats {
    /// Runs dropped from partitions.
    pub runs_dropped: usize,
    /// Objects deleted by the collector.
    pub objects_deleted: usize,
}

fn config_i64(
    configs: &std::collections::BTreeMap<String, String>,
    key: &str,
    default: i64,
) -> i64 {
    configs
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Log {
    /// Applies retention to every partition, then collects garbage.
    pub async fn enforce_retention(&self) -> Result<RetentionStats> {
        let now = self.clock.now_ms();
        let mut uploaded = UploadTimes::default();
        // (partition, runs to drop, new log start)
        let mut plan = Vec::new();
        for topic in self.topics() {
            // A compact-only topic keeps data by key, not by age or size
            // (Kafka's cleanup.policy=compact); records below a log start
            // offset set by DeleteRecords go either way.
            let deletes = topic
                .configs
                .get("cleanup.policy")
                .is_none_or(|p| p.split(',').any(|x| x.trim() == "delete"));
            let (retention_ms, retention_bytes) = if deletes {
                (
                    config_i64(&topic.configs, "retention.ms", DEFAULT_RETENTION_MS),
                    config_i64(&topic.configs, "retention.bytes", -1),
                )
            } else {
                (-1, -1)
            };
            // Saturating: `retention.ms` is a client's topic config, and
            // i64::MAX must mean "keep", not wrap around to "drop".
            let oldest_kept = now.saturating_sub(retention_ms);
            // Only the leader changes a partition (a cluster node leads some).
            for p in topic.partitions.iter().filter(|p| p.is_serving()) {
                let segs = p.segments();
                let log_start = p.log_start_offset();
                let mut total: i64 = segs.iter().map(|s| s.size as i64).sum();
                let mut drop = 0;
                for s in &segs {
                    let deleted = s.next_offset <= log_start;
                    let too_old = !deleted
                        && retention_ms >= 0
                        && match record_time(s.max_timestamp, now) {
                            Some(ts) => ts < oldest_kept,
                            None => uploaded
                                .get_or_list(self)
                                .await
                                .get(&s.key)
                                .is_some_and(|t| *t < oldest_kept),
                        };
                    let too_big = retention_bytes >= 0 && total - s.size as i64 >= retention_bytes;
                    if !(deleted || too_old || too_big) {
                        break;
                    }
                    total -= s.size as i64;
                    drop += 1;
                }
                if drop > 0 {
                    let start = segs
                        .get(drop)
                        .map_or(segs[drop - 1].next_offset, |s| s.base_offset);
                    plan.push((p.clone(), drop, start));
                }
            }
        }
        let mut stats = RetentionStats::default();
        if !plan.is_empty() {
            self.update_manifest(|m| {
                for (p, drop, start) in &plan {
                    if let Some(pm) = m.partition_mut(p) {
                        let n = (*drop).min(pm.segments.len());
                        pm.segments.drain(..n);
                        pm.log_start_offset = pm.log_start_offset.max(*start);
                    }
                }
                Ok(())
            })
            .await?;
            for (p, drop, start) in &plan {
                p.truncate_front(*drop, *start);
                stats.runs_dropped += drop;
                tracing::info!(topic = %p.topic, partition = p.index, runs = drop, log_start_offset = start, "retention dropped old data");
            }
        }
        // By key first: it takes all uploaded runs of a compacted
        // partition, which the run compactor then has no need to merge.
        if let Err(e) = self.compact_keys_once().await {
            tracing::warn!(error = %e, "compaction by key failed; will retry");
        }
        if let Err(e) = self.compact_once().await {
            tracing::warn!(error = %e, "compaction failed; will retry");
        }
        stats.objects_deleted = self.collect_garbage().await?;
        Ok(stats)
    }

    /// Deletes unreferenced data objects older than the grace period, and
    /// manifest versions older than the ones kept.
    pub async fn collect_garbage(&self) -> Result<usize> {
        // Only the owner may collect: a stale broker's manifest does not
        // reference the new owner's objects. A fresh check, not the time-based
        // confirmation: the new owner may have claimed the log a moment ago
        // (its objects are then younger than the grace period).
        self.fence.check().await?;
        let (mut referenced, version, chains): (HashSet<String>, u64, Vec<(uuid::Uuid, i32)>) = {
            let m = self.manifest.lock().await;
            let keys = m
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .flat_map(|p| p.segments.iter().map(|s| s.key.clone()))
                .chain(crate::state::referenced(&m).cloned())
                .collect();
            let chains = m
                .topics
                .values()
                .flat_map(|t| (0..t.partitions.len()).map(move |i| (t.id, i as i32)))
                .collect();
            (keys, m.version, chains)
        };
        let mut wal_deleted = 0;
        // One listing of the other nodes' directories serves both of their
        // collectors (a cluster node only).
        let mut other_nodes = None;
        if self.layout.node_id().is_some() {
            // In a cluster, partitions other nodes lead now reference
            // objects this node uploaded before they moved. A chain another
            // node writes after this read can only drop such references
            // (its new objects are its own), so reading first is safe.
            // Every chain in the store, not only this node's topics: other
            // nodes' objects are collected against these references too
            // (`log/node_gc.rs`), and a topic this node has not heard of
            // yet must protect them.
            let mut uploaded = std::collections::HashMap::new();
            let known: HashSet<(uuid::Uuid, i32)> = chains.iter().copied().collect();
            let listed = self.chains_in_store().await?;
            let all = chains
                .into_iter()
                .map(|c| (c, true))
                .chain(listed.difference(&known).map(|c| (*c, false)));
            for ((id, index), known) in all {
                let p = crate::parts::load_partition(self.store.as_ref(), id, index).await?;
                if known {
                    uploaded.insert((id, index), p.uploaded_next);
                }
                referenced.extend(p.segments.into_iter().map(|s| s.key));
                referenced.extend(p.producers_in);
            }
            // A chain's uploaded end only grows: what these reads show
            // uploaded stays so.
            let others = self.other_node_dirs().await?;
            wal_deleted = self.collect_found_wal_objects(&uploaded, &others).await?;
            other_nodes = Some(others);
        }
        if let Err(e) = self.manifests.delete_old(version).await {
            tracing::debug!(error = %e, "could not delete old manifest versions; the next cycle retries");
        }
        // Upload objects (`objects/`) and compacted segments (`data/`) are
        // referenced from manifest segments, state objects (`state/`) from
        // its state references; the grace period keeps the collector away
        // from a state object whose commit is still in flight.
        let mut listed = Vec::new();
        for prefix in [
            self.layout.data_objects_prefix(),
            self.layout.segments_prefix(),
            self.layout.state_prefix(),
        ] {
            listed.extend(crate::store::list_all(self.store.as_ref(), &prefix).await?);
        }
        let grace = collectable_before(self.clock.now_ms(), self.config.gc_grace);
        let mut deleted =
            wal_deleted + self.delete_unreferenced(listed, &referenced, grace).await?;
        if let Some(others) = other_nodes {
            deleted += self
                .collect_other_nodes_objects(&referenced, &others)
                .await?;
        }
        if deleted > 0 {
            self.stats
                .gc_deleted
                .fetch_add(deleted as u64, Ordering::Relaxed);
            tracing::debug!(deleted, "garbage collector deleted unreferenced objects");
        }
        Ok(deleted)
    }
}

/// How far before "now" a record timestamp may lie and still count as the
/// record's time for retention: older (1970, a zeroed field) is taken for a
/// client bug rather than for data that is decades old.
const MAX_PAST_SKEW_MS: i64 = 365 * 24 * 3600 * 1000;
/// How far after "now" a record timestamp may lie and still count (Kafka
/// 4's `log.message.timestamp.after.max.ms` default, one hour).
const MAX_FUTURE_SKEW_MS: i64 = 3600 * 1000;

/// A segment's largest record timestamp, if it is one retention can go by:
/// present (Kafka writes -1 for "none") and within a year before and an
/// hour after `now`. `None` means: age the segment by its upload time.
fn record_time(max_timestamp: i64, now: i64) -> Option<i64> {
    let plausible = now.saturating_sub(MAX_PAST_SKEW_MS)..=now.saturating_add(MAX_FUTURE_SKEW_MS);
    (max_timestamp >= 0 && plausible.contains(&max_timestamp)).then_some(max_timestamp)
}

/// When each data and segment object was written (its store modification
/// time, in ms): the upload time of the runs in it, the age of a segment
/// whose record timestamps cannot be trusted (as Kafka falls back to a
/// segment file's mtime). Listed at most once per retention pass, and only
/// when such a segment is met.
#[derive(Default)]
struct UploadTimes(Option<std::collections::HashMap<String, i64>>);

impl UploadTimes {
    /// The times, listing the store on first use. A failed listing leaves
    /// the map empty: segments it would have aged are kept this pass.
    async fn get_or_list(&mut self, log: &Log) -> &std::collections::HashMap<String, i64> {
        if self.0.is_none() {
            let mut times = std::collections::HashMap::new();
            for prefix in [
                log.layout.data_objects_prefix(),
                log.layout.segments_prefix(),
            ] {
                let listed: std::result::Result<Vec<_>, _> =
                    log.store.list(Some(&prefix)).try_collect().await;
                match listed {
                    Ok(objects) => times.extend(
                        objects
                            .into_iter()
                            .map(|o| (o.location.to_string(), o.last_modified.timestamp_millis())),
                    ),
                    Err(e) => {
                        tracing::warn!(prefix = %prefix, error = %e, "cannot list upload times; segments with odd record timestamps are kept this pass")
                    }
                }
            }
            self.0 = Some(times);
        }
        self.0.get_or_insert_with(Default::default)
    }
}

/// The newest modification time an object may have and still be collected.
pub(crate) fn collectable_before(now_ms: i64, grace: Duration) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    chrono::Duration::from_std(grace)
        .ok()
        .and_then(|g| now.checked_sub_signed(g))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}
