//! AlterUserScramCredentials and DescribeUserScramCredentials: SCRAM users
//! through the Kafka admin API (what `kafka-configs --alter --add-config
//! SCRAM-SHA-512=...` and `vigil user` send). Upsertions carry a salt and
//! a salted password, never the password; the broker keeps only the keys
//! derived from them (see `security::credentials`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use vigil_auth::{Credential, Mechanism};

use super::msg;
use crate::broker::Broker;
use crate::security::CredentialError;

type Change = (String, Mechanism, Option<Credential>);
/// An upsertion's mechanism code, iterations, salt and salted password.
type Upsert<'a> = (i8, i32, &'a [u8], &'a [u8]);
/// One user's upsertions and deleted mechanism codes.
type UserOps<'a> = (Vec<Upsert<'a>>, Vec<i8>);

/// One user's changes, or why they are refused.
fn user_changes(
    b: &Broker,
    user: &str,
    upserts: &[Upsert<'_>],
    deletes: &[i8],
) -> Result<Vec<Change>, (ResponseError, String)> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "empty user name".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mechanism = |code: i8| {
        Mechanism::from_kafka_code(code).ok_or_else(|| {
            (
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {code}"),
            )
        })
    };
    for &code in deletes {
        let m = mechanism(code)?;
        if !seen.insert(m) {
            return Err((
                ResponseError::DuplicateResource,
                format!("{} given twice", m.name()),
            ));
        }
        if b.security.credentials.get(user, m).is_none() {
            return Err((
                ResponseError::ResourceNotFound,
                format!("user {user:?} has no {} credential", m.name()),
            ));
        }
        out.push((user.to_string(), m, None));
    }
    for &(code, iterations, salt, salted) in upserts {
        let m = mechanism(code)?;
        if !seen.insert(m) {
            return Err((
                ResponseError::DuplicateResource,
                format!("{} given twice", m.name()),
            ));
        }
        let iterations = u32::try_from(iterations).unwrap_or(0);
        let cred = Credential::from_salted_password(m, salt.to_vec(), salted, iterations)
            .map_err(|e| (ResponseError::UnacceptableCredential, e.to_string()))?;
        out.push((user.to_string(), m, Some(cred)));
    }
    Ok(out)
}

fn result(user: &str, error: Option<(ResponseError, String)>) -> AlterUserScramCredentialsResult {
    let r =
        AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.into()));
    match error {
        None => r,
        Some((code, message)) => r
            .with_error_code(code.code())
            .with_error_message(msg(message)),
    }
}

pub(super) async fn alter(
    b: &Arc<Broker>,
    r: AlterUserScramCredentialsRequest,
    principal: &str,
) -> AlterUserScramCredentialsResponse {
    let mut users: BTreeMap<String, UserOps<'_>> = BTreeMap::new();
    for u in &r.upsertions {
        users.entry(u.name.to_string()).or_default().0.push((
            u.mechanism,
            u.iterations,
            &u.salt,
            &u.salted_password,
        ));
    }
    for d in &r.deletions {
        users
            .entry(d.name.to_string())
            .or_default()
            .1
            .push(d.mechanism);
    }
    let allowed = b.security.may_manage_users(principal);
    let mut results = Vec::new();
    let mut changes = Vec::new();
    let mut applied = Vec::new();
    for (user, (upserts, deletes)) in &users {
        if !allowed {
            let why = format!("{principal} may not alter SCRAM credentials (super users only)");
            results.push(result(
                user,
                Some((ResponseError::ClusterAuthorizationFailed, why)),
            ));
            continue;
        }
        match user_changes(b, user, upserts, deletes) {
            Ok(c) => {
                changes.extend(c);
                applied.push(user.clone());
            }
            Err(e) => results.push(result(user, Some(e))),
        }
    }
    let stored = if changes.is_empty() {
        Ok(())
    } else {
        b.security.credentials.apply(changes).await
    };
    for user in applied {
        let error = match &stored {
            Ok(()) => None,
            Err(CredentialError::Storage { source, .. }) => {
                Some((source.code(), source.to_string()))
            }
            Err(e) => Some((ResponseError::UnacceptableCredential, e.to_string())),
        };
        if error.is_none() {
            tracing::info!(%user, by = %principal, "SCRAM credentials changed");
        }
        results.push(result(&user, error));
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

pub(super) fn describe(
    b: &Arc<Broker>,
    r: DescribeUserScramCredentialsRequest,
    principal: &str,
) -> DescribeUserScramCredentialsResponse {
    if !b.security.may_manage_users(principal) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(msg(format!(
                "{principal} may not describe SCRAM credentials (super users only)"
            )));
    }
    let asked: Option<Vec<String>> = r
        .users
        .as_ref()
        .map(|u| u.iter().map(|n| n.name.to_string()).collect());
    let found = b.security.credentials.describe(asked.as_deref());
    let info = |creds: &Vec<(Mechanism, u32)>| {
        creds
            .iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(m.kafka_code())
                    .with_iterations(i32::try_from(*i).unwrap_or(i32::MAX))
            })
            .collect::<Vec<_>>()
    };
    let results = match asked {
        None => found
            .iter()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(info(creds))
            })
            .collect(),
        Some(names) => {
            let mut seen = HashSet::new();
            names
                .into_iter()
                .map(|user| {
                    let r = DescribeUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user.clone()));
                    if !seen.insert(user.clone()) {
                        return r
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(msg("user named twice"));
                    }
                    match found.get(&user) {
                        Some(creds) => r.with_credential_infos(info(creds)),
                        None => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(msg(format!("no SCRAM credentials for {user:?}"))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
