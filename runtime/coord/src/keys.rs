//! Every coordinator key is built and parsed here, so the layout is visible
//! in one place. The same logical keys serve both backends: etcd stores them
//! as they are; the object store backend keeps each key as a directory of
//! numbered versions under `coord/` (see [`crate::store`]).
//!
//! ```text
//! <root>/members/<node-id:010>                   a live node (bound to its session)
//! <root>/leaders/epoch/<topic-len>/<topic>/<p:05> the partition's last leader epoch (etcd)
//! <root>/leaders/holder/<topic-len>/<topic>/<p:05> its current leader (etcd: bound to the leader's session)
//! <root>/leaders/<topic-len>/<topic>/<p:05>       its leader record (object store: one version per epoch)
//! <root>/sessions/<session>                       a session's heartbeat (object store only)
//! <root>/meta/<user key>                          cluster metadata (topic ids, assignments, ...)
//! ```
//!
//! Topic names may contain `.`, `_`, `-`: they are prefixed with their
//! length so that no topic's prefix scan picks up another topic.

use crate::types::TopicPartition;

const MEMBERS: &str = "members/";
const LEADER_EPOCH: &str = "leaders/epoch/";
const LEADER_HOLDER: &str = "leaders/holder/";
const LEADER: &str = "leaders/record/";
const SESSIONS: &str = "sessions/";
const META: &str = "meta/";

/// Builds keys under one cluster root (`/vigil/<cluster>/` in etcd, the
/// `coord/` directory in the object store), so several clusters can share an
/// etcd.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Keys under `root` (a trailing `/` is added when missing).
    pub fn new(root: &str) -> Keys {
        let mut root = root.to_string();
        if !root.ends_with('/') {
            root.push('/');
        }
        Keys { root }
    }

    /// The root every key starts with.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Prefix of every member key.
    pub fn members(&self) -> String {
        format!("{}{MEMBERS}", self.root)
    }

    /// Key of node `id`'s membership.
    pub fn member(&self, id: i32) -> String {
        format!("{}{MEMBERS}{id:010}", self.root)
    }

    /// Node id of a member key.
    pub fn parse_member(&self, key: &str) -> Option<i32> {
        key.strip_prefix(&self.members())?.parse().ok()
    }

    fn partition_suffix(tp: &TopicPartition) -> String {
        format!("{}/{}/{:05}", tp.topic.len(), tp.topic, tp.partition)
    }

    fn parse_partition_suffix(rest: &str) -> Option<TopicPartition> {
        let (len, rest) = rest.split_once('/')?;
        let len: usize = len.parse().ok()?;
        let topic = rest.get(..len)?;
        let partition = rest.get(len..)?.strip_prefix('/')?.parse().ok()?;
        Some(TopicPartition::new(topic, partition))
    }

    /// Prefix of every persistent leader-epoch key (etcd).
    pub fn leader_epochs(&self) -> String {
        format!("{}{LEADER_EPOCH}", self.root)
    }

    /// Key of a partition's last leader epoch, never deleted (etcd).
    pub fn leader_epoch(&self, tp: &TopicPartition) -> String {
        format!("{}{LEADER_EPOCH}{}", self.root, Self::partition_suffix(tp))
    }

    /// Prefix of every leader-holder key (etcd).
    pub fn leader_holders(&self) -> String {
        format!("{}{LEADER_HOLDER}", self.root)
    }

    /// Key of a partition's current leader, bound to its session (etcd).
    pub fn leader_holder(&self, tp: &TopicPartition) -> String {
        format!("{}{LEADER_HOLDER}{}", self.root, Self::partition_suffix(tp))
    }

    /// Partition of a leader-holder key.
    pub fn parse_leader_holder(&self, key: &str) -> Option<TopicPartition> {
        Self::parse_partition_suffix(key.strip_prefix(&self.leader_holders())?)
    }

    /// Prefix of every leader record (object store).
    pub fn leaders(&self) -> String {
        format!("{}{LEADER}", self.root)
    }

    /// Key of a partition's leader record (object store).
    pub fn leader(&self, tp: &TopicPartition) -> String {
        format!("{}{LEADER}{}", self.root, Self::partition_suffix(tp))
    }

    /// Partition of a leader record key (object store).
    pub fn parse_leader(&self, key: &str) -> Option<TopicPartition> {
        Self::parse_partition_suffix(key.strip_prefix(&self.leaders())?)
    }

    /// Prefix of every session heartbeat (object store).
    pub fn sessions(&self) -> String {
        format!("{}{SESSIONS}", self.root)
    }

    /// Key of a session's heartbeat (object store).
    pub fn session(&self, session: &str) -> String {
        format!("{}{SESSIONS}{session}", self.root)
    }

    /// Session id of a heartbeat key (object store).
    pub fn parse_session<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.root.as_str())?.strip_prefix(SESSIONS)
    }

    /// Prefix of all cluster metadata.
    pub fn meta_root(&self) -> String {
        format!("{}{META}", self.root)
    }

    /// Full key of metadata key `key` (e.g. `topics/orders`).
    pub fn meta(&self, key: &str) -> String {
        format!("{}{META}{key}", self.root)
    }

    /// User key of a full metadata key.
    pub fn parse_meta<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.root.as_str())?.strip_prefix(META)
    }
}

/// Checks that a user metadata key is usable on both backends: non-empty,
/// no empty, `.` or `..` segment (object store paths reject them), no
/// leading or trailing `/`.
pub fn validate_meta_key(key: &str) -> crate::Result<()> {
    let bad = key.is_empty()
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('~'));
    if bad {
        return Err(crate::CoordError::Invalid {
            what: "metadata key",
            reason: format!(
                "{key:?}: use non-empty '/'-separated segments, none of them '.', '..' or starting with '~'"
            ),
        });
    }
    Ok(())
}

