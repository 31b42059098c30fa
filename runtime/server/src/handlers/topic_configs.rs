//! The topic configs vigil accepts: every standard Kafka topic config, with
//! Kafka's defaults and value checks, and how each one is treated here.
//! CreateTopics, AlterConfigs, IncrementalAlterConfigs and DescribeConfigs
//! all go through this one table (docs/design/0013-kafka-admin.md lists
//! which configs take effect).

use std::collections::BTreeMap;

/// The value type of a config, as Kafka declares it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Bool,
    /// A 32-bit integer at least the bound.
    Int(i64),
    /// A 64-bit integer at least the bound.
    Long(i64),
    /// A floating-point number in `0.0..=1.0`.
    Ratio,
    /// One of the listed values.
    Choice(&'static [&'static str]),
    /// A comma-separated list of the listed values (none listed: any).
    List(&'static [&'static str]),
    /// Free text (Kafka validates these against a broker version or a
    /// replica list; nothing here reads them).
    Text,
}

impl Kind {
    /// Kafka's ConfigType numbering (DescribeConfigs v3+).
    pub(super) fn code(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Choice(_) | Kind::Text => 2,
            Kind::Int(_) => 3,
            Kind::Long(_) => 5,
            Kind::Ratio => 6,
            Kind::List(_) => 7,
        }
    }
}

/// Whether vigil acts on a config or only stores and reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Effect {
    /// The broker enforces it.
    Applied,
    /// Stored and described, without effect here (replication, local
    /// segment files, flush policy: things the object-store log does not
    /// have). Documented in design note 0013.
    Stored,
}

/// One known topic config.
#[derive(Debug)]
pub(super) struct Spec {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    pub effect: Effect,
}

const fn spec(name: &'static str, default: &'static str, kind: Kind, effect: Effect) -> Spec {
    Spec {
        name,
        default,
        kind,
        effect,
    }
}

const CODECS: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

use Effect::{Applied, Stored};
use Kind::{Bool, Choice, Int, List, Long, Ratio, Text};

/// Every topic config of Kafka 3.x/4.x, sorted by name, with Kafka's
/// defaults (`max.message.bytes` is the broker's `message-max-bytes` when
/// unset; see [`super::configs`]).
pub(super) const TOPIC_CONFIGS: &[Spec] = &[
    spec(
        "cleanup.policy",
        "delete",
        List(&["delete", "compact"]),
        Applied,
    ),
    spec("compression.gzip.level", "-1", Int(-1), Stored),
    spec("compression.lz4.level", "9", Int(1), Stored),
    spec("compression.type", "producer", Choice(CODECS), Stored),
    spec("compression.zstd.level", "3", Int(-131072), Stored),
    spec("delete.retention.ms", "86400000", Long(0), Stored),
    spec("file.delete.delay.ms", "60000", Long(0), Stored),
    spec("flush.messages", "9223372036854775807", Long(1), Stored),
    spec("flush.ms", "9223372036854775807", Long(0), Stored),
    spec("follower.replication.throttled.replicas", "", Text, Stored),
    spec("index.interval.bytes", "4096", Int(0), Stored),
    spec("leader.replication.throttled.replicas", "", Text, Stored),
    spec("local.retention.bytes", "-2", Long(-2), Stored),
    spec("local.retention.ms", "-2", Long(-2), Stored),
    spec(
        "max.compaction.lag.ms",
        "9223372036854775807",
        Long(1),
        Stored,
    ),
    spec("max.message.bytes", "1048588", Int(0), Applied),
    spec("message.downconversion.enable", "true", Bool, Stored),
    spec("message.format.version", "3.0-IV1", Text, Stored),
    spec("message.timestamp.after.max.ms", "3600000", Long(0), Stored),
    spec(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        Long(0),
        Stored,
    ),
    spec(
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        Long(0),
        Stored,
    ),
    spec(
        "message.timestamp.type",
        "CreateTime",
        Choice(&["CreateTime", "LogAppendTime"]),
        Stored,
    ),
    spec("min.cleanable.dirty.ratio", "0.5", Ratio, Stored),
    spec("min.compaction.lag.ms", "0", Long(0), Stored),
    spec("min.insync.replicas", "1", Int(1), Stored),
    spec("preallocate", "false", Bool, Stored),
    spec("remote.log.copy.disable", "false", Bool, Stored),
    spec("remote.log.delete.on.disable", "false", Bool, Stored),
    spec("remote.storage.enable", "false", Bool, Stored),
    spec("retention.bytes", "-1", Long(-1), Applied),
    spec("retention.ms", "604800000", Long(-1), Applied),
    spec("segment.bytes", "1073741824", Int(14), Stored),
    spec("segment.index.bytes", "10485760", Int(4), Stored),
    spec("segment.jitter.ms", "0", Long(0), Stored),
    spec("segment.ms", "604800000", Long(1), Stored),
    spec("unclean.leader.election.enable", "false", Bool, Stored),
];

