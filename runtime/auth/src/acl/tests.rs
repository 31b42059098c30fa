//! Tests of the ACL model and decision.

use super::*;

fn b(
    ty: ResourceType,
    name: &str,
    pat: PatternType,
    who: &str,
    op: Operation,
    perm: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: ty,
        resource_name: name.into(),
        pattern_type: pat,
        principal: who.into(),
        host: WILDCARD.into(),
        operation: op,
        permission: perm,
    }
}

use Operation as O;
use PatternType::{Literal, Prefixed};
use Permission::{Allow, Deny};
use ResourceType::{Cluster, Group, Topic};

#[test]
fn no_acl_denies_and_literal_prefixed_wildcard_match() {
    let acls = vec![
        b(Topic, "orders", Literal, "User:alice", O::Read, Allow),
        b(Topic, "logs.", Prefixed, "User:bob", O::Write, Allow),
        b(Topic, "*", Literal, "User:carol", O::Describe, Allow),
    ];
    let can = |who, op, name| authorize(&acls, who, "10.0.0.1", op, Topic, name);
    assert!(!can("User:dave", O::Read, "orders"), "no ACL: denied");
    assert!(can("User:alice", O::Read, "orders"));
    assert!(!can("User:alice", O::Read, "orders2"), "literal is exact");
    assert!(!can("User:alice", O::Write, "orders"));
    assert!(can("User:bob", O::Write, "logs.app"));
    assert!(!can("User:bob", O::Write, "log"), "shorter than the prefix");
    assert!(!can("User:bob", O::Write, "xlogs.app"));
    assert!(can("User:carol", O::Describe, "anything"));
    assert!(!can("User:carol", O::Read, "anything"));
    // A topic ACL says nothing about a group of the same name.
    assert!(!authorize(
        &acls,
        "User:alice",
        "h",
        O::Read,
        Group,
        "orders"
    ));
}

#[test]
fn implied_operations_and_all() {
    let acls = vec![
        b(Topic, "t", Literal, "User:r", O::Read, Allow),
        b(Topic, "t", Literal, "User:w", O::Write, Allow),
        b(Topic, "t", Literal, "User:d", O::Delete, Allow),
        b(Topic, "t", Literal, "User:a", O::Alter, Allow),
        b(Topic, "t", Literal, "User:ac", O::AlterConfigs, Allow),
        b(Topic, "t", Literal, "User:all", O::All, Allow),
        b(Topic, "t", Literal, "User:c", O::Create, Allow),
    ];
    let can = |who, op| authorize(&acls, who, "h", op, Topic, "t");
    for who in ["User:r", "User:w", "User:d", "User:a", "User:all"] {
        assert!(can(who, O::Describe), "{who} implies DESCRIBE");
    }
    assert!(
        !can("User:c", O::Describe),
        "CREATE does not imply DESCRIBE"
    );
    assert!(can("User:ac", O::DescribeConfigs));
    assert!(!can("User:ac", O::Describe));
    assert!(!can("User:r", O::Write), "READ does not imply WRITE");
    for op in [O::Read, O::Write, O::Create, O::Delete, O::AlterConfigs] {
        assert!(can("User:all", op));
    }
}

#[test]
fn deny_wins_and_does_not_imply() {
    let acls = vec![
        b(Topic, "*", Literal, "User:*", O::All, Allow),
        b(Topic, "secret.", Prefixed, "User:eve", O::Read, Deny),
        b(Topic, "t", Literal, "User:mallory", O::All, Deny),
    ];
    let can = |who, op, name| authorize(&acls, who, "h", op, Topic, name);
    assert!(can("User:eve", O::Read, "public"));
    assert!(!can("User:eve", O::Read, "secret.keys"));
    // Denying READ leaves DESCRIBE (granted by the ALL allow).
    assert!(can("User:eve", O::Describe, "secret.keys"));
    assert!(!can("User:mallory", O::Describe, "t"));
    assert!(can("User:mallory", O::Describe, "u"));
}

