//! `vigil detector swap | shadow | diff`: hot swap, shadow runs and alert
//! diffs through the admin API.

use anyhow::Context as _;
use clap::Args;
use vigil_api::client::AdminClient;
use vigil_api::{DeploymentStatus, DiffRequest, ShadowRequest, SwapRequest};

use super::module_ref;
use crate::cli::{api, print_status, short_hash, text_or_file};

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
pub fn swap(admin: &AdminClient, a: SwapArgs) -> anyhow::Result<()> {
    let req = SwapRequest {
        module: module_ref(admin, &a.module)?,
        config: a.config.as_deref().map(text_or_file).transpose()?,
        rebuild_records: a
            .rebuild
            .map(|n| i64::try_from(n).context("--rebuild is too large"))
            .transpose()?,
    };
    let s = api(admin.swap(&a.name, &req))?;
    print_status(&s);
    print_versions(&s);
    Ok(())
}

/// Which module version scored which offsets, per partition.
fn print_versions(s: &DeploymentStatus) {
    for p in &s.partitions {
        let spans: Vec<String> = p
            .versions
            .iter()
            .map(|v| {
                let label = match &v.module_label {
                    Some(l) => l.clone(),
                    None => short_hash(&v.module),
                };
                let to = v.to.map_or("…".into(), |t| t.to_string());
                format!("{label} [{}, {to})", v.from)
            })
            .collect();
        if !spans.is_empty() {
            println!("  {}-{}: {}", p.topic, p.partition, spans.join(" → "));
        }
    }
}

/// `vigil detector shadow`: runs another module beside a deployment.
pub fn shadow(admin: &AdminClient, a: ShadowArgs) -> anyhow::Result<()> {
    let req = ShadowRequest {
        module: module_ref(admin, &a.module)?,
        name: None,
        output: a.output.clone(),
        config: a.config.as_deref().map(text_or_file).transpose()?,
    };
    let s = api(admin.shadow(&a.name, &req))?;
    print_status(&s);
    println!("compare with: vigil detector diff {} {}", a.name, s.name);
    Ok(())
}

/// `vigil detector diff`: which input records only one side alerted on.
pub fn diff(admin: &AdminClient, a: DiffArgs) -> anyhow::Result<()> {
    let req = DiffRequest {
        a: a.a.clone(),
        b: a.b.clone(),
        window: a.window,
        from: a.from,
        to: a.to,
    };
    let r = api(admin.diff(&req))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("A = {}   B = {}   window {}", a.a, a.b, a.window);
    println!(
        "  {:<28} {:>10} {:>10} {:>10}  samples (only A | only B)",
        "source partition", "only A", "only B", "both"
    );
    let samples = |v: &[i64]| {
        v.iter()
            .take(5)
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    for p in &r.partitions {
        println!(
            "  {:<28} {:>10} {:>10} {:>10}  {} | {}",
            format!("{}-{}", p.topic, p.partition),
            p.only_a,
            p.only_b,
            p.both,
            samples(&p.sample_only_a),
            samples(&p.sample_only_b),
        );
    }
    println!(
        "  {:<28} {:>10} {:>10} {:>10}",
        "total", r.total.only_a, r.total.only_b, r.total.both
    );
    Ok(())
}
