//! Kafka ACLs, the model and the decision, without I/O: resource patterns
//! (literal, prefixed, the `*` wildcard), principals `User:NAME`, host
//! filters, allow and deny, and the operations a grant implies, as Kafka's
//! `AclAuthorizer` / `StandardAuthorizer` decide them.
//!
//! The numeric codes are the wire codes of the Kafka protocol
//! (`AclOperation`, `ResourceType`, `PatternType`, `AclPermissionType`), so
//! bindings read from a request and written to the store keep one meaning.

use serde::{Deserialize, Serialize};

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The wildcard: as a literal resource name it matches every resource of
/// its type; as a principal or host, every principal or host.
pub const WILDCARD: &str = "*";

/// Resource types (Kafka's `ResourceType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (named [`CLUSTER_NAME`]).
    Cluster,
    /// A transactional id.
    TransactionalId,
}

impl ResourceType {
    /// Every concrete type.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    /// The type of a wire code, if it is a concrete type vigil serves.
    pub fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Kafka's name (`TOPIC`, ...), for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
        }
    }
}

/// How a binding's resource name matches (Kafka's `PatternType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself (or every name, for `*`).
    Literal,
    /// Every name starting with it.
    Prefixed,
}

impl PatternType {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    /// The pattern type of a wire code, if concrete.
    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

/// Operations (Kafka's `AclOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Every operation.
    All,
    /// Read (fetch, join a group, commit offsets).
    Read,
    /// Write (produce).
    Write,
    /// Create topics.
    Create,
    /// Delete topics, groups, records.
    Delete,
    /// Alter (partitions, ACLs on the cluster).
    Alter,
    /// Describe (metadata, offsets, groups, ACLs on the cluster).
    Describe,
    /// Inter-broker actions.
    ClusterAction,
    /// Read configs.
    DescribeConfigs,
    /// Change configs.
    AlterConfigs,
    /// Idempotent produce.
    IdempotentWrite,
    /// Create delegation tokens.
    CreateTokens,
    /// Describe delegation tokens.
    DescribeTokens,
}

impl Operation {
    const CODES: [(Operation, i8, &'static str); 13] = [
        (Operation::All, 2, "ALL"),
        (Operation::Read, 3, "READ"),
        (Operation::Write, 4, "WRITE"),
        (Operation::Create, 5, "CREATE"),
        (Operation::Delete, 6, "DELETE"),
        (Operation::Alter, 7, "ALTER"),
        (Operation::Describe, 8, "DESCRIBE"),
        (Operation::ClusterAction, 9, "CLUSTER_ACTION"),
        (Operation::DescribeConfigs, 10, "DESCRIBE_CONFIGS"),
        (Operation::AlterConfigs, 11, "ALTER_CONFIGS"),
        (Operation::IdempotentWrite, 12, "IDEMPOTENT_WRITE"),
        (Operation::CreateTokens, 13, "CREATE_TOKENS"),
        (Operation::DescribeTokens, 14, "DESCRIBE_TOKENS"),
    ];

    /// The wire code.
    pub fn code(self) -> i8 {
        Operation::CODES
            .iter()
            .find(|(o, _, _)| *o == self)
            .map_or(0, |&(_, c, _)| c)
    }

    /// The operation of a wire code, if concrete (not ANY/UNKNOWN).
    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::CODES
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|&(o, _, _)| o)
    }

    /// Kafka's name (`READ`, ...), for logs, metrics and messages.
    pub fn name(self) -> &'static str {
        Operation::CODES
            .iter()
            .find(|(o, _, _)| *o == self)
            .map_or("UNKNOWN", |&(_, _, n)| n)
    }

    /// Whether an allow binding for `self` grants `wanted`: ALL grants
    /// everything; READ, WRITE, DELETE and ALTER imply DESCRIBE;
    /// ALTER_CONFIGS implies DESCRIBE_CONFIGS (Kafka's implied operations).
    pub fn grants(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }

    /// Whether a deny binding for `self` denies `wanted` (no implication:
    /// denying READ does not deny DESCRIBE).
    pub fn denies(self, wanted: Operation) -> bool {
        self == wanted || self == Operation::All
    }
}

/// Allow or deny (Kafka's `AclPermissionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Deny: wins over any allow.
    Deny,
    /// Allow.
    Allow,
}

impl Permission {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    /// The permission of a wire code, if concrete.
    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL: who may (or may not) do what, from where, on which resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource name, or prefix, or `*`.
    pub resource_name: String,
    /// How the name matches.
    pub pattern_type: PatternType,
    /// `User:NAME` or `User:*`.
    pub principal: String,
    /// Client IP address, or `*`.
    pub host: String,
    /// Operation.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: Permission,
}

/// Why a binding cannot be created; the request has to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A code or name the protocol does not allow in a binding.
    #[error("invalid ACL binding: {0}")]
    Invalid(String),
}