#[test]
fn host_filter_and_wildcard_principal() {
    let mut allow = b(Cluster, CLUSTER_NAME, Literal, "User:*", O::Alter, Allow);
    allow.host = "127.0.0.1".into();
    let acls = vec![allow];
    assert!(authorize(
        &acls,
        "User:x",
        "127.0.0.1",
        O::Alter,
        Cluster,
        CLUSTER_NAME
    ));
    assert!(!authorize(
        &acls,
        "User:x",
        "10.1.1.1",
        O::Alter,
        Cluster,
        CLUSTER_NAME
    ));
}

#[test]
fn wire_validation() {
    let ok = AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 3).expect("valid");
    assert_eq!(ok.operation, O::Read);
    for (ty, name, pat, who, host, op, perm) in [
        (1, "t", 3, "User:a", "*", 3, 3),     // ANY type
        (2, "t", 1, "User:a", "*", 3, 3),     // ANY pattern
        (2, "t", 3, "alice", "*", 3, 3),      // no Type:
        (2, "t", 3, "User:a", "*", 1, 3),     // ANY operation
        (2, "t", 3, "User:a", "*", 3, 1),     // ANY permission
        (4, "other", 3, "User:a", "*", 7, 3), // cluster name
        (2, "*", 4, "User:a", "*", 3, 3),     // prefixed wildcard
        (2, "", 3, "User:a", "*", 3, 3),      // empty name
    ] {
        assert!(
            AclBinding::from_wire(ty, name, pat, who, host, op, perm).is_err(),
            "{ty} {name} {pat} {who} {op} {perm}"
        );
    }
}

#[test]
fn filters() {
    let lit = b(Topic, "orders", Literal, "User:a", O::Read, Allow);
    let pre = b(Topic, "ord", Prefixed, "User:a", O::Read, Allow);
    let wild = b(Topic, "*", Literal, "User:b", O::Write, Deny);
    let grp = b(Group, "orders", Literal, "User:a", O::Read, Allow);
    let all = [&lit, &pre, &wild, &grp];
    let hits = |f: &AclFilter| all.iter().filter(|b| f.matches(b)).count();
    assert_eq!(hits(&AclFilter::default()), 4);
    let f = AclFilter::from_wire(2, Some("orders"), 2, None, None, 1, 1).expect("filter");
    assert_eq!(hits(&f), 3, "MATCH: literal, prefix and wildcard");
    let f = AclFilter::from_wire(1, Some("orders"), 1, None, None, 1, 1).expect("filter");
    assert_eq!(hits(&f), 2, "ANY: exact name, both types");
    let f = AclFilter::from_wire(2, None, 4, None, None, 1, 1).expect("filter");
    assert_eq!(hits(&f), 1, "PREFIXED only");
    let f = AclFilter::from_wire(1, None, 1, Some("User:b"), None, 4, 2).expect("filter");
    assert_eq!(hits(&f), 1);
    assert!(AclFilter::from_wire(9, None, 1, None, None, 1, 1).is_err());
}

#[test]
fn any_resource_of_a_type() {
    let allow = b(Topic, "t", Literal, "User:p", O::Write, Allow);
    assert!(authorize_any(
        std::slice::from_ref(&allow),
        "User:p",
        "h",
        O::Write,
        Topic
    ));
    assert!(!authorize_any(
        std::slice::from_ref(&allow),
        "User:q",
        "h",
        O::Write,
        Topic
    ));
    let deny_all = b(Topic, "*", Literal, "User:p", O::Write, Deny);
    assert!(!authorize_any(
        &[allow.clone(), deny_all],
        "User:p",
        "h",
        O::Write,
        Topic
    ));
    let deny_other = b(Topic, "u", Literal, "User:p", O::Write, Deny);
    assert!(authorize_any(
        &[allow.clone(), deny_other],
        "User:p",
        "h",
        O::Write,
        Topic
    ));
    let pre = b(Topic, "logs.", Prefixed, "User:p", O::Write, Allow);
    let deny_pre = b(Topic, "logs", Prefixed, "User:p", O::Write, Deny);
    assert!(!authorize_any(
        &[pre, deny_pre],
        "User:p",
        "h",
        O::Write,
        Topic
    ));
}
