//! Hot swap (a new module version onto a running deployment) and shadow
//! deployments (a candidate version beside the live one): the front end
//! checks the request and compiles the module, the supervisor applies it
//! (see `commands`).

use super::spec::{Kind, SpecError};
use super::status::DeploymentStatus;
use super::supervisor::Command;
use vigil_api::{ShadowRequest, SwapRequest};

use super::{DetectorError, Detectors};

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
        let view = self
            .view(name)
            .ok_or_else(|| DetectorError::NotFound(name.to_string()))?;
        if view.kind() == Kind::Replay {
            return Err(SpecError(format!(
                "{name} is a replay job; start a new replay with the other module instead"
            ))
            .into());
        }
        let Some(old) = view.deployment.clone() else {
            return Err(supervisor_corrupt(name, &view));
        };
        let rebuild = req
            .rebuild_records
            .unwrap_or(self.settings().rebuild_records);
        if rebuild < 0 {
            return Err(SpecError("rebuild_records must not be negative".into()).into());
        }
        let mut spec = old.spec.clone();
        spec.module = req.module;
        if let Some(c) = req.config {
            spec.config = c;
        }
        let deployment = self.prepare(spec).await?;
        if deployment.spec.module == old.spec.module && deployment.spec.config == old.spec.config {
            return Ok(view.status());
        }
        let name = name.to_string();
        self.call("swap", |reply| Command::Swap {
            name,
            deployment,
            rebuild,
            reply,
        })
        .await
    }

    /// Deploys a candidate module beside a live deployment, on the same
    /// input from the live one's committed offsets, into its own alert
    /// topic; `vigil detector diff` compares the two.
    pub async fn shadow(
        &self,
        live: &str,
        req: ShadowRequest,
    ) -> Result<DeploymentStatus, DetectorError> {
        let view = self
            .view(live)
            .ok_or_else(|| DetectorError::NotFound(live.to_string()))?;
        if view.kind() != Kind::Live {
            return Err(SpecError(format!("{live} is not a live deployment")).into());
        }
        let Some(d) = view.deployment.clone() else {
            return Err(supervisor_corrupt(live, &view));
        };
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
        spec.validate()?;
        if self.view(&spec.name).is_some() {
            return Err(DetectorError::Exists(spec.name));
        }
        let deployment = self.prepare(spec).await?;
        let live = live.to_string();
        self.call("shadow", |reply| Command::Shadow {
            live,
            deployment,
            reply,
        })
        .await
    }
}

fn supervisor_corrupt(name: &str, view: &super::View) -> DetectorError {
    super::supervisor::corrupt_spec(name, view)
}
