use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};
use vigil_protocol::BatchBuilder;
use vigil_storage::{LogConfig, TopicConfig};

use super::*;

fn counts(a: &[i64], b: &[i64], w: i64) -> (u64, u64, u64) {
    let c = match_offsets(a, b, w);
    (c.only_a, c.only_b, c.both)
}

#[test]
fn window_zero_is_a_multiset_intersection() {
    let c = match_offsets(&[1, 2, 2, 5], &[2, 3, 5, 5], 0);
    assert_eq!((c.only_a, c.only_b, c.both), (2, 2, 2));
    assert_eq!(c.sample_only_a, vec![1, 2]);
    assert_eq!(c.sample_only_b, vec![3, 5]);
}

#[test]
fn window_matches_near_offsets_only() {
    let c = match_offsets(&[10, 20, 30], &[12, 25, 30], 2);
    assert_eq!((c.only_a, c.only_b, c.both), (1, 1, 2));
    assert_eq!(c.sample_only_a, vec![20]);
    assert_eq!(c.sample_only_b, vec![25]);
    // The same streams at window 0 share only 30.
    assert_eq!(counts(&[10, 20, 30], &[12, 25, 30], 0), (2, 2, 1));
    // The boundary is inclusive.
    assert_eq!(counts(&[10], &[13], 3), (0, 0, 1));
    assert_eq!(counts(&[10], &[14], 3), (1, 1, 0));
}

#[test]
fn crossing_candidates_pair_everything_possible() {
    // Closest-first would pair 11–11 and strand 12 and 10.
    assert_eq!(counts(&[11, 12], &[10, 11], 1), (0, 0, 2));
    assert_eq!(counts(&[10, 11], &[11, 12], 1), (0, 0, 2));
    // A shifted run of alerts matches whole.
    let a: Vec<i64> = (100..200).collect();
    let b: Vec<i64> = (101..201).collect();
    assert_eq!(counts(&a, &b, 1), (0, 0, 100));
    assert_eq!(counts(&a, &b, 0), (1, 1, 99));
}

#[test]
fn among_equal_counts_the_closest_partner_wins() {
    // 11 could pair with 10 or 11: the exact match is the pair, 10 is left.
    let c = match_offsets(&[11], &[10, 11], 1);
    assert_eq!(c.both, 1);
    assert_eq!(c.sample_only_b, vec![10]);
    let c = match_offsets(&[10, 11], &[11], 1);
    assert_eq!(c.sample_only_a, vec![10]);
    let c = match_offsets(&[20], &[17, 19, 20, 23], 3);
    assert_eq!(c.sample_only_b, vec![17, 19, 23]);
}

#[test]
fn duplicates_pair_one_to_one() {
    let c = match_offsets(&[5, 5, 5], &[5], 0);
    assert_eq!((c.only_a, c.only_b, c.both), (2, 0, 1));
    assert_eq!(c.sample_only_a, vec![5, 5]);
    assert_eq!(counts(&[5, 5], &[4, 5, 6], 1), (0, 1, 2));
}

#[test]
fn empty_sides() {
    assert_eq!(match_offsets(&[], &[], 3), PartitionCounts::default());
    let c = match_offsets(&[], &[1, 2], 5);
    assert_eq!((c.only_a, c.only_b, c.both), (0, 2, 0));
    assert_eq!(c.sample_only_b, vec![1, 2]);
    assert_eq!(counts(&[7], &[], 0), (1, 0, 0));
}

#[test]
fn samples_are_the_lowest_and_capped() {
    let a: Vec<i64> = (0..100).collect();
    let c = match_offsets(&a, &[0], 0);
    assert_eq!(c.only_a, 99);
    assert_eq!(c.sample_only_a, (1..=SAMPLES as i64).collect::<Vec<_>>());
}

#[test]
fn extreme_offsets_and_windows_do_not_overflow() {
    assert_eq!(counts(&[i64::MIN], &[i64::MAX], i64::MAX), (1, 1, 0));
    assert_eq!(counts(&[-5, 0], &[i64::MAX], i64::MAX), (1, 0, 1));
    assert_eq!(counts(&[1], &[1], -1), (1, 1, 0));
}