/// The spec of topic config `name`, if Kafka has such a config.
pub(super) fn lookup(name: &str) -> Option<&'static Spec> {
    TOPIC_CONFIGS.iter().find(|s| s.name == name)
}

/// Checks one topic config: the name must be a Kafka topic config and the
/// value must parse as its type and lie in its range. The error says which
/// and why (not retriable: the request has to change).
pub(super) fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(spec) = lookup(name) else {
        return Err(format!(
            "unknown topic config {name:?}: not a Kafka topic config (see DescribeConfigs for the ones vigil knows)"
        ));
    };
    let bad = |why: String| Err(format!("topic config {name}={value:?} is not valid: {why}"));
    match spec.kind {
        Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => bad("expected true or false".into()),
        },
        Int(min) => match value.trim().parse::<i32>() {
            Ok(v) if i64::from(v) >= min => Ok(()),
            Ok(_) => bad(format!("must be at least {min}")),
            Err(_) => bad("expected a 32-bit integer".into()),
        },
        Long(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(format!("must be at least {min}")),
            Err(_) => bad("expected a 64-bit integer".into()),
        },
        Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => bad("expected a number between 0 and 1".into()),
        },
        Choice(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                bad(format!("expected one of {}", allowed.join(", ")))
            }
        }
        List(allowed) => {
            let items = list_items(value);
            match items.iter().find(|i| !allowed.contains(i)) {
                Some(i) => bad(format!(
                    "{i:?} is not one of {} (a comma-separated list)",
                    allowed.join(", ")
                )),
                None if items.is_empty() => bad("the list must not be empty".into()),
                None => Ok(()),
            }
        }
        Text => Ok(()),
    }
}

/// The items of a list-typed config value.
pub(super) fn list_items(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Validates every config of a CreateTopics or AlterConfigs request and
/// returns them as the topic's new config map (a null value means the
/// default: the config is left out). The first invalid one is the error.
pub(super) fn validate_all<'a>(
    configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (name, value) in configs {
        match value {
            Some(v) => {
                validate(name, v)?;
                out.insert(name.to_string(), v.to_string());
            }
            None => {
                if lookup(name).is_none() {
                    validate(name, "")?;
                }
            }
        }
    }
    Ok(out)
}

/// IncrementalAlterConfigs' operations (Kafka's `AlterConfigOp.OpType`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Op {
    Set,
    Delete,
    Append,
    Subtract,
}

impl Op {
    /// The operation with wire code `code`, if there is one.
    pub(super) fn from_code(code: i8) -> Option<Op> {
        match code {
            0 => Some(Op::Set),
            1 => Some(Op::Delete),
            2 => Some(Op::Append),
            3 => Some(Op::Subtract),
            _ => None,
        }
    }
}

