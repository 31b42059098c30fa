//! Authentication on the Kafka listeners (issue 13,
//! docs/design/0015-security.md): TLS ([`tls`]), SASL sessions per
//! connection ([`session`]), SCRAM credentials ([`credentials`]) and ACLs
//! ([`acls`]) in the [`store`] (the log's state on a single broker, the
//! coordinator's metadata in a cluster) and the bootstrap super user.
//!
//! The SCRAM and PLAIN logic itself is in the `vigil-auth` crate.

pub mod acls;
pub mod authz;
pub mod credentials;
pub mod deployments;
pub mod session;
pub mod store;
#[cfg(test)]
mod tests_cancel;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use vigil_auth::{Credential, LoginLimiter, Mechanism};
use vigil_storage::Log;

pub use acls::AclStore;
pub use authz::{Authorizer, Check};
pub use credentials::{CredentialError, CredentialStore};
pub use session::Session;
pub use store::{KvSecurityStore, SecurityStore, StoreError};
pub use tls::{Tls, TlsError};

use crate::settings::{SecurityProtocol, SecuritySettings, Settings, SettingsError};

/// The variable holding the bootstrap super user password.
pub const BOOTSTRAP_PASSWORD_VAR: &str = "VIGIL_BOOTSTRAP_PASSWORD";

/// Principal of a client that has not authenticated.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Why security could not be set up. Not retriable unless the storage
/// error says so: files or settings have to change.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A TLS file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listeners are misconfigured.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The bootstrap password file cannot be read.
    #[error("cannot read the bootstrap password file {path}: {source}")]
    BootstrapFile {
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The bootstrap credentials could not be made or stored.
    #[error("cannot bootstrap super user {user:?}: {source}")]
    Bootstrap {
        /// The super user.
        user: String,
        /// What failed.
        source: Box<CredentialError>,
    },
    /// The ACLs and credentials could not be loaded (retriable if the
    /// store's error is).
    #[error("cannot load ACLs and SCRAM credentials: {0}")]
    Load(#[from] StoreError),
}

/// One Kafka listener as the broker runs it.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its index in [`Security::listeners`] (0 is `listen`).
    pub index: usize,
    /// What it speaks.
    pub protocol: SecurityProtocol,
    /// `host:port` clients connected to it are told.
    pub advertised: (String, u16),
}

/// The broker's security state.
pub struct Security {
    /// SCRAM credentials.
    pub credentials: CredentialStore,
    /// Kafka ACLs and `--authorizer`.
    pub authz: Authorizer,
    /// The Kafka listeners, `listen` first.
    pub listeners: Vec<Listener>,
    /// TLS acceptors, if a certificate is configured.
    pub tls: Option<Tls>,
    settings: SecuritySettings,
    limiter: Mutex<LoginLimiter>,
}

impl Security {
    /// Loads TLS files and credentials and bootstraps the super users.
    /// Every listener's `bind` must be the address actually bound (port 0
    /// resolved), as it is advertised unless an advertised address is set.
    /// ACLs and credentials live in `log`'s state, or in a cluster's
    /// metadata when `cluster` is given.
    pub async fn open(
        settings: &Settings,
        log: Arc<Log>,
        cluster: Option<&crate::cluster::Cluster>,
    ) -> Result<Security, SecurityError> {
        let s = &settings.security;
        let tls = Tls::load(s)?;
        let mut listeners = Vec::new();
        for (index, spec) in s.kafka_listeners(&settings.server)?.into_iter().enumerate() {
            let server = crate::settings::ServerSettings {
                listen: spec.bind,
                advertised_listener: spec.advertised.clone(),
                ..settings.server.clone()
            };
            listeners.push(Listener {
                index,
                protocol: spec.protocol,
                advertised: server.advertised(spec.bind.port())?,
            });
        }
        let store: Arc<dyn SecurityStore> = match cluster {
            Some(c) => c.security_store(&log).await?,
            None => Arc::new(KvSecurityStore::new(log)),
        };
        let security = Security {
            credentials: CredentialStore::load(store.clone()).await?,
            authz: Authorizer::new(
                s.authorizer,
                s.superuser.clone(),
                AclStore::load(store).await?,
            ),
            listeners,
            tls,
            settings: s.clone(),
            limiter: Mutex::new(LoginLimiter::new(
                s.max_failed_logins,
                s.failed_login_window(),
            )),
        };
        security.bootstrap().await?;
        Ok(security)
    }

