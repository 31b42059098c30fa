//! Salted SCRAM credentials, kept in the log's durable key/value state
//! (`kvkeys::scram_credential`) and mirrored in memory for logins.
//!
//! Only [`Credential`]s are stored: salt, iterations, StoredKey and
//! ServerKey; never a password or a salted password.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use vigil_auth::{Credential, Mechanism};
use vigil_storage::{kvkeys, Log};

/// Why a credential could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The credential could not be made (bad iterations, salt, length);
    /// retrying the same request cannot help.
    #[error("invalid SCRAM credential for user {user:?}: {source}")]
    Invalid {
        /// The user.
        user: String,
        /// What was wrong.
        source: vigil_auth::ScramError,
    },
    /// The log refused the write (whether a retry helps is the storage
    /// error's to say).
    #[error("cannot store the SCRAM credential of user {user:?}: {source}")]
    Storage {
        /// The user.
        user: String,
        /// The log's error.
        source: vigil_storage::StorageError,
    },
}

/// Every user's credentials, by user and mechanism.
pub struct CredentialStore {
    log: Arc<Log>,
    map: RwLock<BTreeMap<(String, Mechanism), Credential>>,
}

impl CredentialStore {
    /// The credentials in the log's state at open. Entries that do not
    /// parse are skipped with a warning (a newer format, or damage): the
    /// user then cannot log in with that mechanism until it is set again.
    pub fn load(log: Arc<Log>) -> CredentialStore {
        let mut map = BTreeMap::new();
        let kv = log.kv_at_open();
        let prefix = kvkeys::scram_credential_prefix();
        for (key, value) in kv.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            let parsed = kvkeys::parse_scram_credential(key).and_then(|(user, mech)| {
                let mechanism = Mechanism::from_name(&mech)?;
                let cred: Credential = serde_json::from_str(value).ok()?;
                (cred.mechanism == mechanism).then_some(((user, mechanism), cred))
            });
            match parsed {
                Some((k, cred)) => {
                    map.insert(k, cred);
                }
                None => tracing::warn!(%key, "skipping a SCRAM credential that does not parse"),
            }
        }
        CredentialStore {
            log,
            map: RwLock::new(map),
        }
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: Mechanism) -> Option<Credential> {
        self.map.read().get(&(user.to_string(), mechanism)).cloned()
    }

    /// Any credential of `user`, strongest mechanism first (SASL PLAIN is
    /// checked against it).
    pub fn any(&self, user: &str) -> Option<Credential> {
        Mechanism::ALL.into_iter().find_map(|m| self.get(user, m))
    }

    /// Users with their mechanisms and iteration counts; all users if
    /// `users` is `None`.
    pub fn describe(&self, users: Option<&[String]>) -> BTreeMap<String, Vec<(Mechanism, u32)>> {
        let mut out: BTreeMap<String, Vec<(Mechanism, u32)>> = BTreeMap::new();
        for ((user, mech), cred) in self.map.read().iter() {
            if users.is_none_or(|u| u.contains(user)) {
                out.entry(user.clone())
                    .or_default()
                    .push((*mech, cred.iterations));
            }
        }
        out
    }

    /// Sets (or with `None` deletes) credentials, durably, then in memory.
    pub async fn apply(
        &self,
        changes: Vec<(String, Mechanism, Option<Credential>)>,
    ) -> Result<(), CredentialError> {
        let mut entries = Vec::with_capacity(changes.len());
        for (user, mech, cred) in &changes {
            let value = match cred {
                Some(c) => {
                    Some(
                        serde_json::to_string(c).map_err(|e| CredentialError::Invalid {
                            user: user.clone(),
                            source: vigil_auth::ScramError::Malformed(e.to_string()),
                        })?,
                    )
                }
                None => None,
            };
            entries.push((kvkeys::scram_credential(user, mech.name()), value));
        }
        let first_user = changes.first().map(|c| c.0.clone()).unwrap_or_default();
        self.log
            .kv_put(entries)
            .await
            .map_err(|source| CredentialError::Storage {
                user: first_user,
                source,
            })?;
        let mut map = self.map.write();
        for (user, mech, cred) in changes {
            match cred {
                Some(c) => map.insert((user, mech), c),
                None => map.remove(&(user, mech)),
            };
        }
        Ok(())
    }
}
