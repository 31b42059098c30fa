use serde_json::{json, Value};
use vigil_sdk::testing::{new_detector, run, snapshot_round_trip, FieldType, Rows};
use vigil_sdk::{Alert, Batch, Severity};

use crate::ThresholdRules;

fn batch() -> Batch {
    Rows::new(0, 10)
        .schema(&[
            ("amount", FieldType::F64),
            ("count", FieldType::I64),
            ("country", FieldType::Str),
            ("flagged", FieldType::Bool),
            ("card", FieldType::Str),
        ])
        .keyed_row(
            1,
            "c1",
            json!({"amount": 100.0, "count": 1, "country": "DE", "flagged": false, "card": "k1"}),
        )
        .keyed_row(
            2,
            "c2",
            json!({"amount": 7200.5, "count": 5, "country": "XX", "flagged": true, "card": "k2"}),
        )
        .keyed_row(
            3,
            "c3",
            json!({"amount": 5000.0, "count": 3, "country": "FR", "card": "k3"}),
        )
        .keyed_row(4, "c4", json!({"count": 9, "country": "YY-shop"}))
        .build()
}

fn offsets(config: Value) -> Vec<i64> {
    run::<ThresholdRules>(config, &[batch()])
        .unwrap()
        .iter()
        .map(Alert::source_offset)
        .collect()
}

fn one(field: &str, op: &str, operand: Value) -> Value {
    let mut rule = json!({"field": field, "op": op});
    let slot = if op == "in" || op == "not_in" {
        "values"
    } else {
        "value"
    };
    rule[slot] = operand;
    json!({"rules": [rule]})
}

#[test]
fn each_numeric_op() {
    assert_eq!(offsets(one("amount", ">", json!(5000))), vec![11]);
    assert_eq!(offsets(one("amount", ">=", json!(5000))), vec![11, 12]);
    assert_eq!(offsets(one("amount", "<", json!(5000))), vec![10]);
    assert_eq!(offsets(one("amount", "<=", json!(5000))), vec![10, 12]);
    assert_eq!(offsets(one("amount", "==", json!(5000))), vec![12]);
    // Row 13 has no amount: a null never matches, not even `!=`.
    assert_eq!(offsets(one("amount", "!=", json!(5000))), vec![10, 11]);
    // Integer columns are compared as numbers too.
    assert_eq!(offsets(one("count", "in", json!([1, 9]))), vec![10, 13]);
    assert_eq!(offsets(one("count", "not_in", json!([1, 9]))), vec![11, 12]);
}

#[test]
fn each_string_and_bool_op() {
    assert_eq!(offsets(one("country", "==", json!("FR"))), vec![12]);
    assert_eq!(offsets(one("country", "!=", json!("FR"))), vec![10, 11, 13]);
    assert_eq!(offsets(one("country", "in", json!(["XX", "YY"]))), vec![11]);
    assert_eq!(
        offsets(one("country", "not_in", json!(["XX", "DE"]))),
        vec![12, 13]
    );
    assert_eq!(offsets(one("country", "contains", json!("YY"))), vec![13]);
    assert_eq!(offsets(one("flagged", "==", json!(true))), vec![11]);
    assert_eq!(offsets(one("flagged", "!=", json!(true))), vec![10]);
}

