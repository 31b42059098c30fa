//! The read-only JSON the console draws (types in `vigil_api::console`;
//! routes listed there). Reads are bounded: a page of records is at most
//! [`MAX_LIMIT`] records per partition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kafka_protocol::messages::{DescribeGroupsRequest, GroupId, ListGroupsRequest};
use kafka_protocol::records::Record;
use serde::Deserialize;
use vigil_api::console::{
    GroupInfo, GroupMember, GroupOffset, Overview, RecordView, RecordsPage, StorageOverview,
    TopicInfo, TopicPartitionInfo,
};
use vigil_api::ErrorKind;
use vigil_engine::output::{header, headers, scan_records};
use vigil_storage::store::StoreOp;
use vigil_storage::Log;

use crate::admin::error::{json_response, ApiError};
use crate::admin::extract::{Name, NoQuery, Params};
use crate::admin::AdminState;

/// Records a page holds by default, per partition.
const DEFAULT_LIMIT: i64 = 50;
/// Most records a page holds per partition.
pub const MAX_LIMIT: i64 = 500;
/// Bytes asked for per read.
const READ_BYTES: usize = 1 << 20;

/// `GET /v1/overview`.
pub async fn overview(State(s): State<AdminState>, _: Params<NoQuery>) -> Response {
    let c = &s.console;
    let log = &s.log;
    let topics = log.topics();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let cache = log.block_cache_stats();
    let object_store_requests = c.store.as_ref().map_or_else(BTreeMap::new, |m| {
        let stats = m.stats();
        StoreOp::ALL
            .iter()
            .map(|&op| (format!("{op:?}").to_lowercase(), stats.total_requests(op)))
            .filter(|(_, v)| *v > 0)
            .collect()
    });
    let lookups = cache.hits + cache.misses;
    let requests = |api: &str| super::requests_so_far(s.metrics.metrics(), api);
    let overview = Overview {
        cluster_id: c.cluster_id.clone(),
        brokers: c.brokers.clone(),
        topics: topics.len(),
        partitions: topics.iter().map(|t| t.partitions.len()).sum(),
        produce_requests: requests("Produce"),
        fetch_requests: requests("Fetch"),
        storage: StorageOverview {
            upload_lag_ms: u64::try_from(log.upload_lag().as_millis()).unwrap_or(u64::MAX),
            appended_bytes: n(&log.stats.appended_bytes),
            uploaded_bytes: n(&log.stats.uploaded_bytes),
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_hit_ratio: (lookups > 0).then(|| cache.hits as f64 / lookups as f64),
            object_store_requests,
        },
        deployments: s.detectors.list().await.len(),
        replays: s.detectors.replays().await.len(),
    };
    json_response(StatusCode::OK, &overview)
}

/// `GET /v1/history` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only series whose name starts with this.
    #[serde(default)]
    prefix: String,
}

/// `GET /v1/history[?prefix=P]`.
pub async fn history(State(s): State<AdminState>, Params(q): Params<HistoryQuery>) -> Response {
    json_response(StatusCode::OK, &s.console.history.view(&q.prefix))
}

/// `GET /v1/topics`.
pub async fn topics(State(s): State<AdminState>, _: Params<NoQuery>) -> Response {
    let mut topics: Vec<TopicInfo> = s
        .log
        .topics()
        .iter()
        .map(|t| TopicInfo {
            name: t.name.clone(),
            configs: t.configs.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let (start, hw) = (p.log_start_offset(), p.high_watermark());
                    TopicPartitionInfo {
                        partition: p.index,
                        log_start_offset: start,
                        high_watermark: hw,
                        records: hw - start,
                        size_bytes: p.size_bytes(),
                    }
                })
                .collect(),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    json_response(StatusCode::OK, &topics)
}

/// `GET /v1/topics/{name}/records` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// Partition (default 0).
    #[serde(default)]
    partition: i32,
    /// First offset (default: the last `limit` records).
    offset: Option<i64>,
    /// Records at most (default 50, at most 500).
    limit: Option<i64>,
}

fn page_limit(l: Option<i64>) -> Result<i64, ApiError> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        l @ 1..=MAX_LIMIT => Ok(l),
        l => Err(ApiError::invalid(format!(
            "limit must be 1..={MAX_LIMIT} (got {l})"
        ))),
    }
}

