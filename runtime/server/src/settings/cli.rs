//! `vigil serve`'s flags and `VIGIL_*` variables, derived from the settings
//! types (feature `cli`, so the server library itself needs no clap).
//!
//! clap is given each section's fields (name, help, env, parser) by
//! `derive(clap::Args)` on the section type and each default from the
//! section's `Default`; a value becomes part of the override layer only when
//! it came from the command line or the environment, so the TOML file still
//! wins over defaults.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde::Serialize;

use super::{
    AdminSettings, GroupSettings, Layer, SecuritySettings, ServerSettings, StorageSettings,
};

/// The settings flags of `vigil serve`: flatten into a clap command, then
/// [`into_layer`](SettingsArgs::into_layer) for [`Settings::load`](super::Settings::load).
#[derive(Debug, Clone, Default)]
pub struct SettingsArgs {
    layer: Layer,
}

impl SettingsArgs {
    /// The values given as flags or variables.
    pub fn into_layer(self) -> Layer {
        self.layer
    }
}

/// The arg id clap derives for a TOML key.
fn arg_id(key: &str) -> String {
    key.replace('-', "_")
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Adds `T`'s flags, each with `T::default()`'s value as its default.
fn augment<T: Args + Default + Serialize>(cmd: Command) -> Command {
    let mut cmd = T::augment_args(cmd);
    // Serializing plain settings data cannot fail; if it ever did, the flags
    // would only lack their documented defaults, and the section's serde
    // defaults still apply when the layers are merged.
    let defaults = toml::Table::try_from(T::default()).unwrap_or_default();
    for (key, value) in defaults {
        cmd = match value {
            // A list flag defaults to its items (none: no default).
            toml::Value::Array(items) => {
                let texts: Vec<String> = items.iter().map(value_text).collect();
                cmd.mut_arg(arg_id(&key), |a| a.required(false).default_values(texts))
            }
            value => {
                let text = value_text(&value);
                cmd.mut_arg(arg_id(&key), |a| a.required(false).default_value(text))
            }
        };
    }
    cmd
}

/// Puts the values of `T`'s flags that were given (not defaulted) into
/// `layer` under `section`.
fn given<T: FromArgMatches + Serialize>(
    m: &ArgMatches,
    section: &str,
    layer: &mut Layer,
) -> Result<(), clap::Error> {
    let values = T::from_arg_matches(m)?;
    let table = toml::Table::try_from(&values).map_err(|e| {
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!("cannot represent the {section} settings: {e}"),
        )
    })?;
    for (key, value) in table {
        if matches!(
            m.value_source(&arg_id(&key)),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            layer.set(section, &key, value).map_err(|e| {
                clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, e.to_string())
            })?;
        }
    }
    Ok(())
}

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut layer = Layer::default();
        given::<ServerSettings>(m, "server", &mut layer)?;
        given::<StorageSettings>(m, "storage", &mut layer)?;
        given::<GroupSettings>(m, "groups", &mut layer)?;
        given::<AdminSettings>(m, "admin", &mut layer)?;
        given::<SecuritySettings>(m, "security", &mut layer)?;
        Ok(SettingsArgs { layer })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SettingsArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = augment::<ServerSettings>(cmd);
        let cmd = augment::<StorageSettings>(cmd);
        let cmd = augment::<GroupSettings>(cmd);
        let cmd = augment::<AdminSettings>(cmd);
        augment::<SecuritySettings>(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
