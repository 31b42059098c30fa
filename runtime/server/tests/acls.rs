//! ACL enforcement over the wire, for the cases the real-client tests do
//! not reach: Metadata v0 (an empty topic list means "all"), auto-creation
//! of a topic that may not be described, FindCoordinator v4 and OffsetFetch
//! v8 with several keys, idempotent InitProducerId, and the ACL APIs
//! themselves. The client is `User:ANONYMOUS` (plaintext); ACLs are written
//! through the broker's own store.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use vigil_auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};

use crate::common;

use common::Client;

const DENIED_TOPIC: i16 = 29;
const DENIED_GROUP: i16 = 30;
const DENIED_CLUSTER: i16 = 31;

async fn start(dir: &std::path::Path) -> Running {
    let mut settings = Settings::embedded(dir);
    settings.security.authorizer = true;
    let components = Components::from_settings(&settings).expect("components");
    server::start(settings, components).await.expect("start")
}

async fn grant(b: &Running, ty: ResourceType, name: &str, op: Operation) {
    b.broker
        .security
        .authz
        .acls
        .create(vec![AclBinding {
            resource_type: ty,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:ANONYMOUS".into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }])
        .await
        .expect("grant");
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn metadata(c: &mut Client, v: i16, topics: Option<&[&str]>, auto: bool) -> MetadataResponse {
    let topics = topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
            .collect()
    });
    let req = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(auto);
    match c
        .call(ApiKey::Metadata, v, RequestKind::Metadata(req))
        .await
    {
        ResponseKind::Metadata(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn names(r: &MetadataResponse) -> Vec<(String, i16)> {
    let mut out: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.error_code,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn metadata_coordinators_producer_ids_and_acl_apis_follow_the_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let mut c = Client::connect(b.kafka_addr).await;

    // No ACLs: creating is refused; with CREATE on the cluster it works.
    assert_eq!(
        common::create_topic_code(&mut c, "visible", &[]).await,
        DENIED_TOPIC
    );
    grant(
        &b,
        ResourceType::Cluster,
        "kafka-cluster",
        Operation::Create,
    )
    .await;
    for t in ["visible", "hidden"] {
        assert_eq!(common::create_topic_code(&mut c, t, &[]).await, 0, "{t}");
    }
    grant(&b, ResourceType::Topic, "visible", Operation::Describe).await;

    // All topics: only the describable one.
    let r = metadata(&mut c, 12, None, false).await;
    assert_eq!(names(&r), [("visible".to_string(), 0)]);
    // v0 with the one named topic denied: that topic's error, not "all".
    let r = metadata(&mut c, 0, Some(&["hidden"]), true).await;
    assert_eq!(names(&r), [("hidden".to_string(), DENIED_TOPIC)]);
    // Auto-creation of a topic that may not be described: refused, and
    // not created although CREATE on the cluster is granted.
    let r = metadata(&mut c, 12, Some(&["nope", "visible"]), true).await;
    assert_eq!(
        names(&r),
        [
            ("nope".to_string(), DENIED_TOPIC),
            ("visible".to_string(), 0)
        ]
    );
    assert!(
        b.broker.log.topic("nope").is_none(),
        "created without DESCRIBE"
    );

    // FindCoordinator v4: per key.
    grant(&b, ResourceType::Group, "g1", Operation::Describe).await;
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s("g1"), s("g2")]);
    let ResponseKind::FindCoordinator(r) = c
        .call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(req),
        )
        .await
    else {
        panic!("not a FindCoordinator response")
    };
    let mut codes: Vec<(String, i16)> = r
        .coordinators
        .iter()
        .map(|k| (k.key.to_string(), k.error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("g1".to_string(), 0), ("g2".to_string(), DENIED_GROUP)]
    );

    // OffsetFetch v8: per group.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g1"))),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g2"))),
    ]);
    let ResponseKind::OffsetFetch(r) = c
        .call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(req))
        .await
    else {
        panic!("not an OffsetFetch response")
    };
    let mut codes: Vec<(String, i16)> = r
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("g1".to_string(), 0), ("g2".to_string(), DENIED_GROUP)]
    );

    // Idempotent producer ids: WRITE on some topic is enough.
    let init = || {
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    };
    let ResponseKind::InitProducerId(r) = c.call(ApiKey::InitProducerId, 4, init()).await else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(r.error_code, DENIED_CLUSTER);
    grant(&b, ResourceType::Topic, "visible", Operation::Write).await;
    let ResponseKind::InitProducerId(r) = c.call(ApiKey::InitProducerId, 4, init()).await else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(r.error_code, 0);
    assert!(r.producer_id.0 >= 0);

    // The ACL APIs need DESCRIBE / ALTER on the cluster.
    let describe = || {
        RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        )
    };
    let ResponseKind::DescribeAcls(r) = c.call(ApiKey::DescribeAcls, 1, describe()).await else {
        panic!("not a DescribeAcls response")
    };
    assert_eq!(r.error_code, DENIED_CLUSTER);
    grant(
        &b,
        ResourceType::Cluster,
        "kafka-cluster",
        Operation::Describe,
    )
    .await;
    let ResponseKind::DescribeAcls(r) = c.call(ApiKey::DescribeAcls, 3, describe()).await else {
        panic!("not a DescribeAcls response")
    };
    assert_eq!((r.error_code, r.error_message.as_deref()), (0, None));
    let bindings: usize = r.resources.iter().map(|res| res.acls.len()).sum();
    assert_eq!(bindings, 5, "{r:?}");
    let req = CreateAclsRequest::default().with_creations(vec![
        create_acls_request::AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s("x"))
            .with_resource_pattern_type(3)
            .with_principal(s("User:ANONYMOUS"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3),
    ]);
    let ResponseKind::CreateAcls(r) = c
        .call(ApiKey::CreateAcls, 2, RequestKind::CreateAcls(req))
        .await
    else {
        panic!("not a CreateAcls response")
    };
    assert_eq!(
        r.results[0].error_code, DENIED_CLUSTER,
        "DESCRIBE does not allow ALTER"
    );
    b.shutdown().await;
}

