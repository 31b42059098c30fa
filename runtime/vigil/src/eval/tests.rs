use std::path::Path;

use vigil_nab::{Dataset, Profile, SeriesFile};

use super::report::*;
use super::{check_corpus, json_arg, topic_part, uploaded_labels};

const TOPIC: &str = "eval.t.1";

fn profile(name: &str, fp: f64, fn_: f64) -> Profile {
    Profile {
        name: name.into(),
        tp: 1.0,
        fp,
        tn: 1.0,
        fn_,
    }
}

fn profiles() -> Vec<Profile> {
    vec![
        profile("reward_low_FN_rate", 0.11, 2.0),
        profile("reward_low_FP_rate", 0.22, 1.0),
        profile("standard", 0.11, 1.0),
    ]
}

/// `n` rows one minute apart, with one window over rows `w.0..=w.1`.
fn series(name: &str, n: usize, w: (usize, usize)) -> SeriesFile {
    let timestamps: Vec<i64> = (0..n as i64).map(|i| i * 60_000).collect();
    SeriesFile {
        name: name.into(),
        values: vec![1.0; n],
        windows: vec![(timestamps[w.0], timestamps[w.1])],
        timestamps,
    }
}

fn dataset() -> Dataset {
    Dataset {
        files: vec![
            series("a/one.csv", 400, (300, 339)),
            series("b/two.csv", 200, (150, 169)),
        ],
    }
}

fn at(partition: i32, offset: i64) -> AlertRef {
    AlertRef {
        partition,
        offset,
        score: None,
        alert: true,
    }
}

fn headers<'a>(
    pairs: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> {
    pairs.iter().map(|(k, v)| (*k, Some(v.as_bytes())))
}

