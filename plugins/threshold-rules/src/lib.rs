//! vigil detector plugin **threshold-rules**: flags records whose fields meet
//! fixed conditions from the config — numeric comparisons (`>` `>=` `<` `<=`),
//! equality (`==` `!=`, on numbers, strings or bools), set membership (`in`,
//! `not_in`, on numbers or strings) and substring (`contains`). Config fields:
//! `rules` (required, non-empty; each rule has `field`, `op`, `value` or
//! `values`, optional `name` (default `rule N`) and `severity` (default
//! `medium`)), `match` (`"any"`, the default: alert when at least one rule
//! matches; `"all"`: when every rule matches) and `key` (`"record_key"`, the
//! default, or a string column whose value keys the alert). One alert per
//! matching record, with the highest severity among the matched rules, score
//! = number of rules matched, and one field per matched rule's column. Fields
//! must be declared in the deployment's value schema; a missing one fails the
//! batch with an error naming it. Stateless, so snapshots are empty.
//!
//! ```json
//! {"rules": [
//!    {"name": "big-amount", "field": "amount", "op": ">", "value": 5000, "severity": "high"},
//!    {"name": "bad-country", "field": "country", "op": "in", "values": ["XX", "YY"]}
//!  ],
//!  "match": "any"}
//! ```

pub mod rules;

use serde::Deserialize;
use vigil_sdk::arrow_array::{Array, StringArray};
use vigil_sdk::{bail, detector, Alert, Alerts, Batch, Detector, Result};

use rules::{FieldValue, Rule, RuleConfig};

/// Config JSON of the detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rules, evaluated in order.
    pub rules: Vec<RuleConfig>,
    /// `"any"` (default) or `"all"`.
    #[serde(default = "default_match", rename = "match")]
    pub match_mode: String,
    /// `"record_key"` (default) or a string column keying the alert.
    #[serde(default = "default_key")]
    pub key: String,
}

fn default_match() -> String {
    "any".to_string()
}

fn default_key() -> String {
    "record_key".to_string()
}

/// The detector: compiled rules.
#[derive(Debug)]
pub struct ThresholdRules {
    rules: Vec<Rule>,
    all: bool,
    key_column: Option<String>,
}

#[detector]
impl Detector for ThresholdRules {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        if config.rules.is_empty() {
            bail!("`rules` must contain at least one rule");
        }
        let all = match config.match_mode.as_str() {
            "any" => false,
            "all" => true,
            other => bail!("`match` must be \"any\" or \"all\", got {other:?}"),
        };
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rc)| Rule::compile(i + 1, rc))
            .collect::<Result<Vec<_>>>()?;
        let key_column = match config.key.as_str() {
            "record_key" => None,
            "" => bail!("`key` must be \"record_key\" or a string column name"),
            col => Some(col.to_string()),
        };
        Ok(ThresholdRules {
            rules,
            all,
            key_column,
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Resolve every column once per batch, not per row.
        let cols = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.column(i + 1, batch))
            .collect::<Result<Vec<_>>>()?;
        let key_col: Option<&StringArray> = match &self.key_column {
            Some(c) => Some(batch.str(c).map_err(|e| e.context("`key`"))?),
            None => None,
        };
        let offsets = batch.offsets();
        let mut hits: Vec<(&Rule, FieldValue)> = Vec::with_capacity(self.rules.len());
        for (row, &offset) in offsets.iter().enumerate() {
            hits.clear();
            for (rule, col) in self.rules.iter().zip(&cols) {
                if let Some(v) = rule.eval(col, row) {
                    hits.push((rule, v));
                } else if self.all {
                    break;
                }
            }
            let fire = if self.all {
                hits.len() == self.rules.len()
            } else {
                !hits.is_empty()
            };
            if !fire {
                continue;
            }
            let severity = hits
                .iter()
                .map(|(r, _)| r.severity)
                .max()
                .unwrap_or_default();
            let message = hits
                .iter()
                .map(|(r, v)| format!("{}: {} is {v} ({})", r.name, r.field, r.describe()))
                .collect::<Vec<_>>()
                .join("; ");
            let names: Vec<&str> = hits.iter().map(|(r, _)| r.name.as_str()).collect();
            let mut alert = Alert::new(offset)
                .severity(severity)
                .score(hits.len() as f64)
                .message(message)
                .field("rules", &names);
            for (r, v) in &hits {
                alert = alert.field(&r.field, v);
            }
            let key = match key_col {
                Some(k) if k.is_valid(row) => Some(k.value(row).as_bytes()),
                Some(_) => None,
                None => batch.key(row),
            };
            if let Some(k) = key {
                alert = alert.key(k);
            }
            alerts.push(alert);
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        // Stateless: an empty snapshot lets the host move the detector
        // without a re-warm.
        Some(Ok(Vec::new()))
    }

    fn restore(&mut self, state: &[u8]) -> Option<Result<()>> {
        if state.is_empty() {
            Some(Ok(()))
        } else {
            Some(Err(vigil_sdk::Error::msg(format!(
                "threshold-rules keeps no state, but got a {}-byte snapshot",
                state.len()
            ))))
        }
    }
}

#[cfg(test)]
mod tests;