    /// Gives each super user without credentials SCRAM credentials for the
    /// bootstrap password, if one is given. Existing credentials are kept:
    /// the password may have been changed since. Each credential is
    /// created only if the store has none (in a cluster, another broker
    /// may have bootstrapped it a moment ago with a different salt, or its
    /// password changed since).
    async fn bootstrap(&self) -> Result<(), SecurityError> {
        let s = &self.settings;
        let missing: Vec<&String> = s
            .superuser
            .iter()
            // A certificate subject (`CN=...`) logs in with its certificate.
            .filter(|u| !u.contains('=') && self.credentials.any(u).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let password = match &s.bootstrap_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| SecurityError::BootstrapFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => std::env::var(BOOTSTRAP_PASSWORD_VAR).ok(),
        };
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            tracing::warn!(users = ?missing, "super users without credentials and no bootstrap password ({BOOTSTRAP_PASSWORD_VAR} or bootstrap-password-file): they cannot log in yet");
            return Ok(());
        };
        for user in missing {
            let mut created = 0;
            for m in Mechanism::ALL {
                let bootstrap_error = |source| SecurityError::Bootstrap {
                    user: user.clone(),
                    source: Box::new(source),
                };
                let cred = Credential::new(m, &password, vigil_auth::scram::MIN_ITERATIONS)
                    .map_err(|e| {
                        bootstrap_error(CredentialError::Invalid {
                            user: user.clone(),
                            source: e,
                        })
                    })?;
                if self
                    .credentials
                    .create(user, cred)
                    .await
                    .map_err(bootstrap_error)?
                {
                    created += 1;
                }
            }
            if created > 0 {
                tracing::info!(%user, mechanisms = created, "bootstrapped the super user's SCRAM credentials");
            } else {
                tracing::info!(%user, "the super user's SCRAM credentials were bootstrapped already (by another broker)");
            }
        }
        Ok(())
    }

    /// Whether `principal` (`User:NAME`) is a super user.
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.authz.is_super_user(principal)
    }

    /// Whether `principal` may read and change SCRAM credentials: super
    /// users, or anyone while no super user is configured (a broker
    /// without security, as before).
    /// With `--authorizer on` the ACLs have decided already (ALTER or
    /// DESCRIBE on the cluster, checked before the request is handled).
    pub fn may_manage_users(&self, principal: &str) -> bool {
        self.authz.enabled() || self.settings.superuser.is_empty() || self.is_super_user(principal)
    }

    /// The settings.
    pub fn settings(&self) -> &SecuritySettings {
        &self.settings
    }

    /// `Err(seconds to wait)` if `peer` has failed too many logins lately.
    pub fn login_allowed(&self, peer: SocketAddr) -> Result<(), u64> {
        self.limiter
            .lock()
            .check(peer.ip(), std::time::Instant::now())
            .map_err(|d| d.as_secs().max(1))
    }

    /// Records and (rate-limited) logs a failed login.
    pub fn login_failed(&self, peer: SocketAddr, user: &str, mechanism: &str, why: &str) {
        let d = self
            .limiter
            .lock()
            .failed(peer.ip(), std::time::Instant::now());
        if d.log {
            tracing::warn!(%peer, %user, %mechanism, reason = %why, failures = d.failures, suppressed = d.suppressed, "failed login");
        }
    }
}
