//! `vigil eval --alerts TOPIC`: reads a live deployment's alert topic and
//! its labels topic from a running broker and scores one against the other
//! (the scoring is `labels.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kafka_protocol::records::Record;
use vigil_sdk::blocks::{Label, LABELS_TOPIC_SUFFIX};

use super::labels::{format_live, score_live, LiveInput, LiveReport};
use super::report::{alert_source, AlertRef};
use crate::client::{ClientError, KafkaClient};

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION: past the last partition (or no topic).
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// How long reading both topics may take in all.
const READ_BUDGET: Duration = Duration::from_secs(120);

/// What `--alerts` mode needs from the command line.
pub struct LiveArgs<'a> {
    /// Kafka address of the broker.
    pub kafka: SocketAddr,
    /// The deployment's alert topic.
    pub alerts: &'a str,
    /// Labels topic (default `<alerts>.labels`).
    pub labels: Option<&'a str>,
    /// Match window in offsets.
    pub window: i64,
    /// Print JSON.
    pub json: bool,
}

/// Runs the live evaluation and prints its report.
pub async fn run(args: LiveArgs<'_>) -> anyhow::Result<()> {
    let report = evaluate(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", format_live(&report));
    }
    Ok(())
}

async fn evaluate(args: &LiveArgs<'_>) -> anyhow::Result<LiveReport> {
    let labels_topic = args
        .labels
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}{LABELS_TOPIC_SUFFIX}", args.alerts));
    let mut client = KafkaClient::connect(args.kafka).await?;
    let deadline = Instant::now() + READ_BUDGET;
    let mut input = LiveInput::default();
    for r in read_topic(&mut client, args.alerts, deadline).await? {
        let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref()));
        let (topic, partition, offset) = alert_source(headers)
            .map_err(|e| anyhow::anyhow!("{}@{}: {e}", args.alerts, r.offset))?;
        let Some(topic) = topic else {
            bail!(
                "{}@{}: alert without a vigil.source.topic header; is {} an alert topic?",
                args.alerts,
                r.offset,
                args.alerts
            );
        };
        let a = AlertRef {
            partition,
            offset,
            score: None,
            alert: true,
        }
        .with_value(r.value.as_deref())
        .map_err(|e| anyhow::anyhow!("{}@{}: {e}", args.alerts, r.offset))?;
        if a.alert {
            input.alerts.push((topic, partition, offset));
        } else {
            input.skipped += 1;
        }
    }
    let labels = read_topic(&mut client, &labels_topic, deadline)
        .await
        .with_context(|| {
            format!(
                "cannot read the labels topic {labels_topic} (records whose value is \
                 {{\"topic\": .., \"partition\": .., \"offset\": .., \"anomaly\": true|false}})"
            )
        })?;
    for r in labels {
        match r
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<Label>(v).ok())
        {
            Some(l) => input.labels.push(l),
            None => input.malformed_labels += 1,
        }
    }
    Ok(score_live(&input, args.window, args.alerts, &labels_topic))
}

/// Every record of every partition of `topic` up to its current end (a
/// fetch that comes back empty). Partitions are found by fetching 0, 1, …
/// until the broker says there is no such partition.
async fn read_topic(
    client: &mut KafkaClient,
    topic: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    for partition in 0.. {
        let mut offset = 0i64;
        loop {
            if Instant::now() > deadline {
                bail!(
                    "reading {topic} took more than {} s; it is too big for a live evaluation",
                    READ_BUDGET.as_secs()
                );
            }
            let records = match client.fetch(topic, partition, offset, 100).await {
                Ok(r) => r,
                Err(ClientError::Kafka { code, .. })
                    if code == UNKNOWN_TOPIC_OR_PARTITION && partition > 0 =>
                {
                    return Ok(out);
                }
                Err(ClientError::Kafka { code, .. }) if code == UNKNOWN_TOPIC_OR_PARTITION => {
                    bail!("topic {topic} does not exist");
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {topic}[{partition}]"))
                }
            };
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            out.extend(records);
        }
    }
    Ok(out)
}
