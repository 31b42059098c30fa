//! `vigil serve` settings, one type per component, and how they are loaded.
//!
//! Each setting is defined once, as a field of [`ServerSettings`],
//! [`StorageSettings`], [`GroupSettings`] or [`AdminSettings`]: its name (the flag is the field
//! name in kebab-case, the variable `VIGIL_` + the name in upper snake case,
//! the TOML key the kebab-case name), its doc (the flag's help), its default
//! (the section's `Default`) and its checks (the section's `validate`).
//! Sources are layered: flags over `VIGIL_*` variables over the TOML file
//! (`--config`) over the defaults.
//!
//! The TOML file may group keys in sections (`[server]`, `[storage]`,
//! `[groups]`, `[admin]`, `[security]`, `[detectors]`) or write them flat at the top level, as files did before
//! sections existed; a flat key goes to the section that has it.
//!
//! Settings are plain data. What the broker runs on (the object store, the
//! wasm host) is passed to it separately as
//! [`Components`](crate::broker::Components), so tests can substitute them.

mod admin;
#[cfg(feature = "cli")]
mod cli;
mod groups;
mod introspect;
mod security;
mod server;
mod storage;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use admin::AdminSettings;
#[cfg(feature = "cli")]
pub use cli::SettingsArgs;
pub use groups::GroupSettings;
pub use security::{ListenerSpec, SecurityProtocol, SecuritySettings};
pub use server::ServerSettings;
pub use storage::{StorageSettings, WalKind};

/// Every setting of the broker process, by component.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Listeners, identity, topic defaults.
    pub server: ServerSettings,
    /// Data dir, object store, WAL, uploads, lease.
    pub storage: StorageSettings,
    /// Consumer-group coordinator.
    pub groups: GroupSettings,
    /// Admin HTTP API limits.
    pub admin: AdminSettings,
    /// TLS, SASL and listeners per security protocol.
    pub security: SecuritySettings,
    /// The detector engine's tuning (TOML `[detectors]` only: these are
    /// rarely changed, so they get no flags).
    pub detectors: vigil_engine::EngineSettings,
}

/// A setting that cannot work, naming the setting. Retrying with the same
/// settings cannot help: the value (or the file) has to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct SettingsError {
    /// Which setting (its flag/TOML name, or `config` for the file itself).
    pub setting: String,
    /// Why.
    pub reason: String,
}

impl SettingsError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        SettingsError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// Section names and the keys each one has.
fn sections() -> [(&'static str, &'static [&'static str]); 6] {
    [
        ("server", introspect::field_names::<ServerSettings>()),
        ("storage", introspect::field_names::<StorageSettings>()),
        ("groups", introspect::field_names::<GroupSettings>()),
        ("admin", introspect::field_names::<AdminSettings>()),
        ("security", introspect::field_names::<SecuritySettings>()),
        (
            "detectors",
            introspect::field_names::<vigil_engine::EngineSettings>(),
        ),
    ]
}

/// Some settings from one source, by section (`section → key → value`),
/// not yet checked. Later layers override earlier ones key by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    sections: toml::Table,
}

impl Layer {
    /// Reads a TOML file (sectioned or flat keys).
    pub fn file(path: &Path) -> Result<Layer, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SettingsError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Layer::from_toml(&text)
            .map_err(|e| SettingsError::new(e.setting, format!("{}: {}", path.display(), e.reason)))
    }

    /// Parses TOML text: `[section]` tables, or flat keys that are moved to
    /// the section that has them. Unknown sections and keys are rejected.
    pub fn from_toml(text: &str) -> Result<Layer, SettingsError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| SettingsError::new("config", e.to_string()))?;
        let mut layer = Layer::default();
        for (key, value) in table {
            match sections().iter().find(|(name, _)| *name == key) {
                Some(_) => {
                    let toml::Value::Table(t) = value else {
                        return Err(SettingsError::new(
                            key,
                            "must be a table ([section] with keys under it)",
                        ));
                    };
                    for (k, v) in t {
                        layer.set(&key, &k, v)?;
                    }
                }
                None => {
                    let section = sections()
                        .iter()
                        .find(|(_, keys)| keys.contains(&key.as_str()))
                        .map(|(name, _)| *name)
                        .ok_or_else(|| {
                            SettingsError::new(key.clone(), "unknown setting or section")
                        })?;
                    layer.set(section, &key, value)?;
                }
            }
        }
        Ok(layer)
    }

    /// Sets `section.key`; a key given twice in one source is an error (a
    /// flat key and the same key in its section, say).
    pub fn set(
        &mut self,
        section: &str,
        key: &str,
        value: toml::Value,
    ) -> Result<(), SettingsError> {
        let t = self
            .sections
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = t else {
            return Err(SettingsError::new(section, "must be a table"));
        };
        if t.insert(key.to_string(), value).is_some() {
            return Err(SettingsError::new(key, "given twice"));
        }
        Ok(())
    }

    /// `self` with `over`'s keys replacing its own.
    pub fn overlaid_by(mut self, over: Layer) -> Layer {
        for (section, values) in over.sections {
            let toml::Value::Table(values) = values else {
                continue;
            };
            let entry = self
                .sections
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.extend(values);
            }
        }
        self
    }

    /// The keys set in `section` (empty if none).
    fn take_section(&mut self, section: &str) -> toml::Table {
        match self.sections.remove(section) {
            Some(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        }
    }
}

