//! `vigil demo`: an embedded broker, a detector built from this checkout and
//! deployed on `payments`, synthetic card payments with injected fraud
//! bursts, and the alerts as a plain Kafka consumer reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::KafkaClient;
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use vigil_api::client::{AdminClient, ClientError};
use vigil_api::DeploymentSpec;
use vigil_protocol::BatchBuilder;
use vigil_server::Settings;

/// `vigil demo` flags.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Payments to produce.
    #[arg(long, default_value_t = 20_000)]
    payments: usize,
    /// Cards in the synthetic population.
    #[arg(long, default_value_t = 200)]
    cards: usize,
    /// Fraud bursts to inject.
    #[arg(long, default_value_t = 6)]
    bursts: usize,
    /// A prebuilt rate-spike module (skips the wasm build).
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Keep the broker's data here (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Random seed of the synthetic traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const TOPIC: &str = "payments";
const ALERTS: &str = "payments.alerts";
const DEPLOYMENT: &str = "card-velocity";
const PARTITIONS: i32 = 3;

/// The checkout this binary was built from (plugins live there).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn build_plugin() -> anyhow::Result<PathBuf> {
    let dir = repo_root().join("plugins/rate-spike");
    if !dir.join("Cargo.toml").exists() {
        bail!(
            "{} not found: run the demo from a vigil checkout, or pass --wasm FILE",
            dir.display()
        );
    }
    println!("building plugins/rate-spike to wasm (first time: a minute or two)…");
    let out = crate::wasm_build::build(&[dir], &repo_root().join("target/wasm"))?;
    out.into_iter()
        .next()
        .context("the build produced no module")
}

/// Runs one blocking admin API call off the async runtime.
async fn admin<T: Send + 'static>(
    client: &AdminClient,
    call: impl FnOnce(&AdminClient) -> Result<T, ClientError> + Send + 'static,
) -> anyhow::Result<T> {
    let client = client.clone();
    Ok(tokio::task::spawn_blocking(move || call(&client)).await??)
}

/// Injected burst: the card and the event-time span it covers.
struct Burst {
    card: usize,
    at_index: usize,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let wasm_path = match args.wasm.clone() {
        Some(p) => p,
        None => tokio::task::spawn_blocking(build_plugin).await??,
    };
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let settings = Settings::embedded(&data_dir);
    let components = vigil_server::Components::from_settings(&settings)?;
    let running = vigil_server::server::start(settings, components).await?;
    let (kafka, http) = (running.kafka_addr, running.admin_addr);
    println!(
        "embedded broker: Kafka on {kafka}, admin http://{http}, data in {}",
        data_dir.display()
    );

    let mut client = KafkaClient::connect(kafka).await?;
    client.create_topic(TOPIC, PARTITIONS).await?;
    let api = AdminClient::new(&format!("http://{http}"))?;
    let meta = admin(&api, move |c| c.upload_module(&wasm)).await?;
    println!(
        "uploaded {}@{} ({} bytes) as {}",
        meta.name.as_deref().unwrap_or("?"),
        meta.version.as_deref().unwrap_or("?"),
        meta.size,
        meta.hash.chars().take(12).collect::<String>()
    );
    let spec: DeploymentSpec = serde_json::from_value(json!({
        "name": DEPLOYMENT,
        "module": meta.hash,
        "inputs": [TOPIC],
        "output": ALERTS,
        "value_schema": {"card": "string", "amount": "float64", "merchant": "string"},
        "config": {"window_ms": 60_000, "factor": 4.0, "min_events": 8},
        "start": "earliest",
        "on_failure": "dead-letter",
    }))
    .context("the demo's deployment spec")?;
    admin(&api, move |c| c.deploy(&spec)).await?;
    println!("deployed {DEPLOYMENT} on {TOPIC} → {ALERTS}\n");

