//! Hand-made cases. With `S(x) = 2 / (1 + e^(5x)) - 1 = -tanh(5x / 2)`, a
//! detection at record `i` of a window `l..=r` (width `w = r - l + 1`) earns
//! `tp * S(-(r - i + 1) / w) / S(-1) = tp * tanh(2.5 (r - i + 1) / w) / tanh(2.5)`.

use std::fs;
use std::path::PathBuf;

use super::*;

const EPS: f64 = 1e-12;

fn standard() -> Profile {
    Profile {
        name: "standard".into(),
        tp: 1.0,
        fp: 0.11,
        tn: 1.0,
        fn_: 1.0,
    }
}

fn low_fn() -> Profile {
    Profile {
        name: "reward_low_FN_rate".into(),
        fn_: 2.0,
        ..standard()
    }
}

fn low_fp() -> Profile {
    Profile {
        name: "reward_low_FP_rate".into(),
        fp: 0.22,
        ..standard()
    }
}

/// `n` records one second apart; windows given as inclusive record indices.
fn series(name: &str, n: usize, windows: &[(usize, usize)]) -> SeriesFile {
    SeriesFile {
        name: name.into(),
        timestamps: (0..n as i64).map(|i| i * 1000).collect(),
        values: vec![0.0; n],
        windows: windows
            .iter()
            .map(|&(l, r)| (l as i64 * 1000, r as i64 * 1000))
            .collect(),
    }
}

fn flags(n: usize, on: &[usize]) -> Vec<bool> {
    (0..n).map(|i| on.contains(&i)).collect()
}

/// 20 records, one window on records 5..=9 (width 5), no probation.
fn one_window(on: &[usize]) -> FileScore {
    let f = series("one.csv", 20, &[(5, 9)]);
    score_file(&f, &flags(20, on), &standard(), 0).unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < EPS, "{a} != {b}");
}

#[test]
fn scaled_sigmoid_values() {
    close(scaled_sigmoid(-1.0), 2.5f64.tanh()); // 0.98661429815143
    close(scaled_sigmoid(0.0), 0.0);
    close(scaled_sigmoid(0.25), -0.625f64.tanh());
    assert_eq!(scaled_sigmoid(3.0), -1.0); // clamped from 3 on
    assert_eq!(scaled_sigmoid(7.0), -1.0);
}

#[test]
fn probation_is_15_percent_capped_at_750() {
    assert_eq!(probation_rows(0), 0);
    assert_eq!(probation_rows(6), 0); // floor(0.9)
    assert_eq!(probation_rows(20), 3); // floor(3.0)
    assert_eq!(probation_rows(40), 6);
    assert_eq!(probation_rows(1000), 150);
    assert_eq!(probation_rows(5000), 750);
    assert_eq!(probation_rows(100_000), 750);
}

#[test]
fn detection_at_window_start_earns_tp() {
    // x = -(9 - 5 + 1) / 5 = -1 -> S(-1) / S(-1) = 1; the window's -fn is
    // replaced: raw = -1 + (1 - (-1)) = 1.
    let s = one_window(&[5]);
    close(s.raw, 1.0);
    assert_eq!((s.windows, s.windows_hit, s.false_positives), (1, 1, 0));
}

#[test]
fn detection_in_window_middle() {
    // Record 7: x = -(9 - 7 + 1) / 5 = -0.6 -> tanh(1.5) / tanh(2.5) = 0.917428680428.
    close(one_window(&[7]).raw, 0.917_428_680_428_407_8);
}

#[test]
fn detection_at_window_end() {
    // Record 9: x = -1 / 5 = -0.2 -> tanh(0.5) / tanh(2.5) = 0.468386843902.
    close(one_window(&[9]).raw, 0.468_386_843_902_278_2);
}

#[test]
fn missed_window_costs_fn() {
    let s = one_window(&[]);
    close(s.raw, -1.0);
    assert_eq!((s.windows, s.windows_hit, s.false_positives), (1, 0, 0));
}

