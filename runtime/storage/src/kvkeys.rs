//! Every key of the log's durable key/value state is built and parsed here,
//! so the layout is visible in one place (object keys live in `paths`).
//! The formats are persisted: changing one orphans data written before.
//!
//! ```text
//! cluster/id                                   the cluster id (a UUID string)
//! offsets/["<group>","<topic>",<partition>]    a consumer group's committed offset
//!                                              (JSON array: group ids may hold any character)
//! detectors/deployment/<name>                  a detector deployment's spec and life-cycle state
//! detectors/checkpoint/<name>/<topic>/<p>      committed progress of one input partition
//! security/scram/["<user>","<mechanism>"]      a user's salted SCRAM credential (JSON array:
//!                                              user names may hold any character)
//! security/acl/[<type>,"<name>",<pattern>,"<principal>","<host>",<op>,<perm>]
//!                                              one Kafka ACL binding (wire codes; value "")
//! ```

const CLUSTER_ID: &str = "cluster/id";
const GROUP_OFFSET_PREFIX: &str = "offsets/";
const DEPLOYMENT_PREFIX: &str = "detectors/deployment/";
const CHECKPOINT_PREFIX: &str = "detectors/checkpoint/";
const SCRAM_PREFIX: &str = "security/scram/";
const ACL_PREFIX: &str = "security/acl/";

/// Key of the cluster id.
pub fn cluster_id() -> &'static str {
    CLUSTER_ID
}

/// Key of a consumer group's committed offset for one partition.
pub fn group_offset(group: &str, topic: &str, partition: i32) -> String {
    let id = serde_json::json!([group, topic, partition]);
    format!("{GROUP_OFFSET_PREFIX}{id}")
}

/// Prefix of every group offset key (for a range scan).
pub fn group_offset_prefix() -> &'static str {
    GROUP_OFFSET_PREFIX
}

/// `(group, topic, partition)` of a group offset key, if it is one.
pub fn parse_group_offset(key: &str) -> Option<(String, String, i32)> {
    serde_json::from_str(key.strip_prefix(GROUP_OFFSET_PREFIX)?).ok()
}

/// Key of a deployment's spec and state.
pub fn deployment(name: &str) -> String {
    format!("{DEPLOYMENT_PREFIX}{name}")
}

/// Prefix of every deployment key.
pub fn deployments_prefix() -> &'static str {
    DEPLOYMENT_PREFIX
}

/// Prefix of every checkpoint key of every deployment.
pub fn checkpoints_prefix() -> &'static str {
    CHECKPOINT_PREFIX
}

/// Deployment name of a deployment key, if it is one.
pub fn parse_deployment(key: &str) -> Option<&str> {
    key.strip_prefix(DEPLOYMENT_PREFIX)
}

/// Key of one input partition's checkpoint of a deployment.
pub fn checkpoint(name: &str, topic: &str, partition: i32) -> String {
    format!("{CHECKPOINT_PREFIX}{name}/{topic}/{partition}")
}

/// Prefix of every checkpoint key of a deployment.
pub fn checkpoint_prefix(name: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{name}/")
}

/// Whether `key` is a checkpoint key of some deployment.
pub fn is_checkpoint(key: &str) -> bool {
    key.starts_with(CHECKPOINT_PREFIX)
}

/// The `"topic/partition"` part of a checkpoint key of deployment `name`,
/// if the key is one of its checkpoints.
pub fn checkpoint_input<'a>(name: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(CHECKPOINT_PREFIX)?
        .strip_prefix(name)?
        .strip_prefix('/')
}

/// Key of a user's SCRAM credential for one mechanism (`SCRAM-SHA-256`,
/// `SCRAM-SHA-512`).
pub fn scram_credential(user: &str, mechanism: &str) -> String {
    let id = serde_json::json!([user, mechanism]);
    format!("{SCRAM_PREFIX}{id}")
}

