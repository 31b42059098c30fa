//! Rule config, its validation into compiled tests, and evaluation against
//! a batch's typed columns.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::Deserialize;
use vigil_sdk::arrow_array::{Array, BooleanArray, StringArray};
use vigil_sdk::{bail, Batch, Error, Result, Severity};

/// A literal in a rule: a JSON number, string or bool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Literal {
    /// A JSON number.
    Num(f64),
    /// A JSON string.
    Str(String),
    /// A JSON bool.
    Bool(bool),
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Num(n) => write!(f, "{n}"),
            Literal::Str(s) => write!(f, "{s:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One rule as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name shown in alerts (default `rule N`).
    pub name: Option<String>,
    /// Value column the rule reads.
    pub field: String,
    /// One of `>` `>=` `<` `<=` `==` `!=` `in` `not_in` `contains`.
    pub op: String,
    /// Operand of the comparison ops and `contains`.
    pub value: Option<Literal>,
    /// Operands of `in` / `not_in` (all numbers or all strings).
    pub values: Option<Vec<Literal>>,
    /// `info`, `low`, `medium` (default), `high` or `critical`.
    pub severity: Option<String>,
}

/// Numeric orderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ord {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// What a compiled rule checks on one field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Numeric ordering against a number.
    Order(Ord, f64),
    /// Numeric equality (`negate` for `!=`).
    NumEq(f64, bool),
    /// String equality (`negate` for `!=`).
    StrEq(String, bool),
    /// Bool equality (`negate` for `!=`).
    BoolEq(bool, bool),
    /// Number set membership (`negate` for `not_in`).
    NumIn(Vec<f64>, bool),
    /// String set membership (`negate` for `not_in`).
    StrIn(BTreeSet<String>, bool),
    /// Substring of a string field.
    Contains(String),
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Display name.
    pub name: String,
    /// Column read.
    pub field: String,
    /// Op as written, for messages.
    pub op: String,
    /// The check.
    pub test: Test,
    /// Severity of an alert this rule raises.
    pub severity: Severity,
}

/// Parses a severity name.
pub fn parse_severity(s: &str) -> Option<Severity> {
    Some(match s {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return None,
    })
}

impl Rule {
    /// Validates rule number `n` (1-based); errors read
    /// "rule 2 (`bad-country`): op `in` needs `values`".
    pub fn compile(n: usize, rc: &RuleConfig) -> Result<Rule> {
        let name = rc.name.clone().unwrap_or_else(|| format!("rule {n}"));
        let ctx = format!("rule {n} (`{name}`)");
        let op = rc.op.as_str();
        if rc.field.is_empty() {
            bail!("{ctx}: `field` must name a value column");
        }
        let severity = match &rc.severity {
            None => Severity::Medium,
            Some(s) => parse_severity(s).ok_or_else(|| {
                Error::msg(format!(
                    "{ctx}: unknown severity `{s}` (use info, low, medium, high or critical)"
                ))
            })?,
        };
        let single = || -> Result<&Literal> {
            if rc.values.is_some() {
                bail!("{ctx}: op `{op}` takes one `value`, not `values`");
            }
            rc.value
                .as_ref()
                .ok_or_else(|| Error::msg(format!("{ctx}: op `{op}` needs `value`")))
        };
        let test = match op {
            ">" | ">=" | "<" | "<=" => {
                let ord = match op {
                    ">" => Ord::Gt,
                    ">=" => Ord::Ge,
                    "<" => Ord::Lt,
                    _ => Ord::Le,
                };
                match single()? {
                    Literal::Num(v) if v.is_finite() => Test::Order(ord, *v),
                    other => bail!("{ctx}: op `{op}` needs a numeric `value`, got {other}"),
                }
            }
            "==" | "!=" => {
                let neg = op == "!=";
                match single()? {
                    Literal::Num(v) => Test::NumEq(*v, neg),
                    Literal::Str(s) => Test::StrEq(s.clone(), neg),
                    Literal::Bool(b) => Test::BoolEq(*b, neg),
                }
            }
            "in" | "not_in" => {
                let neg = op == "not_in";
                if rc.value.is_some() {
                    bail!("{ctx}: op `{op}` takes a list in `values`, not `value`");
                }
                let vals = rc
                    .values
                    .as_ref()
                    .ok_or_else(|| Error::msg(format!("{ctx}: op `{op}` needs `values`")))?;
                if vals.is_empty() {
                    bail!("{ctx}: op `{op}` needs at least one entry in `values`");
                }
                if vals.iter().all(|v| matches!(v, Literal::Num(_))) {
                    let nums = vals
                        .iter()
                        .filter_map(|v| match v {
                            Literal::Num(n) => Some(*n),
                            _ => None,
                        })
                        .collect();
                    Test::NumIn(nums, neg)
                } else if vals.iter().all(|v| matches!(v, Literal::Str(_))) {
                    let strs = vals
                        .iter()
                        .filter_map(|v| match v {
                            Literal::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    Test::StrIn(strs, neg)
                } else {
                    bail!("{ctx}: `values` of op `{op}` must be all numbers or all strings");
                }
            }
            "contains" => match single()? {
                Literal::Str(s) => Test::Contains(s.clone()),
                other => bail!("{ctx}: op `contains` needs a string `value`, got {other}"),
            },
            other => bail!(
                "{ctx}: unknown op `{other}` (use >, >=, <, <=, ==, !=, in, not_in or contains)"
            ),
        };
        Ok(Rule {
            name,
            field: rc.field.clone(),
            op: rc.op.clone(),
            test,
            severity,
        })
    }

    /// Whether the test reads the field as a number, string or bool.
    fn kind(&self) -> ColKind {
        match &self.test {
            Test::Order(..) | Test::NumEq(..) | Test::NumIn(..) => ColKind::Num,
            Test::StrEq(..) | Test::StrIn(..) | Test::Contains(_) => ColKind::Str,
            Test::BoolEq(..) => ColKind::Bool,
        }
    }

    /// Resolves this rule's column in `batch`, with the rule named in errors.
    pub fn column<'a>(&self, n: usize, batch: &'a Batch) -> Result<Column<'a>> {
        let col = match self.kind() {
            ColKind::Num => batch.column_f64(&self.field).map(Column::Num),
            ColKind::Str => batch.str(&self.field).map(Column::Str),
            ColKind::Bool => batch.bool(&self.field).map(Column::Bool),
        };
        col.map_err(|e| e.context(format!("rule {n} (`{}`)", self.name)))
    }

