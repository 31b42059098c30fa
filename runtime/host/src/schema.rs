//! A deployment's value schema: which JSON fields of a record value become
//! typed Arrow columns for the detector.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Most typed columns one schema may declare.
pub(crate) const MAX_FIELDS: usize = 256;

/// The type of one declared JSON field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `"float64"` (or `"double"`): Float64 from a JSON number.
    Float64,
    /// `"int64"` (or `"long"`): Int64 from a JSON integer.
    Int64,
    /// `"string"` (or `"utf8"`): Utf8 from a JSON string.
    String,
    /// `"bool"` (or `"boolean"`): Boolean from a JSON bool.
    Bool,
    /// `"timestamp_ms"`: Timestamp(ms) from a JSON integer of epoch
    /// milliseconds or an RFC 3339 string.
    TimestampMs,
}

impl FieldType {
    /// Parses a type name, accepting the aliases listed on each variant.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "float64" | "double" => FieldType::Float64,
            "int64" | "long" => FieldType::Int64,
            "string" | "utf8" => FieldType::String,
            "bool" | "boolean" => FieldType::Bool,
            "timestamp_ms" => FieldType::TimestampMs,
            _ => return None,
        })
    }

    /// The canonical name (what [`ValueSchema`] serializes).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Float64 => "float64",
            FieldType::Int64 => "int64",
            FieldType::String => "string",
            FieldType::Bool => "bool",
            FieldType::TimestampMs => "timestamp_ms",
        }
    }

    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            FieldType::Float64 => DataType::Float64,
            FieldType::Int64 => DataType::Int64,
            FieldType::String => DataType::Utf8,
            FieldType::Bool => DataType::Boolean,
            FieldType::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

/// Why a value schema was refused. Fix the deployment config; retrying the
/// same JSON fails again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema is not a JSON object.
    #[error("value schema must be a JSON object of field name → type, e.g. {{\"amount\":\"float64\",\"card\":\"string\"}}")]
    NotAnObject,
    /// A field name starts with `_` (reserved for record columns) or is empty.
    #[error("value schema field {0:?}: names must be non-empty and must not start with `_` (reserved for the record columns _partition, _offset, …)")]
    ReservedName(String),
    /// A type is not one of the accepted names.
    #[error("value schema field {field:?}: unknown type {ty}; use one of float64 (double), int64 (long), string (utf8), bool (boolean), timestamp_ms")]
    UnknownType {
        /// The field.
        field: String,
        /// What was given (JSON).
        ty: String,
    },
    /// More than 256 fields.
    #[error("value schema declares {0} fields; at most {MAX_FIELDS} are allowed")]
    TooMany(usize),
}

/// Which JSON fields of each record value become typed columns, in field
/// name order (JSON objects carry no reliable order, so the columns are
/// sorted by name to be deterministic).
///
/// Serializes as the same JSON object it is parsed from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ValueSchema {
    fields: Vec<(String, FieldType)>,
}

impl ValueSchema {
    /// Parses `{"amount":"float64","card":"string",...}`.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, SchemaError> {
        let obj = v.as_object().ok_or(SchemaError::NotAnObject)?;
        if obj.len() > MAX_FIELDS {
            return Err(SchemaError::TooMany(obj.len()));
        }
        let mut fields = Vec::with_capacity(obj.len());
        for (name, ty) in obj {
            if name.is_empty() || name.starts_with('_') {
                return Err(SchemaError::ReservedName(name.clone()));
            }
            let t =
                ty.as_str()
                    .and_then(FieldType::parse)
                    .ok_or_else(|| SchemaError::UnknownType {
                        field: name.clone(),
                        ty: ty.to_string(),
                    })?;
            fields.push((name.clone(), t));
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(ValueSchema { fields })
    }

    /// The declared fields, sorted by name.
    pub fn fields(&self) -> &[(String, FieldType)] {
        &self.fields
    }

    /// Whether no field is declared.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The schema of the typed columns alone (all nullable: a missing field
    /// is null). [`crate::record_schema`] gives the whole batch schema.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.fields
                .iter()
                .map(|(n, t)| Field::new(n, t.data_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// The schema as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields
                .iter()
                .map(|(n, t)| (n.clone(), serde_json::Value::from(t.as_str())))
                .collect(),
        )
    }
}

impl serde::Serialize for ValueSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (n, t) in &self.fields {
            m.serialize_entry(n, t.as_str())?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for ValueSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        ValueSchema::from_json(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_types_and_aliases() {
        let s = ValueSchema::from_json(&json!({
            "amount": "float64", "card": "string", "ok": "bool", "n": "int64", "at": "timestamp_ms",
            "d": "double", "u": "utf8", "b": "boolean", "l": "long"
        }))
        .unwrap();
        let names: Vec<&str> = s.fields().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["amount", "at", "b", "card", "d", "l", "n", "ok", "u"]
        );
        assert_eq!(s.fields()[4].1, FieldType::Float64);
        let schema = s.arrow_schema();
        assert_eq!(
            schema.field_with_name("at").unwrap().data_type(),
            &FieldType::TimestampMs.data_type()
        );
        // Serde round trip through the canonical names.
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""d":"float64""#), "{text}");
        assert_eq!(serde_json::from_str::<ValueSchema>(&text).unwrap(), s);
    }

    #[test]
    fn refuses_reserved_names_and_unknown_types() {
        let e = ValueSchema::from_json(&json!({"_offset": "int64"})).unwrap_err();
        assert_eq!(e, SchemaError::ReservedName("_offset".into()));
        assert!(e.to_string().contains("must not start with `_`"));
        let e = ValueSchema::from_json(&json!({"x": "decimal"})).unwrap_err();
        assert!(e.to_string().contains("unknown type \"decimal\""), "{e}");
        assert!(ValueSchema::from_json(&json!({"x": 5})).is_err());
        assert_eq!(
            ValueSchema::from_json(&json!([1])).unwrap_err(),
            SchemaError::NotAnObject
        );
        assert!(serde_json::from_str::<ValueSchema>(r#"{"_k":"bool"}"#).is_err());
    }
}
