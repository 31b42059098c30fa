//! Tests of JoinGroup/SyncGroup/Heartbeat/LeaveGroup and the admin views, driven through the
//! public API.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{DescribeGroupsRequest, LeaveGroupRequest, ListGroupsRequest};
use tokio::time::Instant;

use super::test_support::*;

const NONE: i16 = 0;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

fn describe_state(coord: &super::GroupCoordinator, group: &str) -> (String, usize) {
    let resp = coord.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
        5,
    );
    let g = &resp.groups[0];
    (g.group_state.to_string(), g.members.len())
}

#[tokio::test(start_paused = true)]
async fn single_member_join_sync_heartbeat() {
    let coord = coordinator(MemStore::with_topics(&[]));
    // v3 predates MEMBER_ID_REQUIRED: the id is assigned directly.
    let join = coord
        .join_group(join_req("g1", "", &["range", "roundrobin"]), 3)
        .await;
    assert_eq!(join.error_code, NONE);
    assert_eq!(join.generation_id, 1);
    assert!(!join.member_id.is_empty());
    assert_eq!(join.leader, join.member_id);
    assert_eq!(join.protocol_name.as_deref(), Some("range"));
    assert_eq!(join.members.len(), 1);
    assert_eq!(join.members[0].metadata, Bytes::from("meta-range"));
    assert_encodes(&join, 3);

    let member = join.member_id.to_string();
    let sync = coord
        .sync_group(sync_req("g1", &member, 1, &[(&member, "assign-1")]), 3)
        .await;
    assert_eq!(sync.error_code, NONE);
    assert_eq!(sync.assignment, Bytes::from("assign-1"));

    let hb = coord.heartbeat(hb_req("g1", &member, 1), 3).await;
    assert_eq!(hb.error_code, NONE);

    let described = coord.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid("g1"), gid("nope")]),
        5,
    );
    assert_encodes(&described, 5);
    let g = &described.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members[0].member_assignment, Bytes::from("assign-1"));
    assert_eq!(g.members[0].member_metadata, Bytes::from("meta-range"));
    let unknown = &described.groups[1];
    assert_eq!(unknown.group_state.as_str(), "Dead");
    assert_eq!(unknown.error_code, NONE);

    let listed = coord.list_groups(ListGroupsRequest::default(), 4);
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state.as_str(), "Stable");
    assert_eq!(listed.groups[0].protocol_type.as_str(), "consumer");
    let filtered = coord.list_groups(
        ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
        4,
    );
    assert!(filtered.groups.is_empty());
}

#[tokio::test(start_paused = true)]
async fn member_id_required_flow() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let first = coord.join_group(join_req("g", "", &["range"]), 4).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    assert_encodes(&first, 4);

    // An id the coordinator never issued is rejected.
    let bogus = coord
        .join_group(join_req("g", "made-up", &["range"]), 4)
        .await;
    assert_eq!(bogus.error_code, UNKNOWN_MEMBER_ID);

    let joined = coord
        .join_group(join_req("g", first.member_id.as_str(), &["range"]), 4)
        .await;
    assert_eq!(joined.error_code, NONE);
    assert_eq!(joined.member_id, first.member_id);
    assert_eq!(joined.generation_id, 1);
}

#[tokio::test(start_paused = true)]
async fn join_validation_errors() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let mut req = join_req("g", "", &["range"]);
    req.session_timeout_ms = 500;
    let resp = coord.join_group(req, 9).await;
    assert_eq!(resp.error_code, INVALID_SESSION_TIMEOUT);

    let leader = coord.join_group(join_req("g", "", &["range"]), 3).await;
    assert_eq!(leader.error_code, NONE);
    let other = coord.join_group(join_req("g", "", &["sticky"]), 3).await;
    assert_eq!(other.error_code, INCONSISTENT_GROUP_PROTOCOL);
}