/// Applies one incremental change to `configs` (a topic's current map),
/// validating the result. APPEND and SUBTRACT work on list-typed configs
/// only, as in Kafka, starting from the default when the config is unset.
pub(super) fn apply_op(
    configs: &mut BTreeMap<String, String>,
    name: &str,
    op: Op,
    value: Option<&str>,
) -> Result<(), String> {
    let Some(spec) = lookup(name) else {
        return validate(name, "");
    };
    let value = value.unwrap_or_default();
    match op {
        Op::Delete => {
            configs.remove(name);
            return Ok(());
        }
        Op::Set => {
            validate(name, value)?;
            configs.insert(name.to_string(), value.to_string());
            return Ok(());
        }
        Op::Append | Op::Subtract if !matches!(spec.kind, List(_)) => {
            return Err(format!(
                "topic config {name} is not a list: APPEND and SUBTRACT apply to list configs only"
            ));
        }
        Op::Append | Op::Subtract => {}
    }
    let current = configs
        .get(name)
        .map_or(spec.default, String::as_str)
        .to_string();
    let mut items: Vec<String> = list_items(&current)
        .into_iter()
        .map(str::to_string)
        .collect();
    for v in list_items(value) {
        let present = items.iter().any(|i| i == v);
        match op {
            Op::Append if !present => items.push(v.to_string()),
            Op::Subtract => items.retain(|i| i != v),
            _ => {}
        }
    }
    let joined = items.join(",");
    validate(name, &joined)?;
    configs.insert(name.to_string(), joined);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_defaults_are_valid() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for s in TOPIC_CONFIGS {
            // Empty list-of-replicas defaults are Text and pass; every other
            // default must pass its own check.
            assert_eq!(validate(s.name, s.default), Ok(()), "default of {}", s.name);
        }
    }

    #[test]
    fn standard_configs_are_accepted_and_unknown_names_refused() {
        assert_eq!(validate("delete.retention.ms", "1000"), Ok(()));
        assert_eq!(validate("min.insync.replicas", "2"), Ok(()));
        assert_eq!(validate("cleanup.policy", "compact,delete"), Ok(()));
        assert_eq!(validate("message.timestamp.type", "LogAppendTime"), Ok(()));
        assert_eq!(validate("min.cleanable.dirty.ratio", "0.1"), Ok(()));
        let e = validate("retention.mss", "1").expect_err("typo");
        assert!(e.contains("unknown topic config \"retention.mss\""), "{e}");
    }

    #[test]
    fn values_are_checked_by_type_and_range() {
        for (name, value) in [
            ("retention.ms", "-2"),
            ("retention.ms", "soon"),
            ("max.message.bytes", "4294967296"),
            ("segment.bytes", "13"),
            ("preallocate", "yes"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("cleanup.policy", "compact,shred"),
            ("cleanup.policy", ""),
            ("compression.type", "brotli"),
        ] {
            let e = validate(name, value).expect_err(name);
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn validate_all_keeps_set_values_and_drops_nulls() {
        let got = validate_all([
            ("retention.ms", Some("1000")),
            ("segment.ms", None),
            ("cleanup.policy", Some("compact")),
        ])
        .expect("valid");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("retention.ms".to_string(), "1000".to_string())
            ]
        );
        assert!(validate_all([("nope", None)]).is_err());
        assert!(validate_all([("retention.ms", Some("x"))]).is_err());
    }

    #[test]
    fn incremental_ops_set_delete_append_subtract() {
        let mut c = BTreeMap::new();
        apply_op(&mut c, "retention.ms", Op::Set, Some("5")).expect("set");
        assert_eq!(c.get("retention.ms").map(String::as_str), Some("5"));
        apply_op(&mut c, "retention.ms", Op::Delete, None).expect("delete");
        assert!(!c.contains_key("retention.ms"));
        // APPEND starts from the default list ("delete").
        apply_op(&mut c, "cleanup.policy", Op::Append, Some("compact")).expect("append");
        assert_eq!(
            c.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        apply_op(&mut c, "cleanup.policy", Op::Append, Some("compact")).expect("append again");
        assert_eq!(
            c.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        apply_op(&mut c, "cleanup.policy", Op::Subtract, Some("delete")).expect("subtract");
        assert_eq!(c.get("cleanup.policy").map(String::as_str), Some("compact"));
        // Subtracting the last item leaves an empty list, which is invalid.
        assert!(apply_op(&mut c, "cleanup.policy", Op::Subtract, Some("compact")).is_err());
        assert!(apply_op(&mut c, "retention.ms", Op::Append, Some("1")).is_err());
        assert!(apply_op(&mut c, "retention.ms", Op::Set, Some("x")).is_err());
        assert!(apply_op(&mut c, "no.such", Op::Set, Some("1")).is_err());
        assert_eq!(Op::from_code(4), None);
    }
}