#[test]
fn record_values_are_json_with_null_for_non_finite() {
    assert_eq!(record_value(10844.0), br#"{"value":10844.0}"#.to_vec());
    assert_eq!(record_value(-0.5), br#"{"value":-0.5}"#.to_vec());
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(record_value(v), br#"{"value":null}"#.to_vec());
    }
}

#[test]
fn chunks_cover_every_row_once_in_order() {
    assert!(chunks(0, 10).is_empty());
    assert_eq!(chunks(10, 5), vec![0..5, 5..10]);
    assert_eq!(chunks(11, 5), vec![0..5, 5..10, 10..11]);
    assert_eq!(chunks(3, 100), vec![0..3]);
    // A zero batch size must not loop forever.
    assert_eq!(chunks(2, 0), vec![0..1, 1..2]);
}

#[test]
fn alert_headers_give_partition_and_offset() {
    let h = [
        ("vigil.deployment", "replay-x"),
        (H_SOURCE_TOPIC, TOPIC),
        (H_SOURCE_PARTITION, "3"),
        (H_SOURCE_OFFSET, "1234"),
    ];
    assert_eq!(alert_ref(headers(&h), TOPIC), Ok(at(3, 1234)));
    // The topic header is optional; partition and offset are not.
    let h = [(H_SOURCE_PARTITION, "0"), (H_SOURCE_OFFSET, "7")];
    assert_eq!(alert_ref(headers(&h), TOPIC), Ok(at(0, 7)));
    let err = alert_ref(headers(&[(H_SOURCE_PARTITION, "0")]), TOPIC).unwrap_err();
    assert!(err.contains(H_SOURCE_OFFSET), "{err}");
    let err = alert_ref(headers(&[(H_SOURCE_OFFSET, "0")]), TOPIC).unwrap_err();
    assert!(err.contains(H_SOURCE_PARTITION), "{err}");
    let bad = [(H_SOURCE_PARTITION, "0"), (H_SOURCE_OFFSET, "x1")];
    assert!(alert_ref(headers(&bad), TOPIC)
        .unwrap_err()
        .contains("non-numeric"));
    let big = [(H_SOURCE_PARTITION, "99999999999"), (H_SOURCE_OFFSET, "1")];
    assert!(alert_ref(headers(&big), TOPIC)
        .unwrap_err()
        .contains("out of range"));
    let other = [
        (H_SOURCE_TOPIC, "payments"),
        (H_SOURCE_PARTITION, "0"),
        (H_SOURCE_OFFSET, "1"),
    ];
    assert!(alert_ref(headers(&other), TOPIC)
        .unwrap_err()
        .contains("payments"));
    // A header without a value counts as missing.
    let none = [
        (H_SOURCE_PARTITION, None),
        (H_SOURCE_OFFSET, Some(&b"1"[..])),
    ];
    assert!(alert_ref(none, TOPIC).is_err());
}

#[test]
fn alerts_flag_their_rows() {
    let d = detection_flags(&[5, 3], &[at(0, 0), at(0, 4), at(1, 2)]);
    assert_eq!(
        d.flags,
        vec![
            vec![true, false, false, false, true],
            vec![false, false, true]
        ]
    );
    assert_eq!((d.alerts, d.duplicates, d.out_of_range), (3, 0, 0));
    let none = detection_flags(&[2, 0], &[]);
    assert_eq!(none.flags, vec![vec![false, false], vec![]]);
}

#[test]
fn duplicate_alerts_flag_once_and_are_counted() {
    let d = detection_flags(&[4], &[at(0, 1), at(0, 1), at(0, 2), at(0, 1)]);
    assert_eq!(d.flags, vec![vec![false, true, true, false]]);
    assert_eq!((d.alerts, d.duplicates, d.out_of_range), (4, 2, 0));
}

#[test]
fn alerts_outside_the_dataset_are_counted_and_ignored() {
    let stray = [
        at(0, -1),
        at(0, 4),
        at(0, i64::MAX),
        at(1, 0),
        at(-1, 0),
        at(i32::MAX, 0),
    ];
    let mut alerts = stray.to_vec();
    alerts.push(at(0, 3));
    let d = detection_flags(&[4], &alerts);
    assert_eq!(d.flags, vec![vec![false, false, false, true]]);
    assert_eq!(
        (d.alerts, d.duplicates, d.out_of_range),
        (7, 0, stray.len())
    );
}

#[test]
fn report_scores_the_perfect_and_the_null_detector() {
    let ds = dataset();
    let lens: Vec<usize> = ds.files.iter().map(SeriesFile::len).collect();
    let null = build_report(
        &ds,
        &profiles(),
        &detection_flags(&lens, &[]),
        "standard",
        false,
        RunInfo::default(),
    )
    .unwrap();
    for s in null.scores.values() {
        assert!(s.normalized.abs() < 1e-9, "{s:?}");
        assert_eq!(s.windows, 2);
    }
    let perfect = detection_flags(&lens, &[at(0, 300), at(1, 150)]);
    let r = build_report(
        &ds,
        &profiles(),
        &perfect,
        "standard",
        false,
        RunInfo::default(),
    )
    .unwrap();
    assert_eq!(r.scores.len(), 3);
    for s in r.scores.values() {
        assert!((s.normalized - 100.0).abs() < 1e-9, "{s:?}");
    }
    assert_eq!(r.records, 600);
    assert_eq!(r.alerts, 2);
    assert_eq!(r.files.len(), 2);
    let f = &r.files[0];
    assert_eq!(
        (
            f.name.as_str(),
            f.records,
            f.detections,
            f.windows,
            f.windows_hit,
            f.false_positives
        ),
        ("a/one.csv", 400, 1, 1, 1, 0)
    );
    assert!((f.raw - 1.0).abs() < 1e-9, "{}", f.raw);
}

#[test]
fn report_counts_false_positives_under_the_table_profile() {
    let ds = dataset();
    let lens: Vec<usize> = ds.files.iter().map(SeriesFile::len).collect();
    // Row 100 is after the probation (60 rows) and before any window: a
    // false positive at the full fp cost. Row 10 is in the probation: free.
    let d = detection_flags(&lens, &[at(0, 10), at(0, 100), at(0, 300)]);
    let std = build_report(&ds, &profiles(), &d, "standard", false, RunInfo::default()).unwrap();
    let low_fp = build_report(
        &ds,
        &profiles(),
        &d,
        "reward_low_FP_rate",
        false,
        RunInfo::default(),
    )
    .unwrap();
    assert_eq!(std.files[0].false_positives, 1);
    assert_eq!(std.files[0].detections, 3);
    assert!(
        (std.files[0].raw - (1.0 - 0.11)).abs() < 1e-9,
        "{}",
        std.files[0].raw
    );
    assert!(
        (low_fp.files[0].raw - (1.0 - 0.22)).abs() < 1e-9,
        "{}",
        low_fp.files[0].raw
    );
    // The totals do not depend on which profile the table shows.
    assert_eq!(std.scores, low_fp.scores);
    // One of two windows found, one fp: (0.89 - 1 + 2) / 4 under standard.
    let s = &std.scores["standard"];
    assert!((s.normalized - 100.0 * (1.89 / 4.0)).abs() < 1e-9, "{s:?}");
}

#[test]
fn unknown_table_profile_is_an_error_naming_the_known_ones() {
    let ds = dataset();
    let d = detection_flags(&[400, 200], &[]);
    let err = build_report(&ds, &profiles(), &d, "strict", false, RunInfo::default()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("strict") && msg.contains("standard"), "{msg}");
}

#[test]
fn table_lists_every_file_the_totals_and_every_profile() {
    let ds = dataset();
    let d = detection_flags(&[400, 200], &[at(0, 300), at(0, 100), at(1, 2_000)]);
    let run = RunInfo {
        module: "seasonal@0.1.0".into(),
        replay: "eval-1".into(),
        elapsed_ms: 1500,
        records_per_sec: 400.0,
        ..RunInfo::default()
    };
    let r = build_report(&ds, &profiles(), &d, "standard", false, run).unwrap();
    let t = format_table(&r);
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("file") && lines[0].contains("raw (std)"),
        "{t}"
    );
    assert!(
        lines[1].starts_with("a/one.csv") && lines[1].contains("1/1"),
        "{t}"
    );
    assert!(
        lines[2].starts_with("b/two.csv") && lines[2].contains("0/1"),
        "{t}"
    );
    assert!(
        lines[3].starts_with("total") && lines[3].contains("1/2"),
        "{t}"
    );
    // Columns line up: every row is as wide as the header up to the raw column.
    assert_eq!(lines[1].find("1/1"), lines[3].find("1/2"), "{t}");
    for name in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(name)),
            "{name} missing:\n{t}"
        );
    }
    assert!(
        t.contains("seasonal@0.1.0") && t.contains("400 records/s"),
        "{t}"
    );
    assert!(t.contains("1 alerts outside the dataset ignored"), "{t}");
}