/// Largest bipartite matching by augmenting paths (Kuhn), for checking.
fn brute_force(a: &[i64], b: &[i64], w: i64) -> u64 {
    fn augment(
        i: usize,
        adj: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &j in &adj[i] {
            if !seen[j] {
                seen[j] = true;
                if owner[j].is_none_or(|o| augment(o, adj, seen, owner)) {
                    owner[j] = Some(i);
                    return true;
                }
            }
        }
        false
    }
    let adj: Vec<Vec<usize>> = a
        .iter()
        .map(|&x| (0..b.len()).filter(|&j| (x - b[j]).abs() <= w).collect())
        .collect();
    let mut owner = vec![None; b.len()];
    (0..a.len())
        .filter(|&i| augment(i, &adj, &mut vec![false; b.len()], &mut owner))
        .count() as u64
}

#[test]
fn pairing_is_as_large_as_possible_and_symmetric() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..3000 {
        let mut side = |n: usize| {
            let mut v: Vec<i64> = (0..rng.gen_range(0..n))
                .map(|_| rng.gen_range(0..30))
                .collect();
            v.sort_unstable();
            v
        };
        let (a, b) = (side(12), side(12));
        let w = rng.gen_range(0..4);
        let c = match_offsets(&a, &b, w);
        assert_eq!(c.both, brute_force(&a, &b, w), "a={a:?} b={b:?} w={w}");
        assert_eq!(c.only_a + c.both, a.len() as u64);
        assert_eq!(c.only_b + c.both, b.len() as u64);
        let r = match_offsets(&b, &a, w);
        assert_eq!((r.only_a, r.only_b, r.both), (c.only_b, c.only_a, c.both));
        // Every unmatched pair left over is out of each other's reach.
        for x in &c.sample_only_a {
            for y in &c.sample_only_b {
                assert!(
                    (x - y).abs() > w,
                    "{x} and {y} both unmatched at w={w}: a={a:?} b={b:?}"
                );
            }
        }
    }
}