#[tokio::test(start_paused = true)]
async fn three_members_join_concurrently() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let coord = coord.clone();
        tasks.push(tokio::spawn(async move { join_v9(&coord, "g3").await }));
    }
    let mut joins = Vec::new();
    for task in tasks {
        joins.push(task.await.expect("join task panicked"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "rebalance took {:?}",
        started.elapsed()
    );
    for j in &joins {
        assert_eq!(j.error_code, NONE);
        assert_eq!(j.generation_id, 1);
        assert_eq!(j.leader, joins[0].leader);
        assert_encodes(j, 9);
    }
    let leaders: Vec<_> = joins.iter().filter(|j| j.member_id == j.leader).collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].members.len(), 3);
    assert_eq!(
        joins.iter().filter(|j| j.members.is_empty()).count(),
        2,
        "followers get no member list"
    );

    // Followers wait in SyncGroup until the leader hands out assignments.
    let ids: Vec<String> = joins.iter().map(|j| j.member_id.to_string()).collect();
    let leader = leaders[0].member_id.to_string();
    let mut followers = Vec::new();
    for id in ids.iter().filter(|id| **id != leader) {
        let coord = coord.clone();
        let id = id.clone();
        followers.push(tokio::spawn(async move {
            let resp = coord.sync_group(sync_req("g3", &id, 1, &[]), 5).await;
            (id, resp)
        }));
    }
    settle().await;
    let assignments: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), format!("for-{id}")))
        .collect();
    let refs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let leader_sync = coord.sync_group(sync_req("g3", &leader, 1, &refs), 5).await;
    assert_eq!(leader_sync.error_code, NONE);
    assert_eq!(leader_sync.assignment, Bytes::from(format!("for-{leader}")));
    assert_eq!(leader_sync.protocol_name.as_deref(), Some("range"));
    assert_eq!(leader_sync.protocol_type.as_deref(), Some("consumer"));
    assert_encodes(&leader_sync, 5);
    for f in followers {
        let (id, resp) = f.await.expect("sync task panicked");
        assert_eq!(resp.error_code, NONE);
        assert_eq!(resp.assignment, Bytes::from(format!("for-{id}")));
    }
    assert_eq!(describe_state(&coord, "g3"), ("Stable".to_string(), 3));
}

/// Joins two dynamic members into generation 1 and syncs them; returns (leader, follower).
async fn stable_pair(
    coord: &std::sync::Arc<super::GroupCoordinator>,
    group: &str,
) -> (String, String) {
    let a = {
        let coord = coord.clone();
        let group = group.to_string();
        tokio::spawn(async move { join_v9(&coord, &group).await })
    };
    let b = {
        let coord = coord.clone();
        let group = group.to_string();
        tokio::spawn(async move { join_v9(&coord, &group).await })
    };
    let a = a.await.expect("join a");
    let b = b.await.expect("join b");
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    let leader = a.leader.to_string();
    let follower = if a.member_id == a.leader {
        b.member_id
    } else {
        a.member_id
    }
    .to_string();
    let f = {
        let coord = coord.clone();
        let (group, follower) = (group.to_string(), follower.clone());
        tokio::spawn(async move {
            coord
                .sync_group(sync_req(&group, &follower, 1, &[]), 3)
                .await
        })
    };
    settle().await;
    let l = coord
        .sync_group(
            sync_req(group, &leader, 1, &[(&leader, "L"), (&follower, "F")]),
            3,
        )
        .await;
    assert_eq!(l.error_code, NONE);
    assert_eq!(f.await.expect("sync f").assignment, Bytes::from("F"));
    (leader, follower)
}