#[test]
fn json_report_has_flat_run_info_and_scores_by_profile() {
    let ds = dataset();
    let d = detection_flags(&[400, 200], &[at(0, 300)]);
    let run = RunInfo {
        replay: "eval-1".into(),
        ..RunInfo::default()
    };
    let r = build_report(&ds, &profiles(), &d, "standard", false, run).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["replay"], "eval-1");
    assert_eq!(v["files"][0]["windows_hit"], 1);
    assert_eq!(v["files"][0]["flagged_rows"], serde_json::json!([300]));
    assert_eq!(v["files"][1]["flagged_rows"], serde_json::json!([]));
    assert!(
        v["scores"]["standard"]["normalized"].as_f64().is_some(),
        "{v}"
    );
}

#[test]
fn a_directory_that_is_not_a_corpus_is_named_with_what_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profiles.json"), "{}").unwrap();
    let msg = format!("{:#}", check_corpus(dir.path()).unwrap_err());
    assert!(msg.contains("not a NAB corpus"), "{msg}");
    assert!(msg.contains("combined_windows.json, data"), "{msg}");
    assert!(!msg.contains("lacks profiles.json"), "{msg}");
    std::fs::write(dir.path().join("combined_windows.json"), "{}").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    check_corpus(dir.path()).unwrap();
}