#[test]
fn request_checks() {
    let req = |window, from, to| DiffRequest {
        a: "x".into(),
        b: "y".into(),
        window,
        from,
        to,
    };
    assert!(req(0, None, None).check().is_ok());
    assert!(req(-1, None, None).check().is_err());
    assert!(req(0, Some(5), Some(4)).check().is_err());
    assert!(req(0, Some(5), Some(5)).check().is_ok());
    let parsed: DiffRequest =
        serde_json::from_str(r#"{"a": "d1", "b": "t2"}"#).expect("minimal request");
    assert_eq!((parsed.window, parsed.from, parsed.to), (0, None, None));
    assert!(serde_json::from_str::<DiffRequest>(r#"{"a": "d1", "b": "t2", "windw": 3}"#).is_err());
}

#[test]
fn resolve_prefers_a_deployment() {
    let s = resolve("amounts", |n| {
        (n == "amounts").then(|| ("payments.alerts".to_string(), Coverage::new()))
    });
    assert_eq!(s.topic, "payments.alerts");
    assert_eq!(s.deployment.as_deref(), Some("amounts"));
    let s = resolve("payments.alerts", |_| None);
    assert_eq!(s.topic, "payments.alerts");
    assert_eq!(s.deployment, None);
}

/// An alert record as the runners write it (only the headers matter here).
fn alert(
    deployment: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Vec<(String, Option<Bytes>)> {
    let h = |k: &str, v: String| (k.to_string(), Some(Bytes::from(v)));
    vec![
        h(headers::DEPLOYMENT, deployment.into()),
        h(headers::SOURCE_TOPIC, topic.into()),
        h(headers::SOURCE_PARTITION, partition.to_string()),
        h(headers::SOURCE_OFFSET, offset.to_string()),
    ]
}

async fn append(log: &Log, topic: &Topic, p: usize, records: Vec<Vec<(String, Option<Bytes>)>>) {
    let mut b = BatchBuilder::new(Compression::None);
    for hs in records {
        b = b.record_with_headers(0, None, Some(Bytes::from_static(b"{}")), hs);
    }
    log.append(&topic.partitions[p], b.build().expect("batch"))
        .await
        .expect("append");
}

#[tokio::test]
async fn collect_and_diff_read_alert_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = LogConfig::new(dir.path());
    c.lease_interval = std::time::Duration::from_millis(10);
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let log = Log::open(c, store).await.expect("open log");
    let cfg = |n| TopicConfig {
        partitions: n,
        configs: Default::default(),
    };
    let shared = log.create_topic("alerts", cfg(2)).await.expect("topic");
    let other = log.create_topic("shadow", cfg(1)).await.expect("topic");
    // Deployment d1 on in-0 and in-1 (in-1's alerts land in alert partition
    // 1), plus d2 writing into the same topic, out of order across batches.
    append(
        &log,
        &shared,
        0,
        vec![
            alert("d1", "in", 0, 7),
            alert("d2", "in", 0, 1),
            alert("d1", "in", 0, 3),
        ],
    )
    .await;
    append(&log, &shared, 1, vec![alert("d1", "in", 1, 4)]).await;
    append(&log, &shared, 0, vec![alert("d1", "in", 0, 9)]).await;
    // Not an alert: no source headers.
    let junk = vec![(
        "vigil.deployment".to_string(),
        Some(Bytes::from_static(b"d1")),
    )];
    append(&log, &shared, 0, vec![junk]).await;
    append(
        &log,
        &other,
        0,
        vec![
            alert("d1.shadow", "in", 0, 3),
            alert("d1.shadow", "in", 0, 8),
            alert("d1.shadow", "in", 1, 5),
        ],
    )
    .await;

    let all = collect(&log, &shared, None, None).await.expect("collect");
    assert_eq!(all.get(&("in".to_string(), 0)), Some(&vec![1, 3, 7, 9]));
    assert_eq!(all.get(&("in".to_string(), 1)), Some(&vec![4]));
    let d1 = collect(&log, &shared, Some("d1"), None)
        .await
        .expect("collect");
    assert_eq!(d1.get(&("in".to_string(), 0)), Some(&vec![3, 7, 9]));
    let ranged = collect(&log, &shared, Some("d1"), Some((3, 9)))
        .await
        .expect("collect");
    assert_eq!(ranged.get(&("in".to_string(), 0)), Some(&vec![3, 7]));
    assert_eq!(ranged.get(&("in".to_string(), 1)), Some(&vec![4]));
    assert!(collect(&log, &shared, Some("nobody"), None)
        .await
        .expect("collect")
        .is_empty());

    let req = DiffRequest {
        a: "d1".into(),
        b: "shadow".into(),
        window: 1,
        from: None,
        to: None,
    };
    let r = diff(&log, &shared, Some("d1"), &other, None, None, &req)
        .await
        .expect("diff");
    assert_eq!(r.partitions.len(), 2);
    let p0 = &r.partitions[0];
    assert_eq!((p0.topic.as_str(), p0.partition), ("in", 0));
    // 3–3 and 7–8 pair (window 1); 9 is A's alone.
    assert_eq!((p0.only_a, p0.only_b, p0.both), (1, 0, 2));
    assert_eq!(p0.sample_only_a, vec![9]);
    let p1 = &r.partitions[1];
    assert_eq!((p1.only_a, p1.only_b, p1.both), (0, 0, 1));
    assert_eq!(
        r.total,
        DiffTotal {
            only_a: 1,
            only_b: 0,
            both: 3
        }
    );

    let bad = DiffRequest { window: -1, ..req };
    assert!(matches!(
        diff(&log, &shared, None, &other, None, None, &bad).await,
        Err(DetectorError::Spec(_))
    ));
}

#[test]
fn coverage_limits_the_comparison_to_offsets_both_processed() {
    let key = |p: i32| ("in".to_string(), p);
    // Live A from 0 to 100 on p0 and p1; shadow B from 40 to 90 on p0 only.
    let a_cov: Coverage = [(key(0), (0, 100)), (key(1), (0, 100))].into();
    let b_cov: Coverage = [(key(0), (40, 90))].into();
    let both = intersect(&a_cov, &b_cov);
    assert_eq!(both, [(key(0), (40, 90))].into());
    let a: AlertOffsets = [(key(0), vec![10, 45, 60, 95]), (key(1), vec![5])].into();
    let b: AlertOffsets = [(key(0), vec![45, 70])].into();
    let req = DiffRequest {
        a: "A".into(),
        b: "B".into(),
        window: 0,
        from: None,
        to: None,
    };
    let r = report(&req, &a, &b, Some(&both));
    // 10 and 95 lie outside what B processed, p1 is not read by B.
    assert_eq!(r.partitions.len(), 1);
    let p = &r.partitions[0];
    assert_eq!(
        (p.only_a, p.only_b, p.both, p.covered),
        (1, 1, 1, Some((40, 90)))
    );
    assert_eq!(
        (p.sample_only_a.clone(), p.sample_only_b.clone()),
        (vec![60], vec![70])
    );
    // Without coverage every alert counts.
    let all = report(&req, &a, &b, None);
    assert_eq!(
        (all.total.only_a, all.total.only_b, all.total.both),
        (4, 1, 1)
    );
}