/// Prefix of every SCRAM credential key (for a scan).
pub fn scram_credential_prefix() -> &'static str {
    SCRAM_PREFIX
}

/// `(user, mechanism)` of a SCRAM credential key, if it is one.
pub fn parse_scram_credential(key: &str) -> Option<(String, String)> {
    serde_json::from_str(key.strip_prefix(SCRAM_PREFIX)?).ok()
}

/// Key of one ACL binding, from its wire codes: the binding is the key
/// (a JSON array), so creating an existing binding again is a no-op.
pub fn acl(
    resource_type: i8,
    resource_name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> String {
    let id = serde_json::json!([
        resource_type,
        resource_name,
        pattern_type,
        principal,
        host,
        operation,
        permission
    ]);
    format!("{ACL_PREFIX}{id}")
}

/// The wire codes and names of an ACL key, in [`acl`]'s order, if it is one.
pub type AclKey = (i8, String, i8, String, String, i8, i8);

/// Prefix of every ACL key (for a scan).
pub fn acl_prefix() -> &'static str {
    ACL_PREFIX
}

/// The fields of an ACL key, if it is one.
pub fn parse_acl(key: &str) -> Option<AclKey> {
    serde_json::from_str(key.strip_prefix(ACL_PREFIX)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_the_persisted_ones() {
        assert_eq!(cluster_id(), "cluster/id");
        assert_eq!(group_offset("g", "t", 3), r#"offsets/["g","t",3]"#);
        assert_eq!(deployment("d1"), "detectors/deployment/d1");
        assert_eq!(checkpoint("d1", "t.x", 2), "detectors/checkpoint/d1/t.x/2");
        assert_eq!(checkpoint_prefix("d1"), "detectors/checkpoint/d1/");
        assert_eq!(
            scram_credential("alice", "SCRAM-SHA-512"),
            r#"security/scram/["alice","SCRAM-SHA-512"]"#
        );
        assert_eq!(
            acl(2, "t", 3, "User:a", "*", 3, 3),
            r#"security/acl/[2,"t",3,"User:a","*",3,3]"#
        );
    }

    #[test]
    fn builders_and_parsers_round_trip() {
        let k = group_offset("we/ird \"group\"", "t.1", 7);
        assert_eq!(
            parse_group_offset(&k),
            Some(("we/ird \"group\"".into(), "t.1".into(), 7))
        );
        assert_eq!(parse_group_offset("offsets/[1]"), None);
        assert_eq!(parse_group_offset("cluster/id"), None);
        assert_eq!(parse_deployment(&deployment("a.b")), Some("a.b"));
        assert_eq!(parse_deployment(&checkpoint("a", "t", 0)), None);
        let c = checkpoint("d", "in", 4);
        assert!(is_checkpoint(&c));
        assert!(!is_checkpoint(&deployment("d")));
        assert_eq!(checkpoint_input("d", &c), Some("in/4"));
        // A deployment whose name is a prefix of another's does not claim it.
        assert_eq!(checkpoint_input("d", &checkpoint("dd", "in", 4)), None);
        let k = scram_credential("we\"ird/user", "SCRAM-SHA-256");
        assert!(k.starts_with(scram_credential_prefix()));
        assert_eq!(
            parse_scram_credential(&k),
            Some(("we\"ird/user".into(), "SCRAM-SHA-256".into()))
        );
        assert_eq!(parse_scram_credential(&group_offset("g", "t", 0)), None);
        let k = acl(4, "kafka-cluster", 3, "User:we\"ird", "10.0.0.1", 7, 2);
        assert!(k.starts_with(acl_prefix()));
        assert_eq!(
            parse_acl(&k),
            Some((
                4,
                "kafka-cluster".into(),
                3,
                "User:we\"ird".into(),
                "10.0.0.1".into(),
                7,
                2
            ))
        );
        assert_eq!(parse_acl(&scram_credential("u", "m")), None);
    }
}