/// Deserializes one section, blaming the key at fault: each key is first
/// tried alone (the section's defaults fill the rest), so a bad value or an
/// unknown key is reported under its own name.
fn section<T: DeserializeOwned>(name: &str, table: toml::Table) -> Result<T, SettingsError> {
    for (k, v) in &table {
        let mut alone = toml::Table::new();
        alone.insert(k.clone(), v.clone());
        toml::Value::Table(alone)
            .try_into::<T>()
            .map_err(|e| SettingsError::new(k.clone(), e.message().to_string()))?;
    }
    toml::Value::Table(table)
        .try_into::<T>()
        .map_err(|e| SettingsError::new(name, e.message().to_string()))
}

impl Settings {
    /// The defaults, but listening on free loopback ports (port 0, the
    /// broker advertises the one it gets) with data in `data_dir`: an
    /// embedded broker (demo, eval, tests, benches).
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Settings {
        let mut s = Settings::default();
        s.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s.server.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s.storage.data_dir = data_dir.into();
        s
    }

    /// Loads settings the way `vigil serve` does: `overrides` (flags and
    /// variables) over the TOML file at `file` over the defaults, validated.
    pub fn load(file: Option<&Path>, overrides: Layer) -> Result<Settings, SettingsError> {
        let base = match file {
            Some(p) => Layer::file(p)?,
            None => Layer::default(),
        };
        Settings::from_layer(base.overlaid_by(overrides))
    }

    /// Settings from one (merged) layer, defaults for what it does not set,
    /// validated.
    pub fn from_layer(mut layer: Layer) -> Result<Settings, SettingsError> {
        let settings = Settings {
            server: section("server", layer.take_section("server"))?,
            storage: section("storage", layer.take_section("storage"))?,
            groups: section("groups", layer.take_section("groups"))?,
            admin: section("admin", layer.take_section("admin"))?,
            security: section("security", layer.take_section("security"))?,
            detectors: section("detectors", layer.take_section("detectors"))?,
        };
        if let Some(unknown) = layer.sections.keys().next() {
            return Err(SettingsError::new(unknown.clone(), "unknown section"));
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.server.validate()?;
        self.storage.validate()?;
        if self.server.coordinator.is_some() {
            if self.storage.wal != WalKind::Object {
                return Err(SettingsError::new(
                    "coordinator",
                    "a cluster node needs --wal object: with the local WAL, what a node \
                     acknowledged and did not upload would be lost with its disk when its \
                     partitions move",
                ));
            }
            if !(0..=99_999).contains(&self.server.node_id) {
                return Err(SettingsError::new(
                    "node-id",
                    format!("{} is not between 0 and 99999", self.server.node_id),
                ));
            }
            if !(1_000..=3_600_000).contains(&self.server.session_ttl_ms) {
                return Err(SettingsError::new(
                    "session-ttl-ms",
                    format!(
                        "{} is not between 1000 and 3600000",
                        self.server.session_ttl_ms
                    ),
                ));
            }
        }
        self.groups.validate()?;
        self.admin.validate()?;
        self.security.validate(&self.server)?;
        self.detectors
            .validate()
            .map_err(|e| SettingsError::new(e.setting.replace('_', "-"), e.message))
    }
}
