//! LeaveGroup: members leaving one by one (v0–2) or in a batch (v3+, also
//! admin tools removing static members by instance id).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::membership::{code, opt_string};
use super::state::{Group, GroupState};
use super::GroupCoordinator;

impl GroupCoordinator {
    /// LeaveGroup (v0–2: one member id; v3+: a batch with per-member errors).
    pub async fn leave_group(
        self: &Arc<Self>,
        req: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id)))
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let (top_error, results) = self.leave_members(req.group_id.as_str(), &leaving);
        if version >= 3 {
            let members = leaving
                .into_iter()
                .zip(results)
                .map(|((member_id, instance_id), error)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(member_id))
                        .with_group_instance_id(instance_id.map(StrBytes::from_string))
                        .with_error_code(code(error))
                })
                .collect();
            LeaveGroupResponse::default()
                .with_error_code(code(top_error))
                .with_members(members)
        } else {
            let error = top_error.or_else(|| results.into_iter().next().flatten());
            LeaveGroupResponse::default().with_error_code(code(error))
        }
    }

    fn leave_members(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> (Option<ResponseError>, Vec<Option<ResponseError>>) {
        let Some(group) = self.get_group(group_id) else {
            let errors = vec![Some(ResponseError::UnknownMemberId); leaving.len()];
            return (None, errors);
        };
        let mut group = group.lock();
        if group.state == GroupState::Dead {
            return (
                Some(ResponseError::CoordinatorNotAvailable),
                vec![None; leaving.len()],
            );
        }
        let results = leaving
            .iter()
            .map(|(member_id, instance_id)| {
                leave_one(&mut group, member_id, instance_id.as_deref())
            })
            .collect();
        (None, results)
    }
}

fn leave_one(
    group: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Option<ResponseError> {
    // Admin tools remove static members by instance id alone.
    let target = match instance_id {
        Some(instance) => match group.static_members.get(instance) {
            Some(current) if member_id.is_empty() || current == member_id => current.clone(),
            Some(_) => return Some(ResponseError::FencedInstanceId),
            None => return Some(ResponseError::UnknownMemberId),
        },
        None => member_id.to_string(),
    };
    if group.take_pending(&target) {
        return None;
    }
    if group.remove_member(&target, "member left the group") {
        None
    } else {
        Some(ResponseError::UnknownMemberId)
    }
}