    /// Evaluates the rule on `row`; `Some(value as text)` when it matches.
    /// A null (or non-numeric NaN) field never matches.
    pub fn eval(&self, col: &Column<'_>, row: usize) -> Option<FieldValue> {
        match (col, &self.test) {
            (Column::Num(xs), t) => {
                let x = *xs.get(row)?;
                if x.is_nan() {
                    return None;
                }
                let hit = match t {
                    Test::Order(Ord::Gt, v) => x > *v,
                    Test::Order(Ord::Ge, v) => x >= *v,
                    Test::Order(Ord::Lt, v) => x < *v,
                    Test::Order(Ord::Le, v) => x <= *v,
                    Test::NumEq(v, neg) => (x == *v) != *neg,
                    Test::NumIn(set, neg) => set.contains(&x) != *neg,
                    _ => false,
                };
                hit.then_some(FieldValue::Num(x))
            }
            (Column::Str(a), t) => {
                if row >= a.len() || a.is_null(row) {
                    return None;
                }
                let s = a.value(row);
                let hit = match t {
                    Test::StrEq(v, neg) => (s == v) != *neg,
                    Test::StrIn(set, neg) => set.contains(s) != *neg,
                    Test::Contains(v) => s.contains(v.as_str()),
                    _ => false,
                };
                hit.then(|| FieldValue::Str(s.to_string()))
            }
            (Column::Bool(a), Test::BoolEq(v, neg)) => {
                if row >= a.len() || a.is_null(row) {
                    return None;
                }
                let b = a.value(row);
                ((b == *v) != *neg).then_some(FieldValue::Bool(b))
            }
            (Column::Bool(_), _) => None,
        }
    }

    /// The condition as text, e.g. `amount > 5000`.
    pub fn describe(&self) -> String {
        let operand = match &self.test {
            Test::Order(_, v) | Test::NumEq(v, _) => v.to_string(),
            Test::StrEq(s, _) | Test::Contains(s) => format!("{s:?}"),
            Test::BoolEq(b, _) => b.to_string(),
            Test::NumIn(v, _) => format!("{v:?}"),
            Test::StrIn(v, _) => format!("{v:?}"),
        };
        format!("{} {} {operand}", self.field, self.op)
    }
}

enum ColKind {
    Num,
    Str,
    Bool,
}

/// A rule's column in one batch.
pub enum Column<'a> {
    /// Numeric (any integer or float type), nulls as NaN.
    Num(Cow<'a, [f64]>),
    /// Utf8.
    Str(&'a StringArray),
    /// Boolean.
    Bool(&'a BooleanArray),
}

/// The field value that made a rule match, for the alert's fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// A bool.
    Bool(bool),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Num(n) => write!(f, "{n}"),
            FieldValue::Str(s) => write!(f, "{s:?}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
        }
    }
}
