//! Loading a NAB corpus directory: series CSVs, labelled windows, profiles.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::NabError;

/// Name of the labelled-windows file inside a corpus directory.
pub const WINDOWS_FILE: &str = "combined_windows.json";
/// Name of the profiles file inside a corpus directory.
pub const PROFILES_FILE: &str = "profiles.json";
/// Sub-directory holding the series CSVs.
pub const DATA_DIR: &str = "data";

/// A NAB corpus: every series listed in `combined_windows.json`, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The series, sorted by name.
    pub files: Vec<SeriesFile>,
}

/// One series of the corpus with its labelled anomaly windows.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFile {
    /// Path relative to the corpus' `data/` directory, e.g. `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    /// Record timestamps, epoch milliseconds (UTC).
    pub timestamps: Vec<i64>,
    /// Record values, one per timestamp.
    pub values: Vec<f64>,
    /// Labelled anomaly windows as inclusive `(start, end)` epoch milliseconds.
    pub windows: Vec<(i64, i64)>,
}

/// A NAB application profile: the weights of its cost matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Profile name (`standard`, `reward_low_FP_rate`, `reward_low_FN_rate`).
    pub name: String,
    /// Reward of the earliest possible true positive (`tpWeight`).
    pub tp: f64,
    /// Cost of a false positive far from any window (`fpWeight`).
    pub fp: f64,
    /// `tnWeight`; NAB's scorer does not use it, kept for completeness.
    pub tn: f64,
    /// Cost of a window with no detection (`fnWeight`).
    pub fn_: f64,
}

impl Dataset {
    /// Loads the corpus at `dir`: `dir/combined_windows.json` lists the
    /// series (its keys) and their windows; each series is read from
    /// `dir/data/<name>`, a CSV with a header line and `timestamp,value` rows
    /// (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC). Blank lines are skipped.
    pub fn load(dir: &Path) -> Result<Dataset, NabError> {
        let windows_path = dir.join(WINDOWS_FILE);
        let windows: BTreeMap<String, Vec<Vec<String>>> = read_json(&windows_path)?;
        let mut files = Vec::with_capacity(windows.len());
        for (name, wins) in windows {
            let mut file = read_series(&dir.join(DATA_DIR).join(&name), name.clone())?;
            for (index, w) in wins.iter().enumerate() {
                let err = |message: String| NabError::Window {
                    path: windows_path.clone(),
                    file: name.clone(),
                    index,
                    message,
                };
                let [a, b] = w.as_slice() else {
                    return Err(err(format!("expected [start, end], got {w:?}")));
                };
                let start = parse_timestamp(a).ok_or_else(|| err(format!("bad start {a:?}")))?;
                let end = parse_timestamp(b).ok_or_else(|| err(format!("bad end {b:?}")))?;
                if end < start {
                    return Err(err(format!("end {b:?} is before start {a:?}")));
                }
                file.windows.push((start, end));
            }
            files.push(file);
        }
        Ok(Dataset { files })
    }

    /// Total number of records over all series.
    pub fn records(&self) -> usize {
        self.files.iter().map(SeriesFile::len).sum()
    }
}

impl SeriesFile {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// True if the series has no records.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The windows as inclusive `(first, last)` record indices: the first
    /// record at or after the window's start and the last one at or before
    /// its end. Windows containing no record are dropped.
    pub fn window_rows(&self) -> Vec<(usize, usize)> {
        self.windows
            .iter()
            .filter_map(|&(a, b)| {
                let left = self.timestamps.iter().position(|&t| t >= a)?;
                let right = self.timestamps.iter().rposition(|&t| t <= b)?;
                (left <= right).then_some((left, right))
            })
            .collect()
    }
}

impl Profile {
    /// Reads every profile of `dir/profiles.json`
    /// (`{name: {"CostMatrix": {"tpWeight": .., "fpWeight": .., "tnWeight": .., "fnWeight": ..}}}`),
    /// sorted by name.
    pub fn load_all(dir: &Path) -> Result<Vec<Profile>, NabError> {
        let path = dir.join(PROFILES_FILE);
        let raw: BTreeMap<String, serde_json::Value> = read_json(&path)?;
        raw.into_iter()
            .map(|(name, v)| {
                let weight = |key: &str| {
                    v.get("CostMatrix")
                        .and_then(|c| c.get(key))
                        .and_then(serde_json::Value::as_f64)
                        .ok_or_else(|| NabError::Profile {
                            path: path.clone(),
                            profile: name.clone(),
                            message: format!("missing or non-numeric CostMatrix.{key}"),
                        })
                };
                Ok(Profile {
                    tp: weight("tpWeight")?,
                    fp: weight("fpWeight")?,
                    tn: weight("tnWeight")?,
                    fn_: weight("fnWeight")?,
                    name,
                })
            })
            .collect()
    }
}

fn read_text(path: &Path) -> Result<String, NabError> {
    fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, NabError> {
    serde_json::from_str(&read_text(path)?).map_err(|source| NabError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_series(path: &Path, name: String) -> Result<SeriesFile, NabError> {
    let text = read_text(path)?;
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| NabError::Csv {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| err(format!("expected `timestamp,value`, got {line:?}")))?;
        timestamps.push(parse_timestamp(t).ok_or_else(|| err(format!("bad timestamp {t:?}")))?);
        values.push(
            v.trim()
                .parse::<f64>()
                .map_err(|e| err(format!("bad value {v:?}: {e}")))?,
        );
    }
    Ok(SeriesFile {
        name,
        timestamps,
        values,
        windows: Vec::new(),
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses NAB's `YYYY-MM-DD HH:MM:SS[.fff…]` (UTC; `T` also accepted as the
/// separator) into epoch milliseconds; fractional digits past milliseconds
/// are truncated. Returns `None` for anything else.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |a: usize, z: usize| -> Option<i64> {
        let part = s.get(a..z)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut ms = 0;
    if b.len() > 19 {
        let frac = s[19..].strip_prefix('.')?;
        if frac.is_empty() || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        for (k, c) in frac.bytes().take(3).enumerate() {
            ms += i64::from(c - b'0') * [100, 10, 1][k];
        }
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(secs * 1000 + ms)
}
