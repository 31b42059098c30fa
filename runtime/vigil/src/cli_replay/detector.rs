//! `vigil detector swap | shadow | diff`: hot swap, shadow runs and alert
//! diffs through the admin API.

use clap::Args;
use serde_json::{json, Value};

use super::{module_ref, num, partitions, text};
use crate::cli::{call, print_status, text_or_file, url, Body};

/// `vigil detector swap` flags.
#[derive(Args, Debug)]
pub struct SwapArgs {
    /// Deployment name.
    name: String,
    /// New module: NAME, NAME@VERSION, hash, or a .wasm file to upload first.
    #[arg(long)]
    module: String,
    /// New detector config: JSON text or @file (default: keep the current one).
    #[arg(long)]
    config: Option<String>,
    /// If the new module cannot take over the old state, warm it up on this
    /// many records before the swap point (their alerts are not re-emitted).
    #[arg(long)]
    rebuild: Option<u64>,
}

/// `vigil detector shadow` flags.
#[derive(Args, Debug)]
pub struct ShadowArgs {
    /// Deployment to shadow.
    name: String,
    /// Module to run in the shadow.
    #[arg(long)]
    module: String,
    /// Alert topic of the shadow (default `<name>.shadow`).
    #[arg(long)]
    output: Option<String>,
    /// Detector config: JSON text or @file (default: the deployment's).
    #[arg(long)]
    config: Option<String>,
}

/// `vigil detector diff` flags.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A deployment name (its alerts) or an alert topic.
    a: String,
    /// The other deployment or alert topic.
    b: String,
    /// Alerts up to this many source offsets apart still match.
    #[arg(long, default_value_t = 0)]
    window: i64,
    /// Only source offsets at or after this.
    #[arg(long)]
    from: Option<i64>,
    /// Only source offsets before this.
    #[arg(long)]
    to: Option<i64>,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

/// `vigil detector swap`: replaces a running deployment's module in place.
pub fn swap(admin: &str, a: SwapArgs) -> anyhow::Result<()> {
    let mut body = json!({ "module": module_ref(admin, &a.module)? });
    if let Some(c) = &a.config {
        body["config"] = text_or_file(c)?;
    }
    if let Some(n) = a.rebuild {
        body["rebuild_records"] = json!(n);
    }
    let s = call(
        ureq::post(&url(admin, &format!("/v1/deployments/{}/module", a.name))),
        Some(Body::Json(body)),
    )?;
    print_status(&s);
    print_versions(&s);
    Ok(())
}

/// Which module version scored which offsets, per partition.
fn print_versions(s: &Value) {
    for p in partitions(s) {
        let spans: Vec<String> = p
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| {
                let label = match v.get("module_label").and_then(Value::as_str) {
                    Some(l) => l.to_string(),
                    None => text(v, "module").chars().take(12).collect(),
                };
                let to = v
                    .get("to")
                    .and_then(Value::as_i64)
                    .map_or("…".into(), |t| t.to_string());
                format!("{label} [{}, {to})", text(v, "from"))
            })
            .collect();
        if !spans.is_empty() {
            println!(
                "  {}-{}: {}",
                text(p, "topic"),
                text(p, "partition"),
                spans.join(" → ")
            );
        }
    }
}

/// `vigil detector shadow`: runs another module beside a deployment.
pub fn shadow(admin: &str, a: ShadowArgs) -> anyhow::Result<()> {
    let mut body = json!({ "module": module_ref(admin, &a.module)? });
    if let Some(o) = &a.output {
        body["output"] = json!(o);
    }
    if let Some(c) = &a.config {
        body["config"] = text_or_file(c)?;
    }
    let s = call(
        ureq::post(&url(admin, &format!("/v1/deployments/{}/shadow", a.name))),
        Some(Body::Json(body)),
    )?;
    print_status(&s);
    println!(
        "compare with: vigil detector diff {} {}",
        a.name,
        text(&s, "name")
    );
    Ok(())
}

/// `vigil detector diff`: which input records only one side alerted on.
pub fn diff(admin: &str, a: DiffArgs) -> anyhow::Result<()> {
    let mut body = json!({ "a": a.a, "b": a.b, "window": a.window });
    if let Some(f) = a.from {
        body["from"] = json!(f);
    }
    if let Some(t) = a.to {
        body["to"] = json!(t);
    }
    let r = call(ureq::post(&url(admin, "/v1/diff")), Some(Body::Json(body)))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("A = {}   B = {}   window {}", a.a, a.b, a.window);
    println!(
        "  {:<28} {:>10} {:>10} {:>10}  samples (only A | only B)",
        "source partition", "only A", "only B", "both"
    );
    let samples = |p: &Value, k: &str| {
        let v: Vec<String> = p
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(5)
            .map(Value::to_string)
            .collect();
        v.join(",")
    };
    for p in partitions(&r) {
        println!(
            "  {:<28} {:>10} {:>10} {:>10}  {} | {}",
            format!("{}-{}", text(p, "topic"), text(p, "partition")),
            num(p, "only_a"),
            num(p, "only_b"),
            num(p, "both"),
            samples(p, "sample_only_a"),
            samples(p, "sample_only_b"),
        );
    }
    let t = r.get("total").cloned().unwrap_or_default();
    println!(
        "  {:<28} {:>10} {:>10} {:>10}",
        "total",
        num(&t, "only_a"),
        num(&t, "only_b"),
        num(&t, "both")
    );
    Ok(())
}
