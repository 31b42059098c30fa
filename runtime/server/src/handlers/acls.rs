//! CreateAcls, DescribeAcls, DeleteAcls: managing the Kafka ACLs in the
//! shared store. They need ALTER (create, delete) or DESCRIBE (describe)
//! on the cluster; with `--authorizer off` they answer SECURITY_DISABLED,
//! as Kafka does without an authorizer.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use vigil_auth::acl::{AclBinding, AclFilter, Operation};

use super::msg;
use crate::broker::Broker;
use crate::connection::ConnInfo;

/// `Err((code, message))` unless ACLs are on and the principal may `op`
/// the cluster.
fn allowed(b: &Broker, conn: &ConnInfo, op: Operation) -> Result<(), (i16, Option<StrBytes>)> {
    if !b.security.authz.enabled() {
        return Err((
            ResponseError::SecurityDisabled.code(),
            msg("no authorizer: start the broker with --authorizer on"),
        ));
    }
    if !super::authz::check(b, conn).cluster(op) {
        return Err((
            ResponseError::ClusterAuthorizationFailed.code(),
            msg(format!(
                "{} may not {} ACLs (needs {} on the cluster)",
                conn.principal,
                if op == Operation::Describe {
                    "describe"
                } else {
                    "change"
                },
                op.name()
            )),
        ));
    }
    Ok(())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) async fn create(
    b: &Arc<Broker>,
    r: CreateAclsRequest,
    conn: &ConnInfo,
) -> CreateAclsResponse {
    let mut results: Vec<AclCreationResult> = Vec::with_capacity(r.creations.len());
    if let Err((code, message)) = allowed(b, conn, Operation::Alter) {
        results.resize(
            r.creations.len(),
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(message),
        );
        return CreateAclsResponse::default().with_results(results);
    }
    // Each creation's result, in request order; valid ones are written in
    // one batch and share its outcome.
    let mut valid: Vec<(usize, AclBinding)> = Vec::new();
    for (i, c) in r.creations.iter().enumerate() {
        match AclBinding::from_wire(
            c.resource_type,
            &c.resource_name,
            c.resource_pattern_type,
            &c.principal,
            &c.host,
            c.operation,
            c.permission_type,
        ) {
            Ok(binding) => {
                valid.push((i, binding));
                // Kafka answers a null message on success.
                results.push(AclCreationResult::default().with_error_message(None));
            }
            Err(e) => results.push(
                AclCreationResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(msg(e.to_string())),
            ),
        }
    }
    if !valid.is_empty() {
        let bindings: Vec<AclBinding> = valid.iter().map(|(_, b)| b.clone()).collect();
        match b.security.authz.acls.create(bindings).await {
            Ok(()) => {
                for (_, binding) in &valid {
                    tracing::info!(by = %conn.principal, ?binding, "ACL created");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot store ACLs");
                for (i, _) in &valid {
                    results[*i] = AclCreationResult::default()
                        .with_error_code(e.source.code().code())
                        .with_error_message(msg(e.to_string()));
                }
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

/// The filter of a DescribeAclsRequest or a DeleteAclsFilter (the same
/// fields in two generated types).
macro_rules! filter_of {
    ($f:expr) => {
        AclFilter::from_wire(
            $f.resource_type_filter,
            $f.resource_name_filter.as_deref(),
            $f.pattern_type_filter,
            $f.principal_filter.as_deref(),
            $f.host_filter.as_deref(),
            $f.operation,
            $f.permission_type,
        )
        .map_err(|e| (ResponseError::InvalidRequest.code(), msg(e.to_string())))
    };
}

pub(super) fn describe(
    b: &Arc<Broker>,
    r: DescribeAclsRequest,
    conn: &ConnInfo,
) -> DescribeAclsResponse {
    let filter = allowed(b, conn, Operation::Describe).and_then(|()| filter_of!(r));
    let filter = match filter {
        Ok(f) => f,
        Err((code, message)) => {
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(message)
        }
    };
    // One entry per resource pattern, its bindings under it.
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for a in b.security.authz.acls.describe(&filter) {
        by_resource
            .entry((
                a.resource_type.code(),
                a.resource_name.clone(),
                a.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(&a.principal))
                    .with_host(s(&a.host))
                    .with_operation(a.operation.code())
                    .with_permission_type(a.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((ty, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(ty)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pattern)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default()
        .with_error_message(None)
        .with_resources(resources)
}

pub(super) async fn delete(
    b: &Arc<Broker>,
    r: DeleteAclsRequest,
    conn: &ConnInfo,
) -> DeleteAclsResponse {
    let failed = |code: i16, message: Option<StrBytes>| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message)
    };
    if let Err((code, message)) = allowed(b, conn, Operation::Alter) {
        let results = r
            .filters
            .iter()
            .map(|_| failed(code, message.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    // Invalid filters fail alone; the valid ones are applied together.
    let parsed: Vec<Result<AclFilter, (i16, Option<StrBytes>)>> =
        r.filters.iter().map(|f| filter_of!(f)).collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let deleted = b.security.authz.acls.delete(&valid).await;
    let mut deleted = match deleted {
        Ok(d) => d.into_iter(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot delete ACLs");
            let code = e.source.code().code();
            let results = parsed
                .into_iter()
                .map(|p| match p {
                    Ok(_) => failed(code, msg(e.to_string())),
                    Err((code, message)) => failed(code, message),
                })
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err((code, message)) => failed(code, message),
            Ok(_) => {
                let matched = deleted.next().unwrap_or_default();
                for binding in &matched {
                    tracing::info!(by = %conn.principal, ?binding, "ACL deleted");
                }
                DeleteAclsFilterResult::default()
                    .with_error_message(None)
                    .with_matching_acls(
                        matched
                            .into_iter()
                            .map(|a| {
                                DeleteAclsMatchingAcl::default()
                                    .with_error_message(None)
                                    .with_resource_type(a.resource_type.code())
                                    .with_resource_name(StrBytes::from_string(a.resource_name))
                                    .with_pattern_type(a.pattern_type.code())
                                    .with_principal(StrBytes::from_string(a.principal))
                                    .with_host(StrBytes::from_string(a.host))
                                    .with_operation(a.operation.code())
                                    .with_permission_type(a.permission.code())
                            })
                            .collect(),
                    )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