#[tokio::test(start_paused = true)]
async fn leave_triggers_rebalance_and_rejoin() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let (leader, follower) = stable_pair(&coord, "gl").await;

    let leave = coord
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid("gl"))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(s(&follower)),
                    MemberIdentity::default().with_member_id(s("ghost")),
                ]),
            3,
        )
        .await;
    assert_eq!(leave.error_code, NONE);
    let codes: Vec<i16> = leave.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![NONE, UNKNOWN_MEMBER_ID]);
    assert_encodes(&leave, 3);

    let hb = coord.heartbeat(hb_req("gl", &leader, 1), 4).await;
    assert_eq!(hb.error_code, REBALANCE_IN_PROGRESS);
    // SyncGroup while preparing is refused too.
    let sync = coord.sync_group(sync_req("gl", &leader, 1, &[]), 3).await;
    assert_eq!(sync.error_code, REBALANCE_IN_PROGRESS);

    let rejoin = coord
        .join_group(join_req("gl", &leader, &["range"]), 9)
        .await;
    assert_eq!(rejoin.error_code, NONE);
    assert_eq!(rejoin.generation_id, 2);
    assert_eq!(rejoin.members.len(), 1);
    let gone = coord.heartbeat(hb_req("gl", &follower, 1), 4).await;
    assert_eq!(gone.error_code, UNKNOWN_MEMBER_ID);

    // v0 leave of the last member empties the group.
    let last = coord
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid("gl"))
                .with_member_id(s(&leader)),
            0,
        )
        .await;
    assert_eq!(last.error_code, NONE);
    assert_encodes(&last, 0);
    assert_eq!(describe_state(&coord, "gl"), ("Empty".to_string(), 0));
    // Session and rebalance timers die with their members instead of waiting to fire; the one
    // task left is the coordinator's periodic offset expiry.
    settle().await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn rejoin_after_follower_triggers_new_generation_for_all() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let (leader, follower) = stable_pair(&coord, "gr").await;
    // A third member arrives: both existing members learn via heartbeat and rejoin.
    let newcomer = {
        let coord = coord.clone();
        tokio::spawn(async move { join_v9(&coord, "gr").await })
    };
    settle().await;
    assert_eq!(
        coord
            .heartbeat(hb_req("gr", &leader, 1), 4)
            .await
            .error_code,
        REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        coord
            .heartbeat(hb_req("gr", &follower, 1), 4)
            .await
            .error_code,
        REBALANCE_IN_PROGRESS
    );
    let l = {
        let coord = coord.clone();
        let leader = leader.clone();
        tokio::spawn(async move {
            coord
                .join_group(join_req("gr", &leader, &["range"]), 9)
                .await
        })
    };
    let f = coord
        .join_group(join_req("gr", &follower, &["range"]), 9)
        .await;
    let l = l.await.expect("leader join");
    let n = newcomer.await.expect("newcomer join");
    assert_eq!(
        (l.generation_id, f.generation_id, n.generation_id),
        (2, 2, 2)
    );
    assert_eq!(
        l.leader.as_str(),
        leader,
        "existing leader keeps leadership"
    );
    assert_eq!(l.members.len(), 3);
    assert!(f.members.is_empty() && n.members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn session_expiry_removes_silent_member() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let (leader, follower) = stable_pair(&coord, "ge").await;
    // Session timeout is 10 s; the leader heartbeats every 3 s, the follower stays silent.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        assert_eq!(
            coord
                .heartbeat(hb_req("ge", &leader, 1), 4)
                .await
                .error_code,
            NONE
        );
    }
    tokio::time::advance(Duration::from_millis(1_500)).await;
    settle().await;
    let hb = coord.heartbeat(hb_req("ge", &leader, 1), 4).await;
    assert_eq!(hb.error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(
        coord
            .heartbeat(hb_req("ge", &follower, 1), 4)
            .await
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    let rejoin = coord
        .join_group(join_req("ge", &leader, &["range"]), 9)
        .await;
    assert_eq!(rejoin.generation_id, 2);
    assert_eq!(rejoin.members.len(), 1);

    // Once the last member goes silent too, the group ends up empty.
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(describe_state(&coord, "ge"), ("Empty".to_string(), 0));
}

#[tokio::test(start_paused = true)]
async fn illegal_generation_and_unknown_member() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let (leader, _) = stable_pair(&coord, "gi").await;
    assert_eq!(
        coord
            .heartbeat(hb_req("gi", &leader, 7), 4)
            .await
            .error_code,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        coord
            .sync_group(sync_req("gi", &leader, 0, &[]), 3)
            .await
            .error_code,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        coord
            .heartbeat(hb_req("gi", "stranger", 1), 4)
            .await
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        coord
            .heartbeat(hb_req("no-such-group", "x", 1), 0)
            .await
            .error_code,
        UNKNOWN_MEMBER_ID
    );
}

#[tokio::test(start_paused = true)]
async fn static_member_rejoin_keeps_generation_and_fences_old_id() {
    let coord = coordinator(MemStore::with_topics(&[]));
    let leader = {
        let coord = coord.clone();
        tokio::spawn(async move {
            let first = coord.join_group(join_req("gs", "", &["range"]), 5).await;
            assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
            coord
                .join_group(join_req("gs", first.member_id.as_str(), &["range"]), 5)
                .await
        })
    };
    settle().await;
    let mut static_req = join_req("gs", "", &["range"]);
    static_req.group_instance_id = Some(s("instance-1"));
    let follower = {
        let coord = coord.clone();
        let req = static_req.clone();
        tokio::spawn(async move { coord.join_group(req, 5).await })
    };
    let leader = leader.await.expect("leader join");
    assert_eq!(leader.member_id, leader.leader);
    let follower = follower.await.expect("static join");
    assert_eq!(
        follower.error_code, NONE,
        "static members skip MEMBER_ID_REQUIRED"
    );
    assert_eq!(follower.generation_id, 1);
    let (lid, fid) = (leader.member_id.to_string(), follower.member_id.to_string());
    let f = {
        let coord = coord.clone();
        let fid = fid.clone();
        tokio::spawn(async move { coord.sync_group(sync_req("gs", &fid, 1, &[]), 3).await })
    };
    settle().await;
    coord
        .sync_group(sync_req("gs", &lid, 1, &[(&lid, "L"), (&fid, "F")]), 3)
        .await;
    assert_eq!(f.await.expect("sync").assignment, Bytes::from("F"));

    // The static member restarts and comes back without its member id.
    let again = coord.join_group(static_req, 5).await;
    assert_eq!(again.error_code, NONE);
    assert_eq!(
        again.generation_id, 1,
        "no rebalance for an unchanged static follower"
    );
    assert_ne!(again.member_id.as_str(), fid);
    let sync = coord
        .sync_group(sync_req("gs", again.member_id.as_str(), 1, &[]), 3)
        .await;
    assert_eq!(
        sync.assignment,
        Bytes::from("F"),
        "assignment survives the restart"
    );

    let mut old = hb_req("gs", &fid, 1);
    old.group_instance_id = Some(s("instance-1"));
    assert_eq!(coord.heartbeat(old, 3).await.error_code, FENCED_INSTANCE_ID);
    assert_eq!(describe_state(&coord, "gs"), ("Stable".to_string(), 2));
}