#[test]
fn any_vs_all_and_alert_contents() {
    let rules = json!([
        {"name": "big-amount", "field": "amount", "op": ">", "value": 5000, "severity": "high"},
        {"name": "bad-country", "field": "country", "op": "in", "values": ["XX", "YY"], "severity": "low"},
        {"name": "many", "field": "count", "op": ">=", "value": 3}
    ]);
    let any = run::<ThresholdRules>(json!({"rules": rules, "match": "any"}), &[batch()]).unwrap();
    let got: Vec<(i64, f64)> = any
        .iter()
        .map(|a| (a.source_offset(), a.get_score()))
        .collect();
    assert_eq!(got, vec![(11, 3.0), (12, 1.0), (13, 1.0)]);
    let a = &any[0];
    assert_eq!(a.get_severity(), Severity::High);
    assert_eq!(a.get_key(), Some(&b"c2"[..]));
    assert_eq!(
        a.get_field("rules"),
        Some(r#"["big-amount","bad-country","many"]"#)
    );
    assert_eq!(a.get_field("amount"), Some("7200.5"));
    assert_eq!(a.get_field("country"), Some("\"XX\""));
    let msg = a.get_message().unwrap();
    assert!(
        msg.starts_with("big-amount: amount is 7200.5 (amount > 5000)"),
        "{msg}"
    );
    assert_eq!(any[1].get_severity(), Severity::Medium);

    let all = run::<ThresholdRules>(json!({"rules": rules, "match": "all"}), &[batch()]).unwrap();
    assert_eq!(
        all.iter().map(Alert::source_offset).collect::<Vec<_>>(),
        vec![11]
    );
}

#[test]
fn key_column_keys_alerts() {
    let cfg = json!({"rules": [{"field": "amount", "op": ">", "value": 0}], "key": "card"});
    let alerts = run::<ThresholdRules>(cfg, &[batch()]).unwrap();
    let keys: Vec<Option<&[u8]>> = alerts.iter().map(Alert::get_key).collect();
    assert_eq!(
        keys,
        vec![Some(&b"k1"[..]), Some(&b"k2"[..]), Some(&b"k3"[..])]
    );
}

fn config_error(cfg: Value) -> String {
    new_detector::<ThresholdRules>(cfg).unwrap_err().to_string()
}

#[test]
fn config_errors_name_rule_and_field() {
    let e = config_error(json!({"rules": [
        {"field": "amount", "op": ">", "value": 1},
        {"name": "bad-country", "field": "country", "op": "in"}
    ]}));
    assert_eq!(e, "rule 2 (`bad-country`): op `in` needs `values`");
    let e = config_error(json!({"rules": [{"field": "amount", "op": ">", "value": "big"}]}));
    assert_eq!(
        e,
        "rule 1 (`rule 1`): op `>` needs a numeric `value`, got \"big\""
    );
    let e = config_error(json!({"rules": [{"field": "a", "op": "~", "value": 1}]}));
    assert!(e.starts_with("rule 1 (`rule 1`): unknown op `~`"), "{e}");
    let e = config_error(json!({"rules": [{"field": "a", "op": "in", "values": [1, "x"]}]}));
    assert!(e.contains("all numbers or all strings"), "{e}");
    let e = config_error(
        json!({"rules": [{"field": "a", "op": "==", "value": 1, "severity": "urgent"}]}),
    );
    assert!(e.contains("unknown severity `urgent`"), "{e}");
    let e = config_error(json!({"rules": [{"field": "a", "op": "contains", "value": 3}]}));
    assert!(e.contains("needs a string `value`"), "{e}");
    assert!(config_error(json!({"rules": []})).contains("at least one rule"));
    let e =
        config_error(json!({"rules": [{"field": "a", "op": "==", "value": 1}], "match": "most"}));
    assert!(e.contains("`match`"), "{e}");
    let e = config_error(json!({"rules": [{"field": "a", "op": "==", "value": 1, "vaule": 2}]}));
    assert!(e.contains("unknown field `vaule`"), "{e}");
}

#[test]
fn unknown_field_at_runtime_names_it() {
    let cfg = json!({"rules": [{"name": "r", "field": "amount", "op": ">", "value": 1},
                               {"name": "ghost", "field": "merchant", "op": "==", "value": "x"}]});
    let e = run::<ThresholdRules>(cfg, &[batch()])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("rule 2 (`ghost`): batch has no column `merchant`"),
        "{e}"
    );
    assert!(e.contains("value_schema"), "{e}");
    let e = run::<ThresholdRules>(one("country", ">", json!(1)), &[batch()]).unwrap_err();
    assert!(
        e.to_string().contains("column `country` has type Utf8"),
        "{e}"
    );
}

#[test]
fn snapshot_is_empty_and_restores() {
    let cfg = one("amount", ">", json!(5000));
    let d = new_detector::<ThresholdRules>(cfg.clone()).unwrap();
    let mut fresh = snapshot_round_trip::<ThresholdRules>(cfg, &d).unwrap();
    let alerts = vigil_sdk::testing::process_all(&mut fresh, &[batch()]).unwrap();
    assert_eq!(alerts.len(), 1);
    use vigil_sdk::Detector;
    assert!(fresh.restore(b"x").unwrap().is_err());
}