#[test]
fn false_positive_before_any_window_costs_full_fp() {
    // Record 2: no previous window -> S(3) = -1 -> -0.11; the window is missed: -1.
    let s = one_window(&[2]);
    close(s.raw, -1.11);
    assert_eq!((s.windows_hit, s.false_positives), (0, 1));
}

#[test]
fn false_positive_after_window_decays_with_distance() {
    // TP at 5 (+1). FP at 12: x = |12 - 9| / (5 - 1) = 0.75 ->
    // 0.11 * S(0.75) = -0.11 * tanh(1.875) = -0.104944978620 -> raw 0.895055021380.
    let s = one_window(&[5, 12]);
    close(s.raw, 0.895_055_021_380_205_7);
    assert_eq!((s.windows_hit, s.false_positives), (1, 1));
    // FP right after the window (record 10): x = 1/4 -> -0.11 * tanh(0.625) = -0.061005969458.
    close(one_window(&[5, 10]).raw, 0.938_994_030_541_567_9);
    // Record 21 of a longer series: x = 12/4 = 3 -> full -0.11.
    let f = series("long.csv", 30, &[(5, 9)]);
    close(
        score_file(&f, &flags(30, &[5, 21]), &standard(), 0)
            .unwrap()
            .raw,
        1.0 - 0.11,
    );
}

#[test]
fn several_detections_in_one_window_count_once() {
    // Only the best (earliest) one counts.
    let s = one_window(&[5, 6, 7, 8, 9]);
    close(s.raw, 1.0);
    assert_eq!((s.windows_hit, s.false_positives), (1, 0));
    close(one_window(&[9, 7]).raw, 0.917_428_680_428_407_8);
}

#[test]
fn probation_period_is_ignored() {
    // An FP on record 2 inside a 3-record probation costs nothing: raw = -1 (missed window).
    let f = series("one.csv", 20, &[(5, 9)]);
    let s = score_file(&f, &flags(20, &[2]), &standard(), 3).unwrap();
    close(s.raw, -1.0);
    assert_eq!(s.false_positives, 0);
    // A window entirely inside probation is not scored at all.
    let f = series("early.csv", 20, &[(0, 1)]);
    let s = score_file(&f, &flags(20, &[0]), &standard(), 3).unwrap();
    close(s.raw, 0.0);
    assert_eq!((s.windows, s.windows_hit), (0, 0));
}

/// Two 40-record files (probation 6), three windows.
fn corpus() -> Dataset {
    Dataset {
        files: vec![
            series("a.csv", 40, &[(10, 14), (20, 29)]),
            series("b.csv", 40, &[(30, 35)]),
        ],
    }
}

#[test]
fn null_detector_scores_0_and_perfect_scores_100() {
    let d = corpus();
    let null: Vec<Vec<bool>> = d.files.iter().map(|f| vec![false; f.len()]).collect();
    let perfect: Vec<Vec<bool>> = d
        .files
        .iter()
        .map(|f| {
            let starts: Vec<usize> = f.window_rows().iter().map(|w| w.0).collect();
            flags(f.len(), &starts)
        })
        .collect();
    for p in [standard(), low_fn(), low_fp()] {
        let n = score_dataset(&d, &null, &p).unwrap();
        close(n.raw, -3.0 * p.fn_);
        close(n.normalized, 0.0);
        let s = score_dataset(&d, &perfect, &p).unwrap();
        close(s.raw, 3.0 * p.tp);
        close(s.normalized, 100.0);
        assert_eq!(s.windows, 3);
        assert_eq!(s.per_file.len(), 2);
        assert_eq!(
            (s.per_file[0].windows_hit, s.per_file[1].windows_hit),
            (2, 1)
        );
    }
}

#[test]
fn dataset_score_normalizes_sum_of_files() {
    // a.csv: first window hit at its start (+1), second missed (-1); b.csv:
    // FP at record 10, no previous window (-0.11), window missed (-1).
    // raw = -1.11; null = -3, perfect = 3 -> 100 * 1.89 / 6 = 31.5.
    let d = corpus();
    let det = vec![flags(40, &[10]), flags(40, &[10])];
    let r = score_dataset(&d, &det, &standard()).unwrap();
    close(r.raw, -1.11);
    close(r.normalized, 31.5);
    assert_eq!(r.per_file[1].false_positives, 1);
}