    // A plain consumer on the alert topic, printing as alerts arrive.
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let consumer = tokio::spawn(consume_alerts(kafka, seen.clone()));

    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut bursts: Vec<Burst> = (0..args.bursts)
        .map(|i| Burst {
            card: rng.gen_range(0..args.cards),
            at_index: (i + 1) * args.payments / (args.bursts + 1),
        })
        .collect();
    bursts.sort_by_key(|b| b.at_index);
    let mut ts = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut pending: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
    let mut burst_cards = BTreeSet::new();
    let mut produced = 0usize;
    let card_name = |c: usize| format!("card-{c:04}");
    let partition_of = |c: usize| (c % PARTITIONS as usize) as i32;
    let mut queue: Vec<(usize, f64)> = Vec::new();
    for i in 0..args.payments {
        if let Some(b) = bursts.iter().find(|b| b.at_index == i) {
            burst_cards.insert(card_name(b.card));
            // 25 payments on one card within ~20 s of event time.
            queue.extend((0..25).map(|_| (b.card, rng.gen_range(200.0..900.0))));
        }
        let (card, amount) = queue
            .pop()
            .unwrap_or_else(|| (rng.gen_range(0..args.cards), rng.gen_range(5.0..120.0)));
        // ~2 payments/s over all cards (each card pays every ~2 minutes);
        // during a burst one card pays every 0.8 s.
        ts += if queue.is_empty() {
            rng.gen_range(200..800)
        } else {
            800
        };
        let value = json!({"card": card_name(card), "amount": (amount * 100.0_f64).round() / 100.0, "merchant": format!("m-{}", rng.gen_range(0..50))});
        let p = partition_of(card);
        let b = pending
            .remove(&p)
            .unwrap_or_else(|| BatchBuilder::new(Compression::Lz4));
        pending.insert(
            p,
            b.record(
                ts,
                Some(Bytes::from(card_name(card))),
                Some(Bytes::from(value.to_string())),
            ),
        );
        produced += 1;
        if i % 300 == 299 || i + 1 == args.payments {
            for (p, b) in std::mem::take(&mut pending) {
                client.produce(TOPIC, p, b.build()?).await?;
            }
        }
    }
    println!("\nproduced {produced} payments ({} fraud bursts on {:?}); waiting for the detector to catch up…", args.bursts, burst_cards);
    wait_caught_up(&api).await?;
    let status = admin(&api, |c| c.status(DEPLOYMENT)).await?;
    let written: u64 = status.partitions.iter().map(|p| p.alerts).sum();
    // Let the consumer read everything the deployment wrote.
    for _ in 0..100 {
        if seen.lock().len() as u64 >= written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.abort();
    let alerted: BTreeSet<String> = seen.lock().iter().cloned().collect();
    let caught = burst_cards.intersection(&alerted).count();
    let missed: Vec<_> = burst_cards.difference(&alerted).collect();
    let extra: Vec<_> = alerted.difference(&burst_cards).collect();
    println!(
        "\n{written} alerts in {ALERTS}. Fraud bursts caught: {caught}/{}; missed: {missed:?}; cards alerted without an injected burst: {extra:?}",
        burst_cards.len()
    );
    println!("Alerts are ordinary Kafka records: with `vigil serve` running, `kcat -C -b 127.0.0.1:9092 -t {ALERTS}` reads them.");
    running.shutdown().await;
    Ok(())
}

/// Waits until the deployment has processed everything produced.
async fn wait_caught_up(api: &AdminClient) -> anyhow::Result<()> {
    for _ in 0..600 {
        let s = admin(api, |c| c.status(DEPLOYMENT)).await?;
        if let Some(e) = s.state.error() {
            bail!("the deployment failed: {e}");
        }
        let lag: i64 = s.partitions.iter().map(|p| p.lag).sum();
        if lag == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the deployment did not catch up within a minute")
}

async fn consume_alerts(
    kafka: SocketAddr,
    seen: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
) -> anyhow::Result<()> {
    let mut c = KafkaClient::connect(kafka).await?;
    let mut offsets = [0i64; PARTITIONS as usize];
    loop {
        for (p, off) in offsets.iter_mut().enumerate() {
            let records = match c.fetch(ALERTS, p as i32, *off, 100).await {
                Ok(r) => r,
                // The topic appears with the deployment; until then, retry.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for r in records {
                *off = r.offset + 1;
                seen.lock().push(
                    r.key
                        .as_deref()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                );
                let v: Value = r
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice(v).ok())
                    .unwrap_or(Value::Null);
                println!(
                    "ALERT {:<9} {:<10} score {:>6.2}  {}  (from {}-{}@{})",
                    v["severity"].as_str().unwrap_or("?"),
                    v["key"].as_str().unwrap_or("-"),
                    v["score"].as_f64().unwrap_or(f64::NAN),
                    v["message"].as_str().unwrap_or(""),
                    v["source"]["topic"].as_str().unwrap_or("?"),
                    v["source"]["partition"],
                    v["source"]["offset"],
                );
            }
        }
    }
}
