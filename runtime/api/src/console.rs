//! Read-only views the web console (`/console`) draws, served as JSON by the
//! admin API so that the console never scrapes `/metrics` text:
//!
//! ```text
//! GET /v1/overview                          → Overview
//! GET /v1/history[?prefix=P]                → History
//! GET /v1/topics                            → [TopicInfo]
//! GET /v1/topics/NAME/records?partition=P[&offset=O][&limit=N] → RecordsPage
//! GET /v1/groups                            → [GroupInfo]
//! GET /v1/deployments/NAME/alerts[?limit=N] → RecordsPage (its newest alerts)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/overview`: the broker at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Overview {
    /// Cluster id.
    pub cluster_id: String,
    /// Brokers serving the cluster (this one, until clustering lands).
    pub brokers: Vec<BrokerInfo>,
    /// Topics.
    pub topics: usize,
    /// Partitions over all topics.
    pub partitions: usize,
    /// Kafka Produce requests handled since start.
    pub produce_requests: u64,
    /// Kafka Fetch requests handled since start.
    pub fetch_requests: u64,
    /// Storage counters.
    pub storage: StorageOverview,
    /// Detector deployments (live, shadow and replay).
    pub deployments: usize,
    /// Replay jobs.
    pub replays: usize,
}

/// One broker of an [`Overview`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised Kafka `host:port`.
    pub kafka: String,
    /// Admin listener address.
    pub admin: String,
}

/// The storage part of an [`Overview`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct StorageOverview {
    /// Age of the oldest appended data not yet in the object store, ms.
    pub upload_lag_ms: u64,
    /// Record batch bytes appended since start.
    pub appended_bytes: u64,
    /// Bytes written to data objects since start.
    pub uploaded_bytes: u64,
    /// Block cache hits since start.
    pub cache_hits: u64,
    /// Block cache misses since start.
    pub cache_misses: u64,
    /// `hits / (hits + misses)`, `None` before the first block read.
    pub cache_hit_ratio: Option<f64>,
    /// Object store requests since start, by operation (`get`, `put`, ...).
    pub object_store_requests: BTreeMap<String, u64>,
}

/// `GET /v1/history`: the broker's recent samples, oldest point first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct History {
    /// Milliseconds between two samples.
    pub interval_ms: u64,
    /// Most points kept per series.
    pub capacity: usize,
    /// Series, by name.
    pub series: Vec<Series>,
}

/// One sampled series of a [`History`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Series {
    /// Name, e.g. `broker.produce_per_sec` or
    /// `deployment.NAME.alerts_per_sec`.
    pub name: String,
    /// `[unix ms, value]`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// One topic of `GET /v1/topics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic configs as given at creation (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
    /// Partitions.
    pub partitions: Vec<TopicPartitionInfo>,
}

/// One partition of a [`TopicInfo`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TopicPartitionInfo {
    /// Index.
    pub partition: i32,
    /// First offset still kept.
    pub log_start_offset: i64,
    /// Next offset to be written.
    pub high_watermark: i64,
    /// Records kept (`high_watermark - log_start_offset`, counting offsets).
    pub records: i64,
    /// Bytes of the partition's log: uploaded runs plus batches not
    /// uploaded yet (what DescribeLogDirs reports).
    #[serde(default)]
    pub size_bytes: u64,
}

/// A page of records from one partition (the record browser, and a
/// deployment's recent alerts).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RecordsPage {
    /// Topic.
    pub topic: String,
    /// Partitions read.
    pub partitions: Vec<i32>,
    /// Records, by partition then offset.
    pub records: Vec<RecordView>,
}

/// One record as the console shows it: bytes as UTF-8 text when they are
/// (lossily otherwise).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RecordView {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp, unix ms.
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<String>,
    /// Value, `None` when null.
    pub value: Option<String>,
    /// Headers in order.
    pub headers: Vec<(String, Option<String>)>,
}

/// One consumer group of `GET /v1/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct GroupInfo {
    /// Group id.
    pub group: String,
    /// Kafka's state name (`Stable`, `Empty`, ...); `Empty` for a group
    /// that only has committed offsets.
    pub state: String,
    /// Members.
    pub members: Vec<GroupMember>,
    /// Committed offsets and lag per partition.
    pub offsets: Vec<GroupOffset>,
}

/// A member of a [`GroupInfo`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// A committed offset of a [`GroupInfo`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct GroupOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset.
    pub committed: i64,
    /// High watermark now (`None`: the partition is gone).
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed`, at least 0.
    pub lag: Option<i64>,
}