/// `GET /v1/topics/{name}/records?partition=P[&offset=O][&limit=N]`.
pub async fn records(
    State(s): State<AdminState>,
    Name(topic): Name,
    Params(q): Params<RecordsQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let mut records = Vec::new();
    read_tail(&s.log, &topic, q.partition, q.offset, limit, |r, p| {
        records.push(view(p, r))
    })
    .await?;
    let page = RecordsPage {
        topic,
        partitions: vec![q.partition],
        records,
    };
    Ok(json_response(StatusCode::OK, &page))
}

/// `GET /v1/deployments/{name}/alerts` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Alerts at most (default 50, at most 500).
    limit: Option<i64>,
}

/// `GET /v1/deployments/{name}/alerts[?limit=N]`: the newest alerts the
/// deployment wrote (among the last `limit` records of each partition of its
/// alert topic, which other deployments may share), newest first.
pub async fn alerts(
    State(s): State<AdminState>,
    Name(name): Name,
    Params(q): Params<AlertsQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let status = s.detectors.status(&name).await?;
    let partitions = s
        .log
        .topic(&status.output)
        .map_or(0, |t| t.partitions.len());
    let mut records = Vec::new();
    for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        read_tail(&s.log, &status.output, p, None, limit, |r, p| {
            if header(r, headers::DEPLOYMENT) == Some(name.as_str()) {
                records.push(view(p, r));
            }
        })
        .await?;
    }
    records.sort_by_key(|r| std::cmp::Reverse((r.timestamp, r.offset)));
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let page = RecordsPage {
        topic: status.output,
        partitions: (0..i32::try_from(partitions).unwrap_or(i32::MAX)).collect(),
        records,
    };
    Ok(json_response(StatusCode::OK, &page))
}

/// Calls `f` with up to `limit` records of `topic[partition]` from `offset`
/// (default: the last `limit`).
async fn read_tail(
    log: &Log,
    topic: &str,
    partition: i32,
    offset: Option<i64>,
    limit: i64,
    mut f: impl FnMut(&Record, i32),
) -> Result<(), ApiError> {
    let p = log.partition(topic, partition).map_err(|e| {
        ApiError::new(
            ErrorKind::NotFound,
            format!("no partition {partition} of topic {topic:?}: {e}"),
        )
    })?;
    let (start, hw) = (p.log_start_offset(), p.high_watermark());
    let from = offset.unwrap_or(hw - limit).clamp(start, hw);
    let end = from.saturating_add(limit).min(hw);
    let what = format!("{topic}[{partition}]");
    scan_records(log, &p, from, end, READ_BYTES, &what, |r| f(r, partition)).await?;
    Ok(())
}

fn text(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn view(partition: i32, r: &Record) -> RecordView {
    RecordView {
        partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: text(&r.key),
        value: text(&r.value),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect(),
    }
}

/// `GET /v1/groups`: every live group and every group with committed
/// offsets, by id.
pub async fn groups(State(s): State<AdminState>, _: Params<NoQuery>) -> Response {
    let Some(coord) = s.console.groups.as_ref() else {
        return json_response(StatusCode::OK, &Vec::<GroupInfo>::new());
    };
    let mut groups: BTreeMap<String, GroupInfo> = BTreeMap::new();
    let listed = coord.list_groups(ListGroupsRequest::default(), 4);
    let ids: Vec<GroupId> = listed.groups.iter().map(|g| g.group_id.clone()).collect();
    let described = coord.describe_groups(DescribeGroupsRequest::default().with_groups(ids), 5);
    for g in described.groups {
        let members = g
            .members
            .iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
            })
            .collect();
        groups.insert(
            g.group_id.to_string(),
            GroupInfo {
                group: g.group_id.to_string(),
                state: g.group_state.to_string(),
                members,
                offsets: Vec::new(),
            },
        );
    }
    for (key, committed) in coord.snapshot_offsets() {
        let hw = s
            .log
            .partition(&key.topic, key.partition)
            .ok()
            .map(|p| p.high_watermark());
        let info = groups
            .entry(key.group.clone())
            .or_insert_with(|| GroupInfo {
                group: key.group.clone(),
                state: "Empty".to_string(),
                members: Vec::new(),
                offsets: Vec::new(),
            });
        info.offsets.push(GroupOffset {
            topic: key.topic,
            partition: key.partition,
            committed: committed.offset,
            high_watermark: hw,
            lag: hw.map(|h| (h - committed.offset).max(0)),
        });
    }
    let mut out: Vec<GroupInfo> = groups.into_values().collect();
    for g in &mut out {
        g.offsets
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    }
    json_response(StatusCode::OK, &out)
}