#[test]
fn threshold_sweep_picks_best_corpus_threshold() {
    // 20 records (probation 3), window 5..=9. Scores: record 5 -> 0.8,
    // record 15 -> 0.9, the rest 0.1.
    //   thr 0.9: FP at 15, x = 6/4 = 1.5 -> -0.11 tanh(3.75) = -0.109878; miss -1 -> -1.109878
    //   thr 0.8: + TP at window start -> 1 - 0.109878 = 0.890121611300
    //   thr 0.1: every record flagged: also FPs at 3, 4 (-0.11 each) and 10..=19 -> worse
    // Best is 0.8; normalized = 100 * (0.890122 + 1) / 2 = 94.506080565.
    let d = Dataset {
        files: vec![series("one.csv", 20, &[(5, 9)])],
    };
    let mut scores = vec![0.1; 20];
    scores[5] = 0.8;
    scores[15] = 0.9;
    let (thr, r) = best_threshold(&d, &[scores], &standard()).unwrap();
    assert_eq!(thr, Some(0.8));
    close(r.raw, 0.890_121_611_300_123_2);
    close(r.normalized, 94.506_080_565_006_16);
    let f = &r.per_file[0];
    close(f.raw, r.raw);
    assert_eq!((f.windows_hit, f.false_positives), (1, 1));
}

#[test]
fn threshold_sweep_returns_none_when_nothing_beats_null() {
    // No window: any detection only costs, so flagging nothing (raw 0) wins.
    let d = Dataset {
        files: vec![series("quiet.csv", 20, &[])],
    };
    let (thr, r) = best_threshold(&d, &[vec![0.5; 20]], &standard()).unwrap();
    assert_eq!(thr, None);
    close(r.raw, 0.0);
    close(r.normalized, 0.0);
    assert_eq!(r.per_file[0].false_positives, 0);
}

#[test]
fn sweep_of_flags_matches_fixed_detections() {
    let d = corpus();
    let det = vec![flags(40, &[10, 22]), flags(40, &[31, 38])];
    let as_scores: Vec<Vec<f64>> = det
        .iter()
        .map(|v| v.iter().map(|&b| f64::from(u8::from(b))).collect())
        .collect();
    let fixed = score_dataset(&d, &det, &standard()).unwrap();
    let (thr, swept) = best_threshold(&d, &as_scores, &standard()).unwrap();
    assert_eq!(thr, Some(1.0));
    close(fixed.normalized, swept.normalized);
    assert_eq!(fixed.per_file, swept.per_file);
}

#[test]
fn input_shape_errors() {
    let d = corpus();
    assert!(matches!(
        score_dataset(&d, &[vec![false; 40]], &standard()),
        Err(NabError::FileCount {
            expected: 2,
            got: 1
        })
    ));
    let err = score_dataset(&d, &[vec![false; 40], vec![false; 39]], &standard()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "b.csv: expected 40 values (one per record), got 39"
    );
    let mut s = vec![0.0; 40];
    s[7] = f64::NAN;
    let err = best_threshold(&d, &[vec![0.0; 40], s], &standard()).unwrap_err();
    assert!(matches!(err, NabError::NanScore { ref file, row: 7 } if file == "b.csv"));
}

#[test]
fn window_rows_map_times_to_records() {
    let mut f = series("w.csv", 10, &[]);
    f.windows = vec![(1500, 4500), (1100, 1900), (9000, 20_000), (50_000, 60_000)];
    // (1500, 4500) -> records 2..=4; (1100, 1900) holds no record; (9000, ..) -> 9..=9.
    assert_eq!(f.window_rows(), vec![(2, 4), (9, 9)]);
}

