//! Which series a record belongs to, for detectors that keep one model per
//! partition, per record key or per value of a string column (the `key`
//! config field of the metric detectors).

use arrow_array::{Array, StringArray};

use crate::{Batch, Result};

/// Which series a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// One series per partition (the usual layout for a metric topic).
    None,
    /// One series per record key.
    RecordKey,
    /// One series per value of this string column.
    Column(String),
}

impl KeySpec {
    /// Parses the `key` config value: `"none"`, `"record_key"` or a column name.
    pub fn parse(s: &str) -> Self {
        match s {
            "none" | "" => KeySpec::None,
            "record_key" => KeySpec::RecordKey,
            other => KeySpec::Column(other.to_string()),
        }
    }

    /// The keys of one batch; looks the key column up once, with an error
    /// naming `key` when it is missing or not a string column.
    pub fn keys<'a>(&self, batch: &'a Batch) -> Result<SeriesKeys<'a>> {
        let column = match self {
            KeySpec::Column(c) => Some(batch.str(c).map_err(|e| e.context("`key`"))?),
            _ => None,
        };
        Ok(SeriesKeys {
            by_record_key: *self == KeySpec::RecordKey,
            batch,
            column,
        })
    }
}

/// The series key of each row of one batch (see [`KeySpec::keys`]).
pub struct SeriesKeys<'a> {
    by_record_key: bool,
    batch: &'a Batch,
    column: Option<&'a StringArray>,
}

impl<'a> SeriesKeys<'a> {
    /// The series key of `row`: empty for per-partition series and for a
    /// row without a key (null record key or null column value).
    // Called for every record; wasm builds did not inline it on their own.
    #[inline]
    pub fn get(&self, row: usize) -> &'a [u8] {
        if let Some(col) = self.column {
            return if col.is_valid(row) {
                col.value(row).as_bytes()
            } else {
                b""
            };
        }
        if self.by_record_key {
            return self.batch.key(row).unwrap_or_default();
        }
        b""
    }
}