impl AclBinding {
    /// A binding from the wire codes of a CreateAcls entry, checked as
    /// Kafka checks them: concrete type, pattern, operation and permission;
    /// a `Type:name` principal; the cluster resource named `kafka-cluster`;
    /// no empty names.
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, AclError> {
        let bad = |s: String| Err(AclError::Invalid(s));
        let Some(resource_type) = ResourceType::from_code(resource_type) else {
            return bad(format!(
                "resource type {resource_type} is not TOPIC (2), GROUP (3), CLUSTER (4) or TRANSACTIONAL_ID (5)"
            ));
        };
        let Some(pattern_type) = PatternType::from_code(pattern_type) else {
            return bad(format!(
                "pattern type {pattern_type} is not LITERAL (3) or PREFIXED (4)"
            ));
        };
        let Some(operation) = Operation::from_code(operation) else {
            return bad(format!("operation {operation} is not a concrete operation"));
        };
        let Some(permission) = Permission::from_code(permission) else {
            return bad(format!(
                "permission {permission} is not DENY (2) or ALLOW (3)"
            ));
        };
        if resource_name.is_empty() {
            return bad("empty resource name".into());
        }
        if resource_type == ResourceType::Cluster
            && (resource_name != CLUSTER_NAME || pattern_type != PatternType::Literal)
        {
            return bad(format!(
                "the cluster resource is the literal {CLUSTER_NAME:?}, not {resource_name:?}"
            ));
        }
        if pattern_type == PatternType::Prefixed && resource_name == WILDCARD {
            return bad("a prefixed pattern cannot be the wildcard `*`".into());
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return bad(format!("principal {principal:?} is not `Type:name`")),
        }
        if host.is_empty() {
            return bad("empty host (use `*` for any host)".into());
        }
        Ok(AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }

    /// Whether the binding's pattern covers resource `name` of `ty`.
    pub fn covers(&self, ty: ResourceType, name: &str) -> bool {
        self.resource_type == ty
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    /// Whether the binding applies to `principal` connecting from `host`.
    pub fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls / DeleteAcls filter: every field `None` (or ANY) matches
/// anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type, `None` for ANY.
    pub resource_type: Option<ResourceType>,
    /// Resource name, `None` for any.
    pub resource_name: Option<String>,
    /// Pattern matching of the filter.
    pub pattern: PatternFilter,
    /// Principal, `None` for any.
    pub principal: Option<String>,
    /// Host, `None` for any.
    pub host: Option<String>,
    /// Operation, `None` for ANY.
    pub operation: Option<Operation>,
    /// Permission, `None` for ANY.
    pub permission: Option<Permission>,
}

/// The pattern type of a filter (Kafka's `PatternType` as a filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type, the name compared exactly.
    #[default]
    Any,
    /// Every binding that would apply to a resource of the filter's name:
    /// the literal name, the `*` literal, and prefixes of it.
    Match,
    /// Exactly this pattern type.
    Exact(PatternType),
}

impl AclFilter {
    /// A filter from the wire codes of a DescribeAcls / DeleteAcls filter;
    /// `Err` names the code that is neither ANY nor concrete.
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, AclError> {
        const ANY: i8 = 1;
        let bad = |s: String| Err(AclError::Invalid(s));
        let resource_type = match resource_type {
            ANY => None,
            c => match ResourceType::from_code(c) {
                Some(t) => Some(t),
                None => return bad(format!("resource type filter {c}")),
            },
        };
        let pattern = match pattern_type {
            ANY => PatternFilter::Any,
            2 => PatternFilter::Match,
            c => match PatternType::from_code(c) {
                Some(p) => PatternFilter::Exact(p),
                None => return bad(format!("pattern type filter {c}")),
            },
        };
        let operation = match operation {
            ANY => None,
            c => match Operation::from_code(c) {
                Some(o) => Some(o),
                None => return bad(format!("operation filter {c}")),
            },
        };
        let permission = match permission {
            ANY => None,
            c => match Permission::from_code(c) {
                Some(p) => Some(p),
                None => return bad(format!("permission filter {c}")),
            },
        };
        Ok(AclFilter {
            resource_type,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation,
            permission,
        })
    }

    /// Whether `b` passes the filter.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.pattern, &self.resource_name) {
            (PatternFilter::Match, Some(n)) => self.resource_type.map_or_else(
                || ResourceType::ALL.into_iter().any(|t| b.covers(t, n)),
                |t| b.covers(t, n),
            ),
            (PatternFilter::Exact(p), n) => {
                b.pattern_type == *p && n.as_ref().is_none_or(|n| *n == b.resource_name)
            }
            (_, n) => n.as_ref().is_none_or(|n| *n == b.resource_name),
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// Whether `principal` from `host` may do `op` on resource `name` of `ty`,
/// given every binding: a matching deny wins; otherwise a matching allow
/// (for `op` or an operation implying it) grants; no match denies (Kafka's
/// `allow.everyone.if.no.acl.found=false`). Super users are the caller's
/// business.
pub fn authorize<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    host: &str,
    op: Operation,
    ty: ResourceType,
    name: &str,
) -> bool {
    let mut allowed = false;
    for b in bindings {
        if !b.covers(ty, name) || !b.applies_to(principal, host) {
            continue;
        }
        match b.permission {
            Permission::Deny if b.operation.denies(op) => return false,
            Permission::Allow if b.operation.grants(op) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Whether `principal` from `host` may do `op` on *some* resource of `ty`
/// (Kafka's `authorizeByResourceType`, used for idempotent produce without
/// IDEMPOTENT_WRITE): some allow binding grants it on a pattern that no
/// deny binding of the principal covers whole (a wildcard deny, or a
/// deny prefix of the allowed name or prefix).
pub fn authorize_any(
    bindings: &[AclBinding],
    principal: &str,
    host: &str,
    op: Operation,
    ty: ResourceType,
) -> bool {
    let denies: Vec<&AclBinding> = bindings
        .iter()
        .filter(|b| {
            b.resource_type == ty
                && b.permission == Permission::Deny
                && b.operation.denies(op)
                && b.applies_to(principal, host)
        })
        .collect();
    bindings.iter().any(|a| {
        a.resource_type == ty
            && a.permission == Permission::Allow
            && a.operation.grants(op)
            && a.applies_to(principal, host)
            && !denies.iter().any(|d| match d.pattern_type {
                PatternType::Literal => {
                    d.resource_name == WILDCARD
                        || (a.pattern_type == PatternType::Literal
                            && d.resource_name == a.resource_name)
                }
                PatternType::Prefixed => a.resource_name.starts_with(&d.resource_name),
            })
    })
}

#[cfg(test)]
mod tests;
