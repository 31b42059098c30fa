//! Deployments under ACLs while they run (issue 13, must-have 4): the
//! broker checks a deployment's principal when it is created; this is the
//! hook that lets it check again later and stop one whose principal lost
//! an ACL. The engine knows nothing of ACLs: the server asks for
//! [`Detectors::grants`], decides, and calls [`Detectors::revoke`].

use crate::spec::FailurePolicy;
use crate::status::{DeploymentState, DeploymentStatus};
use crate::supervisor::{Command, Supervisor};
use crate::{DetectorError, Detectors};

/// What a running deployment does under its principal's ACLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The deployment (or replay).
    pub deployment: String,
    /// `User:NAME`; `None` for deployments made before ACLs.
    pub principal: Option<String>,
    /// Topics it reads.
    pub reads: Vec<String>,
    /// Topics it writes: alerts, and dead letters under `dead-letter`.
    pub writes: Vec<String>,
}

impl Detectors {
    /// What every running deployment reads and writes, and as whom.
    pub fn grants(&self) -> Vec<Grant> {
        let snapshot = self.snapshot.borrow().clone();
        snapshot
            .values()
            .filter(|v| v.state == DeploymentState::Running)
            .filter_map(|v| v.spec())
            .map(|spec| {
                let mut writes = vec![spec.output.clone()];
                if spec.on_failure == FailurePolicy::DeadLetter {
                    writes.push(spec.dead_letter_topic());
                }
                Grant {
                    deployment: spec.name.clone(),
                    principal: spec.principal.clone(),
                    reads: spec.inputs.clone(),
                    writes,
                }
            })
            .collect()
    }

    /// Stops a running deployment as failed, with `why` as its status
    /// error (as the `fail` policy does): runners commit and stop, the
    /// state is persisted, `resume` restarts it. A deployment that is not
    /// running is left as it is.
    pub async fn revoke(&self, name: &str, why: String) -> Result<DeploymentStatus, DetectorError> {
        let name = name.to_string();
        self.call("revoke", |reply| Command::Revoke { name, why, reply })
            .await
    }
}

impl Supervisor {
    /// [`Detectors::revoke`] in the supervisor.
    pub(crate) async fn revoke(
        &mut self,
        name: &str,
        why: String,
    ) -> Result<DeploymentStatus, DetectorError> {
        let status = self.status_of(name)?;
        if status.state != DeploymentState::Running {
            return Ok(status);
        }
        tracing::warn!(deployment = %name, reason = %why, "stopping a deployment whose principal lost an ACL");
        self.failed(name, why).await;
        self.status_of(name)
    }
}