/// Metadata keys, built in one place: the callers (topics, assignments,
/// deployments, ACLs) use these instead of formatting their own.
pub mod meta {
    /// Key of a topic's id and partition count.
    pub fn topic(topic: &str) -> String {
        format!("topics/{topic}")
    }

    /// Prefix of every topic key.
    pub fn topics() -> &'static str {
        "topics/"
    }

    /// Key of the planned assignment of a topic's partitions.
    pub fn assignment(topic: &str) -> String {
        format!("assignments/{topic}")
    }

    /// Key of a detector deployment's spec.
    pub fn deployment(name: &str) -> String {
        format!("deployments/{name}")
    }

    /// Key of an operator's request to move a partition to a node.
    pub fn movement(topic: &str, partition: i32) -> String {
        format!("moves/{topic}/{partition}")
    }

    /// Prefix of every requested move.
    pub fn movements() -> &'static str {
        "moves/"
    }

    /// Key of a consumer group's committed offset of a partition (the
    /// group id hex-encoded: group ids may hold any character).
    pub fn group_offset(group: &str, topic: &str, partition: i32) -> String {
        format!("offsets/g{}/{topic}/{partition}", hex(group))
    }

    /// Parses a key of [`group_offset`] into (group, topic, partition).
    pub fn parse_group_offset(key: &str) -> Option<(String, String, i32)> {
        let rest = key.strip_prefix("offsets/g")?;
        let (hex, rest) = rest.split_once('/')?;
        let (topic, partition) = rest.rsplit_once('/')?;
        Some((unhex(hex)?, topic.to_string(), partition.parse().ok()?))
    }

    /// Prefix of every committed offset.
    pub fn group_offsets() -> &'static str {
        "offsets/"
    }

    /// Key of the cluster id.
    pub fn cluster_id() -> &'static str {
        "cluster/id"
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(hex: &str) -> Option<String> {
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        String::from_utf8(bytes?).ok()
    }

    /// Key of a cluster-wide security entry (an ACL binding, a SCRAM
    /// credential) given its key in a single broker's key/value state,
    /// `security/<kind>/<id>` (vigil-storage `kvkeys`): the same kind, the
    /// id hex-encoded, as ids hold any character (user names, resource
    /// names) and metadata keys may not. `None` for a key of another form.
    /// A kind's prefix (an empty id) gives the prefix of that kind's keys.
    pub fn security(kv_key: &str) -> Option<String> {
        let (kind, id) = kv_key.strip_prefix("security/")?.split_once('/')?;
        if kind.is_empty() {
            return None;
        }
        Some(format!("security/{kind}/{}", hex(id)))
    }

    /// The key/value-state key of a [`security`] key.
    pub fn parse_security(key: &str) -> Option<String> {
        let (kind, id) = key.strip_prefix("security/")?.split_once('/')?;
        Some(format!("security/{kind}/{}", unhex(id)?))
    }

    /// Prefix of every security entry.
    pub fn securities() -> &'static str {
        "security/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_offset_keys_round_trip_any_group_id() {
        for g in ["g", "we/ird ~group", "", "..", "ünï"] {
            let k = meta::group_offset(g, "t.1", 7);
            validate_meta_key(&k).expect("valid key");
            assert_eq!(
                meta::parse_group_offset(&k),
                Some((g.to_string(), "t.1".to_string(), 7))
            );
        }
        assert_eq!(meta::parse_group_offset("offsets/gzz/t/1"), None);
    }

    #[test]
    fn security_keys_round_trip_and_keep_kinds_apart() {
        for kv in [
            r#"security/acl/[2,"t/../x",3,"User:a","*",3,3]"#,
            r#"security/scram/["we\"ird/~user","SCRAM-SHA-256"]"#,
        ] {
            let k = meta::security(kv).expect("a security key");
            validate_meta_key(&k).expect("valid key");
            assert!(k.starts_with(meta::securities()));
            assert_eq!(meta::parse_security(&k).as_deref(), Some(kv));
        }
        let acls = meta::security("security/acl/").expect("prefix");
        assert_eq!(acls, "security/acl/");
        assert!(meta::security(r#"security/acl/[1]"#)
            .expect("key")
            .starts_with(&acls));
        assert_eq!(meta::security("offsets/x"), None);
        assert_eq!(meta::parse_security("security/acl/zz"), None);
    }

    #[test]
    fn partition_keys_round_trip_and_do_not_collide() {
        let k = Keys::new("/vigil/c1");
        let a = TopicPartition::new("a", 1);
        let ab = TopicPartition::new("a/00001", 2);
        assert_eq!(k.parse_leader_holder(&k.leader_holder(&a)), Some(a.clone()));
        assert_eq!(
            k.parse_leader_holder(&k.leader_holder(&ab)),
            Some(ab.clone())
        );
        assert_eq!(k.parse_leader(&k.leader(&ab)), Some(ab));
        assert_eq!(k.parse_member(&k.member(42)), Some(42));
        assert_eq!(k.parse_meta(&k.meta("topics/x")), Some("topics/x"));
        assert!(k.leader_holder(&a).starts_with(&k.leader_holders()));
    }

    #[test]
    fn bad_meta_keys_are_refused() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a/./b", "~x"] {
            assert!(validate_meta_key(bad).is_err(), "{bad:?}");
        }
        validate_meta_key("topics/orders.v2").expect("valid");
    }
}