#[test]
fn json_flags_are_inline_or_from_a_file() {
    assert_eq!(json_arg(None, "--config").unwrap(), None);
    let v = json_arg(Some(r#"{"threshold": 0.7}"#), "--config").unwrap();
    assert_eq!(v, Some(serde_json::json!({"threshold": 0.7})));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.json");
    std::fs::write(&f, r#"{"warmup": 10}"#).unwrap();
    let v = json_arg(Some(&format!("@{}", f.display())), "--config").unwrap();
    assert_eq!(v, Some(serde_json::json!({"warmup": 10})));
    let err = format!("{:#}", json_arg(Some("{nope"), "--config").unwrap_err());
    assert!(err.contains("--config is not valid JSON"), "{err}");
    let err = format!(
        "{:#}",
        json_arg(Some("@/no/such/file"), "--limits").unwrap_err()
    );
    assert!(err.contains("--limits: cannot read /no/such/file"), "{err}");
}

#[test]
fn topic_names_keep_only_safe_characters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("my nab (v1.1)");
    std::fs::create_dir(&d).unwrap();
    assert_eq!(topic_part(&d), "mynabv11");
    assert_eq!(topic_part(Path::new("/no/such/dir")), "dataset");
}

#[test]
fn a_file_without_windows_shows_a_zero_not_a_negative_zero() {
    let mut quiet = series("c/quiet.csv", 100, (0, 0));
    quiet.windows.clear();
    let ds = Dataset { files: vec![quiet] };
    let r = build_report(
        &ds,
        &profiles(),
        &detection_flags(&[100], &[]),
        "standard",
        false,
        RunInfo::default(),
    )
    .unwrap();
    let t = format_table(&r);
    assert!(!t.contains("-0.000"), "{t}");
    assert!(
        t.lines().nth(1).is_some_and(|l| l.ends_with(" 0.000")),
        "{t}"
    );
}

fn meta(hash: &str, name: Option<&str>, version: Option<&str>) -> vigil_api::ModuleMeta {
    vigil_api::ModuleMeta {
        hash: hash.into(),
        name: name.map(str::to_string),
        version: version.map(str::to_string),
        abi_version: 1,
        sdk_version: "0.1.0".into(),
        size: 1,
        uploaded_at_ms: 0,
    }
}

#[test]
fn module_references_are_checked_against_the_uploaded_ones() {
    let list = [
        meta("6ec72a982882eaf6", Some("seasonal"), Some("0.1.0")),
        meta("0123456789abcdef", Some("zscore"), Some("0.2.0")),
        meta("fedcba9876543210", Some("zscore"), Some("0.1.0")),
        meta("aaaabbbbccccdddd", None, None),
    ];
    for known in [
        "seasonal",
        "seasonal@0.1.0",
        "zscore@0.1.0",
        "6ec72a98",
        "0123456789abcdef",
        "aaaabbbb",
    ] {
        assert_eq!(uploaded_labels(&list, known), None, "{known}");
    }
    // Short prefixes are ambiguous, and wrong versions are wrong; a module
    // without a name has no label to list.
    for unknown in ["6ec7", "seasonal@0.2.0", "rate-spike"] {
        assert_eq!(
            uploaded_labels(&list, unknown),
            Some(vec![
                "seasonal@0.1.0".into(),
                "zscore@0.1.0".into(),
                "zscore@0.2.0".into()
            ]),
            "{unknown}"
        );
    }
    assert_eq!(uploaded_labels(&[], "x"), Some(vec![]));
}

/// The broker's alert document for a score record, as the engine writes it.
fn score_doc(score: f64, alert: bool) -> Vec<u8> {
    serde_json::json!({
        "severity": "info",
        "score": score,
        "fields": {"stream": "score", "alert": alert},
    })
    .to_string()
    .into_bytes()
}

#[test]
fn score_records_are_told_apart_from_alerts() {
    let plain = br#"{"score": 0.9, "fields": {"kind": "deviation"}}"#;
    assert_eq!(at(0, 5).with_value(Some(plain)), Ok(at(0, 5)));
    assert_eq!(at(0, 5).with_value(None), Ok(at(0, 5)));
    let s = at(1, 7).with_value(Some(&score_doc(0.4, false))).unwrap();
    assert_eq!((s.score, s.alert), (Some(0.4), false));
    let s = at(1, 7).with_value(Some(&score_doc(0.8, true))).unwrap();
    assert_eq!((s.score, s.alert), (Some(0.8), true));
    let bad = br#"{"score": null, "fields": {"stream": "score"}}"#;
    let err = at(1, 7).with_value(Some(bad)).unwrap_err();
    assert!(err.contains("without a numeric score"), "{err}");
}

fn scored(partition: i32, offset: i64, score: f64, alert: bool) -> AlertRef {
    at(partition, offset)
        .with_value(Some(&score_doc(score, alert)))
        .unwrap()
}

#[test]
fn sweep_finds_the_threshold_the_deployed_one_misses() {
    let ds = dataset();
    let lens: Vec<usize> = ds.files.iter().map(SeriesFile::len).collect();
    // Both windows score 0.6 at their first row; a false positive scores
    // 0.5 and is the only record the detector itself alerts on.
    let refs = [
        scored(0, 300, 0.6, false),
        scored(1, 150, 0.6, false),
        scored(0, 200, 0.5, true),
        scored(1, 10, 0.1, false),
    ];
    let d = detection_flags(&lens, &refs);
    assert_eq!((d.alerts, d.score_records), (1, 4));
    assert_eq!(d.scores[0][300], 0.6);
    assert!(d.flags[0][200] && !d.flags[0][300]);
    let r = build_report(&ds, &profiles(), &d, "standard", true, RunInfo::default()).unwrap();
    let swept = r.swept.as_ref().unwrap();
    for (name, s) in swept {
        assert_eq!(s.threshold, Some(0.6), "{name}");
        assert!((s.normalized - 100.0).abs() < 1e-9, "{name}: {s:?}");
        assert!(
            r.scores[name].normalized < 0.0,
            "{name}: only a false positive"
        );
    }
    assert_eq!(
        r.categories
            .iter()
            .map(|c| (c.category.as_str(), c.windows, c.false_positives, c.swept))
            .collect::<Vec<_>>(),
        vec![("a", 1, 1, Some(100.0)), ("b", 1, 0, Some(100.0))]
    );
    assert!(r.categories[0].fixed < 0.0 && r.categories[1].fixed == 0.0);
    let table = format_table(&r);
    assert!(
        table.contains("fixed = the detector's own alerts"),
        "{table}"
    );
    assert!(table.contains("swept = best threshold"), "{table}");
    assert!(table.contains("100.00 (0.600)"), "{table}");
    // Without --sweep: no swept column values, and the JSON has no `swept`.
    let r = build_report(&ds, &profiles(), &d, "standard", false, RunInfo::default()).unwrap();
    assert!(r.swept.is_none() && r.categories.iter().all(|c| c.swept.is_none()));
    assert!(serde_json::to_value(&r).unwrap().get("swept").is_none());
}

#[test]
fn sweep_adds_scores_to_the_config() {
    use super::detector_config;
    let c = detector_config(Some(serde_json::json!({"threshold": 0.7})), true).unwrap();
    assert_eq!(c, serde_json::json!({"threshold": 0.7, "scores": true}));
    assert_eq!(detector_config(None, false).unwrap(), serde_json::json!({}));
    let err = detector_config(Some(serde_json::json!([1])), true).unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
}