#[tokio::test(start_paused = true)]
async fn responses_encode_for_every_served_version() {
    let coord = coordinator(MemStore::with_topics(&[]));
    for version in 0..=9 {
        let group = format!("v{version}");
        let mut req = join_req(&group, "", &["range"]);
        if version >= 5 {
            req.group_instance_id = Some(s("static"));
        }
        let mut join = coord.join_group(req, version).await;
        if join.error_code == MEMBER_ID_REQUIRED {
            assert_eq!(version, 4);
            let req = join_req(&group, join.member_id.as_str(), &["range"]);
            join = coord.join_group(req, version).await;
        }
        assert_eq!(join.error_code, NONE, "v{version}");
        assert_encodes(&join, version);
        let id = join.member_id.to_string();
        if version <= 5 {
            let sync = coord
                .sync_group(sync_req(&group, &id, 1, &[(&id, "a")]), version)
                .await;
            assert_eq!(sync.error_code, NONE);
            assert_encodes(&sync, version);
            let described = coord.describe_groups(
                DescribeGroupsRequest::default()
                    .with_groups(vec![gid(&group)])
                    .with_include_authorized_operations(version >= 3),
                version,
            );
            assert_encodes(&described, version);
        }
        if version <= 4 {
            let hb = coord.heartbeat(hb_req(&group, &id, 1), version).await;
            assert_encodes(&hb, version);
            assert_encodes(
                &coord.list_groups(ListGroupsRequest::default(), version),
                version,
            );
        }
    }
}

/// Real threads and real timers: three consumers join, sync, heartbeat and leave without
/// deadlocking, and the handler futures are `Send` (they are spawned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lifecycle_on_multi_thread_runtime() {
    // A generous initial delay keeps this deterministic on a loaded machine.
    let config = super::GroupConfig {
        initial_rebalance_delay: Duration::from_secs(1),
        ..super::GroupConfig::default()
    };
    let coord = super::GroupCoordinator::new(config, MemStore::with_topics(&[]));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let coord = coord.clone();
        tasks.push(tokio::spawn(async move {
            let join = join_v9(&coord, "mt").await;
            assert_eq!(join.error_code, NONE);
            let id = join.member_id.to_string();
            let assignments: Vec<(String, String)> = join
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), format!("p{i}")))
                .collect();
            let refs: Vec<(&str, &str)> = assignments
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let sync = coord
                .sync_group(sync_req("mt", &id, join.generation_id, &refs), 5)
                .await;
            assert_eq!(sync.error_code, NONE);
            let hb = coord
                .heartbeat(hb_req("mt", &id, join.generation_id), 4)
                .await;
            assert_eq!(hb.error_code, NONE);
            (id, join.generation_id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (id, generation) = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("lifecycle timed out")
            .expect("lifecycle task panicked");
        assert_eq!(generation, 1);
        ids.push(id);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let members = ids
        .iter()
        .map(|id| MemberIdentity::default().with_member_id(s(id)))
        .collect();
    let leave = tokio::spawn({
        let coord = coord.clone();
        async move {
            coord
                .leave_group(
                    LeaveGroupRequest::default()
                        .with_group_id(gid("mt"))
                        .with_members(members),
                    5,
                )
                .await
        }
    })
    .await
    .expect("leave task panicked");
    assert!(leave.members.iter().all(|m| m.error_code == NONE));
    assert_eq!(describe_state(&coord, "mt"), ("Empty".to_string(), 0));
}