#[test]
fn timestamps() {
    assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
    assert_eq!(
        parse_timestamp("2014-07-01 00:30:00"),
        Some(1_404_174_600_000)
    );
    assert_eq!(
        parse_timestamp("2014-07-01 00:30:00.123456"),
        Some(1_404_174_600_123)
    );
    assert_eq!(
        parse_timestamp(" 2016-02-29T12:00:00 "),
        Some(1_456_747_200_000)
    );
    for bad in [
        "2014-13-01 00:00:00",
        "2014/07/01 00:00:00",
        "2014-07-01",
        "2014-07-01 00:00:00x",
        "2014-07-01 00:00:00.",
        "2014-07-01 24:00:00",
        "+014-07-01 00:00:00",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("vigil-nab-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.join("data/set")).unwrap();
        TempDir(p)
    }
    fn write(&self, rel: &str, text: &str) {
        fs::write(self.0.join(rel), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn loads_corpus_and_profiles() {
    let t = TempDir::new("ok");
    t.write(
        "combined_windows.json",
        r#"{"set/b.csv": [], "set/a.csv": [["2014-01-01 00:01:00.000000", "2014-01-01 00:02:00.000000"]]}"#,
    );
    t.write(
        "data/set/a.csv",
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:01:00,2.5\n\n2014-01-01 00:02:00,3\n",
    );
    t.write(
        "data/set/b.csv",
        "timestamp,value\r\n2014-01-01 00:00:00,7\r\n",
    );
    t.write(
        "profiles.json",
        r#"{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
            "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}}}"#,
    );
    let d = Dataset::load(&t.0).unwrap();
    let names: Vec<&str> = d.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["set/a.csv", "set/b.csv"]);
    let a = &d.files[0];
    let t0 = 1_388_534_400_000; // 2014-01-01 00:00:00 UTC
    assert_eq!(a.timestamps, [t0, t0 + 60_000, t0 + 120_000]);
    assert_eq!(a.values, [1.0, 2.5, 3.0]);
    assert_eq!(a.windows, [(t0 + 60_000, t0 + 120_000)]);
    assert_eq!(a.window_rows(), [(1, 2)]);
    assert_eq!(d.files[1].values, [7.0]);
    assert_eq!(d.records(), 4);

    let p = Profile::load_all(&t.0).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0], low_fn());
    assert_eq!(p[1], standard());
}

#[test]
fn load_errors_name_file_and_line() {
    let t = TempDir::new("bad");
    t.write("combined_windows.json", r#"{"set/a.csv": []}"#);
    t.write(
        "data/set/a.csv",
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:01:00,x\n",
    );
    let err = Dataset::load(&t.0).unwrap_err();
    assert!(matches!(err, NabError::Csv { line: 3, .. }), "{err}");
    assert!(
        err.to_string().contains("a.csv:3: bad value \"x\""),
        "{err}"
    );

    t.write("data/set/a.csv", "timestamp,value\n2014-01-01 00:00,1\n");
    let err = Dataset::load(&t.0).unwrap_err();
    assert!(err.to_string().contains("a.csv:2: bad timestamp"), "{err}");

    t.write("data/set/a.csv", "timestamp,value\n2014-01-01 00:00:00,1\n");
    t.write(
        "combined_windows.json",
        r#"{"set/a.csv": [["2014-01-01 00:00:00", "bad"]]}"#,
    );
    let err = Dataset::load(&t.0).unwrap_err();
    assert!(
        matches!(err, NabError::Window { ref file, index: 0, .. } if file == "set/a.csv"),
        "{err}"
    );

    t.write("combined_windows.json", r#"{"set/missing.csv": []}"#);
    assert!(matches!(
        Dataset::load(&t.0).unwrap_err(),
        NabError::Io { .. }
    ));

    t.write(
        "profiles.json",
        r#"{"p": {"CostMatrix": {"tpWeight": 1.0}}}"#,
    );
    let err = Profile::load_all(&t.0).unwrap_err();
    assert!(
        err.to_string()
            .contains("profile p: missing or non-numeric CostMatrix.fpWeight"),
        "{err}"
    );
}
