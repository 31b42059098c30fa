//! Hot swap (a new module version onto a running deployment) and shadow
//! deployments (a candidate version beside the live one).

use std::collections::HashMap;
use std::sync::Arc;

use super::checkpoint::{self, VersionSpan};
use super::spec::{Kind, SpecError};
use super::status::{DeploymentState, DeploymentStatus};
use vigil_api::{ShadowRequest, SwapRequest};

use super::{parse_schema, Deployment, DetectorError, Detectors};

/// Records re-fed to a new version that cannot read its predecessor's state.
const DEFAULT_REBUILD_RECORDS: i64 = 10_000;

impl Detectors {
    /// Replaces a deployment's module (and optionally config) without
    /// skipping or re-scoring input: every runner commits where it is, and
    /// the new version continues from exactly that offset, with the old
    /// state if it accepts it (see `vigil_sdk::Detector::STATE_FORMAT`),
    /// otherwise re-warmed on the records just before.
    pub async fn swap(
        &self,
        name: &str,
        req: SwapRequest,
    ) -> Result<DeploymentStatus, DetectorError> {
        let old = self.get(name).await?;
        if old.spec.kind == Kind::Replay {
            return Err(SpecError(format!(
                "{name} is a replay job; start a new replay with the other module instead"
            ))
            .into());
        }
        let rebuild = req.rebuild_records.unwrap_or(DEFAULT_REBUILD_RECORDS);
        if rebuild < 0 {
            return Err(SpecError("rebuild_records must not be negative".into()).into());
        }
        let mut spec = old.spec.clone();
        spec.module = req.module;
        if let Some(c) = req.config {
            spec.config = c;
        }
        let module = self.checked_module(&mut spec).await?;
        if spec.module == old.spec.module && spec.config == old.spec.config {
            return Ok(old.status());
        }
        let schema = parse_schema(&spec)?;
        let state = old.state.lock().clone();
        // Each runner commits its offset and state on the way out; the new
        // version starts from those commits.
        old.stop_runners().await;
        let prefix = checkpoint::checkpoint_prefix(name);
        let updated: Vec<(String, checkpoint::Checkpoint)> = self
            .checkpoints
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, cp)| {
                let mut cp = cp.clone();
                cp.module = spec.module.clone();
                let span = VersionSpan {
                    module: spec.module.clone(),
                    label: module.label(),
                    from: cp.offset,
                    state: None,
                };
                // Two swaps at the same offset: the first version scored nothing.
                if cp.versions.last().is_some_and(|v| v.from == cp.offset) {
                    cp.versions.pop();
                }
                cp.versions.push(span);
                cp.swap_rebuild = Some(rebuild);
                (k.clone(), cp)
            })
            .collect();
        let new = Arc::new(Deployment::new(
            spec,
            module,
            schema,
            state.clone(),
            old.created_ms,
        ));
        let mut entries: Vec<(String, Option<String>)> = updated
            .iter()
            .map(|(k, cp)| (k.clone(), serde_json::to_string(cp).ok()))
            .collect();
        let stored = serde_json::to_string(&new.stored())
            .map_err(|e| DetectorError::Store(e.to_string()))?;
        entries.push((checkpoint::spec_key(name), Some(stored)));
        if let Err(e) = self.log.kv_put(entries).await {
            // Nothing changed: put the old version back to work.
            if matches!(state, DeploymentState::Running) {
                self.start(&old).await?;
            }
            return Err(e.into());
        }
        self.checkpoints.lock().extend(updated);
        self.deployments
            .lock()
            .await
            .insert(name.to_string(), new.clone());
        if matches!(state, DeploymentState::Running) {
            self.start(&new).await?;
        }
        tracing::info!(deployment = %name, from = %old.spec.module, to = %new.spec.module, "module swapped");
        Ok(new.status())
    }

    /// Deploys a candidate module beside a live deployment, on the same
    /// input from the live one's committed offsets, into its own alert
    /// topic; `vigil detector diff` compares the two.
    pub async fn shadow(
        &self,
        live: &str,
        req: ShadowRequest,
    ) -> Result<DeploymentStatus, DetectorError> {
        let d = self.get(live).await?;
        if d.spec.kind != Kind::Live {
            return Err(SpecError(format!("{live} is not a live deployment")).into());
        }
        let mut spec = d.spec.clone();
        spec.name = req.name.unwrap_or_else(|| format!("{live}.shadow"));
        spec.output = req.output.unwrap_or_else(|| spec.name.clone());
        spec.module = req.module;
        spec.dead_letter_topic = None;
        spec.kind = Kind::Shadow(live.to_string());
        if let Some(c) = req.config {
            spec.config = c;
        }
        if spec.output == d.spec.output {
            return Err(SpecError(format!(
                "the shadow must write to its own topic, not the live one's ({})",
                d.spec.output
            ))
            .into());
        }
        let prefix = checkpoint::checkpoint_prefix(live);
        let starts: HashMap<String, i64> = self
            .checkpoints
            .lock()
            .iter()
            .filter_map(|(k, cp)| Some((k.strip_prefix(&prefix)?.to_string(), cp.offset)))
            .collect();
        self.deploy_at(spec, &starts).await
    }
}