/// The `*_authorized_operations` fields, asked for, list what the ACLs
/// allow (Kafka's bit per operation code); not asked for, they keep
/// "not provided" (`i32::MIN`).
#[tokio::test]
async fn authorized_operations_follow_the_acls() {
    const READ: i32 = 1 << 3;
    const WRITE: i32 = 1 << 4;
    const CREATE: i32 = 1 << 5;
    const DESCRIBE: i32 = 1 << 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let mut c = Client::connect(b.kafka_addr).await;
    grant(
        &b,
        ResourceType::Cluster,
        "kafka-cluster",
        Operation::Create,
    )
    .await;
    assert_eq!(common::create_topic_code(&mut c, "ops", &[]).await, 0);
    grant(&b, ResourceType::Topic, "ops", Operation::Read).await;
    grant(&b, ResourceType::Topic, "ops", Operation::Write).await;
    grant(&b, ResourceType::Group, "ops-g", Operation::Describe).await;

    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("ops"))))
        ]))
        .with_include_cluster_authorized_operations(true)
        .with_include_topic_authorized_operations(true);
    let ResponseKind::Metadata(r) = c
        .call(ApiKey::Metadata, 10, RequestKind::Metadata(req.clone()))
        .await
    else {
        panic!("not a Metadata response")
    };
    assert_eq!(r.cluster_authorized_operations, CREATE);
    // READ and WRITE imply DESCRIBE.
    assert_eq!(
        r.topics[0].topic_authorized_operations,
        READ | WRITE | DESCRIBE
    );
    let ResponseKind::Metadata(r) = c
        .call(
            ApiKey::Metadata,
            10,
            RequestKind::Metadata(
                req.with_include_cluster_authorized_operations(false)
                    .with_include_topic_authorized_operations(false),
            ),
        )
        .await
    else {
        panic!("not a Metadata response")
    };
    assert_eq!(r.cluster_authorized_operations, i32::MIN);
    assert_eq!(r.topics[0].topic_authorized_operations, i32::MIN);

    let ResponseKind::DescribeCluster(r) = c
        .call(
            ApiKey::DescribeCluster,
            0,
            RequestKind::DescribeCluster(
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            ),
        )
        .await
    else {
        panic!("not a DescribeCluster response")
    };
    assert_eq!(r.cluster_authorized_operations, CREATE);

    let ResponseKind::DescribeGroups(r) = c
        .call(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(
                DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(s("ops-g")), GroupId(s("other"))])
                    .with_include_authorized_operations(true),
            ),
        )
        .await
    else {
        panic!("not a DescribeGroups response")
    };
    let mut groups: Vec<(String, i16, i32)> = r
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.error_code,
                g.authorized_operations,
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("ops-g".to_string(), 0, DESCRIBE),
            ("other".to_string(), DENIED_GROUP, i32::MIN)
        ]
    );
    b.shutdown().await;
}
