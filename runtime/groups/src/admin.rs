//! ListGroups and DescribeGroups.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::state::{Group, GroupState};
use super::GroupCoordinator;

/// Every group here speaks the classic protocol (KIP-848 "consumer" groups are not supported).
const GROUP_TYPE: &str = "classic";

/// Kafka's bit set of the operations allowed on a group (READ, DELETE, DESCRIBE); without
/// ACLs every client may do all of them.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn describe(
    group_id: &GroupId,
    group: Option<&Group>,
    version: i16,
    include_ops: bool,
) -> DescribedGroup {
    let mut described = DescribedGroup::default().with_group_id(group_id.clone());
    if version >= 3 && include_ops {
        described.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
    }
    let Some(group) = group.filter(|g| g.state != GroupState::Dead) else {
        // Kafka describes unknown groups as Dead rather than failing.
        return described.with_group_state(StrBytes::from_static_str("Dead"));
    };
    // Like Kafka, only a stable group exposes its protocol and member metadata/assignments:
    // in any other state they are in flux.
    let stable = group.state == GroupState::Stable;
    let protocol = if stable {
        group.protocol.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let members = group
        .members
        .values()
        .map(|m| {
            let mut member = DescribedGroupMember::default()
                .with_member_id(StrBytes::from_string(m.id.clone()))
                .with_client_id(StrBytes::from_string(m.client_id.clone()))
                .with_client_host(StrBytes::from_string(m.client_host.clone()));
            if version >= 4 {
                member.group_instance_id = m.instance_id.clone().map(StrBytes::from_string);
            }
            if stable {
                member.member_metadata = m.metadata_for(&protocol);
                member.member_assignment = m.assignment.clone();
            }
            member
        })
        .collect();
    described
        .with_group_state(StrBytes::from_static_str(group.state.kafka_name()))
        .with_protocol_type(StrBytes::from_string(
            group.protocol_type.clone().unwrap_or_default(),
        ))
        .with_protocol_data(StrBytes::from_string(protocol))
        .with_members(members)
}

impl GroupCoordinator {
    /// ListGroups: every live group, filtered by state (v4+) and type (v5).
    pub fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            req.states_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            req.types_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
            return ListGroupsResponse::default();
        }
        let mut groups = Vec::new();
        for (group_id, group) in self.all_groups() {
            let group = group.lock();
            if group.state == GroupState::Dead {
                continue;
            }
            let state = group.state.kafka_name();
            if !states.is_empty() && !states.iter().any(|s| *s == state.to_lowercase()) {
                continue;
            }
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group_id)))
                .with_protocol_type(StrBytes::from_string(
                    group.protocol_type.clone().unwrap_or_default(),
                ));
            if version >= 4 {
                listed.group_state = StrBytes::from_static_str(state);
            }
            if version >= 5 {
                listed.group_type = StrBytes::from_static_str(GROUP_TYPE);
            }
            groups.push(listed);
        }
        ListGroupsResponse::default().with_groups(groups)
    }

    /// DescribeGroups: unknown groups are reported as "Dead" with no error, as Kafka does.
    pub fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let groups = req
            .groups
            .iter()
            .map(|group_id| {
                let group = self.get_group(group_id.as_str());
                let guard = group.as_ref().map(|g| g.lock());
                describe(
                    group_id,
                    guard.as_deref(),
                    version,
                    req.include_authorized_operations,
                )
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }
}
