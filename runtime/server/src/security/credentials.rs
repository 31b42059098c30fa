//! Salted SCRAM credentials, kept in the [`SecurityStore`]
//! (`kvkeys::scram_credential`) and mirrored in memory for logins; in a
//! cluster, other brokers' changes arrive through [`CredentialStore::resync`]
//! and [`CredentialStore::changed`] (`cluster::security`).
//!
//! Only [`Credential`]s are stored: salt, iterations, StoredKey and
//! ServerKey; never a password or a salted password.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use vigil_auth::{Credential, Mechanism};
use vigil_storage::kvkeys;

use super::store::{SecurityStore, StoreError, Synced};
use crate::completion::to_completion;

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
    /// The store refused the write (whether a retry helps is the store
    /// error's to say).
    #[error("cannot store the SCRAM credential of user {user:?}: {source}")]
    Storage {
        /// The user.
        user: String,
        /// The store's error.
        source: StoreError,
    },
}

/// A credential with its user (the user is part of the store key, not of
/// the stored value).
#[derive(Debug, Clone, PartialEq)]
pub struct UserCredential {
    /// The user.
    pub user: String,
    /// The credential.
    pub credential: Credential,
}

struct State {
    synced: Synced<UserCredential>,
    /// What is in effect, by user and mechanism.
    map: BTreeMap<(String, Mechanism), Credential>,
}

impl State {
    fn publish(&mut self) {
        self.map = self
            .synced
            .effective()
            .into_values()
            .map(|c| ((c.user.clone(), c.credential.mechanism), c.credential))
            .collect();
    }
}

/// Every user's credentials, by user and mechanism.
pub struct CredentialStore {
    store: Arc<dyn SecurityStore>,
    state: Arc<RwLock<State>>,
}

/// The (user, credential) of a store entry. Entries that do not parse are
/// skipped with a warning (a newer format, or damage): the user then
/// cannot log in with that mechanism until it is set again.
pub fn parse(key: &str, value: &str) -> Option<UserCredential> {
    let parsed = kvkeys::parse_scram_credential(key).and_then(|(user, mech)| {
        let mechanism = Mechanism::from_name(&mech)?;
        let cred: Credential = serde_json::from_str(value).ok()?;
        (cred.mechanism == mechanism).then_some(UserCredential {
            user,
            credential: cred,
        })
    });
    if parsed.is_none() {
        tracing::warn!(%key, "skipping a SCRAM credential that does not parse");
    }
    parsed
}

/// Every credential among store entries, by key.
pub fn credentials_in(entries: Vec<(String, String)>) -> BTreeMap<String, UserCredential> {
    entries
        .into_iter()
        .filter_map(|(key, value)| parse(&key, &value).map(|c| (key, c)))
        .collect()
}

fn encode(user: &str, c: &Credential) -> Result<String, CredentialError> {
    serde_json::to_string(c).map_err(|e| CredentialError::Invalid {
        user: user.to_string(),
        source: vigil_auth::ScramError::Malformed(e.to_string()),
    })
}

impl CredentialStore {
    /// The credentials in `store` now.
    pub async fn load(store: Arc<dyn SecurityStore>) -> Result<CredentialStore, StoreError> {
        let view = credentials_in(store.list(kvkeys::scram_credential_prefix()).await?);
        let mut state = State {
            synced: Synced::new(view),
            map: BTreeMap::new(),
        };
        state.publish();
        Ok(CredentialStore {
            store,
            state: Arc::new(RwLock::new(state)),
        })
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: Mechanism) -> Option<Credential> {
        self.state
            .read()
            .map
            .get(&(user.to_string(), mechanism))
            .cloned()
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
        for ((user, mech), cred) in self.state.read().map.iter() {
            if users.is_none_or(|u| u.contains(user)) {
                out.entry(user.clone())
                    .or_default()
                    .push((*mech, cred.iterations));
            }
        }
        out
    }

    /// Sets (or with `None` deletes) credentials, durably, then in memory,
    /// to the end in a task of its own: a write the store took lands
    /// whether or not the caller still waits (a client hanging up drops its
    /// request), and cut off before memory followed it, a deleted
    /// credential would still log in until a restart (docs/design/0021).
    pub async fn apply(
        &self,
        changes: Vec<(String, Mechanism, Option<Credential>)>,
    ) -> Result<(), CredentialError> {
        let mut entries = Vec::with_capacity(changes.len());
        for (user, mech, cred) in &changes {
            let value = cred.as_ref().map(|c| encode(user, c)).transpose()?;
            entries.push((kvkeys::scram_credential(user, mech.name()), value));
        }
        let first_user = changes.first().map(|c| c.0.clone()).unwrap_or_default();
        let (store, state) = (self.store.clone(), self.state.clone());
        to_completion(async move {
            store
                .put(entries)
                .await
                .map_err(|source| CredentialError::Storage {
                    user: first_user,
                    source,
                })?;
            let now = Instant::now();
            let mut s = state.write();
            for (user, mech, cred) in changes {
                let key = kvkeys::scram_credential(&user, mech.name());
                s.synced.local(
                    key,
                    cred.map(|credential| UserCredential { user, credential }),
                    now,
                );
            }
            s.publish();
            Ok(())
        })
        .await
    }

    /// Sets `user`'s credential unless the store has one for its
    /// mechanism (set meanwhile by another broker, or changed since a
    /// bootstrap); `false` if it had.
    pub async fn create(&self, user: &str, cred: Credential) -> Result<bool, CredentialError> {
        let key = kvkeys::scram_credential(user, cred.mechanism.name());
        let created = self
            .store
            .put_if_absent(key.clone(), encode(user, &cred)?)
            .await
            .map_err(|source| CredentialError::Storage {
                user: user.to_string(),
                source,
            })?;
        if created {
            let mut s = self.state.write();
            let entry = UserCredential {
                user: user.to_string(),
                credential: cred,
            };
            s.synced.local(key, Some(entry), Instant::now());
            s.publish();
        }
        Ok(created)
    }

    /// Replaces the shared view with a newer one (every credential in the
    /// store), keeping this broker's own changes it does not show yet.
    pub fn resync(&self, view: BTreeMap<String, UserCredential>) {
        let mut s = self.state.write();
        s.synced.replace_view(view, Instant::now());
        s.publish();
    }

    /// One credential was written (`Some`) or deleted in the store, by any
    /// broker.
    pub fn changed(&self, key: String, cred: Option<UserCredential>) {
        let mut s = self.state.write();
        s.synced.view_change(key, cred, Instant::now());
        s.publish();
    }
}
