//! JoinGroup, SyncGroup and Heartbeat (LeaveGroup is in `leave.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::debug;

use super::state::{Group, GroupState, JoinOutcome, NewMember, SyncOutcome};
use super::GroupCoordinator;

/// Identity of the connection a request arrived on. JoinGroup's body does not carry it (the
/// client id is in the request header, the host comes from the socket), so handlers that
/// have it should call [`GroupCoordinator::join_group_with_client`].
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// `client.id` from the request header.
    pub client_id: String,
    /// Peer address of the connection, as Kafka shows it (e.g. "/127.0.0.1").
    pub client_host: String,
}

enum Decision<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

pub(super) fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

pub(super) fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// Static-membership check shared by SyncGroup/Heartbeat/LeaveGroup: a known instance id that
/// now belongs to a different member id means the caller was replaced.
fn fenced(group: &Group, member_id: &str, instance_id: Option<&str>) -> bool {
    instance_id
        .and_then(|instance| group.static_members.get(instance))
        .is_some_and(|current| current != member_id)
}

impl JoinOutcome {
    fn into_response(self, version: i16) -> JoinGroupResponse {
        let members = self
            .members
            .into_iter()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id))
                    .with_group_instance_id(if version >= 5 {
                        m.instance_id.map(StrBytes::from_string)
                    } else {
                        None
                    })
                    .with_metadata(m.metadata)
            })
            .collect();
        // protocol_name only became nullable in v7; older clients need a (possibly empty)
        // string.
        let protocol_name = if version >= 7 {
            self.protocol_name.map(StrBytes::from_string)
        } else {
            Some(StrBytes::from_string(
                self.protocol_name.unwrap_or_default(),
            ))
        };
        let protocol_type = if version >= 7 {
            self.protocol_type.map(StrBytes::from_string)
        } else {
            None
        };
        JoinGroupResponse::default()
            .with_error_code(code(self.error))
            .with_generation_id(self.generation)
            .with_protocol_type(protocol_type)
            .with_protocol_name(protocol_name)
            .with_leader(StrBytes::from_string(self.leader))
            .with_member_id(StrBytes::from_string(self.member_id))
            .with_members(members)
    }
}

impl GroupCoordinator {
    /// JoinGroup without connection details: the member gets an empty client id/host.
    pub async fn join_group(
        self: &Arc<Self>,
        req: JoinGroupRequest,
        version: i16,
    ) -> JoinGroupResponse {
        self.join_group_with_client(req, version, ClientInfo::default())
            .await
    }

    /// JoinGroup. Resolves when the rebalance this join takes part in completes (or at once
    /// for errors, MEMBER_ID_REQUIRED and rejoins that change nothing).
    pub async fn join_group_with_client(
        self: &Arc<Self>,
        req: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
    ) -> JoinGroupResponse {
        let member_id = req.member_id.to_string();
        let outcome = match self.begin_join(req, version, client) {
            Decision::Now(outcome) => outcome,
            // The sender is dropped only when the member is removed while parked.
            Decision::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| JoinOutcome::error(ResponseError::UnknownMemberId, member_id)),
        };
        outcome.into_response(version)
    }

    fn begin_join(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
    ) -> Decision<JoinOutcome> {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let fail = |error| Decision::Now(JoinOutcome::error(error, req.member_id.to_string()));
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        let session_timeout = Duration::from_millis(req.session_timeout_ms.unsigned_abs().into());
        // v0 has no rebalance timeout; Kafka uses the session timeout for it.
        let rebalance_timeout = if version >= 1 && req.rebalance_timeout_ms > 0 {
            Duration::from_millis(req.rebalance_timeout_ms.unsigned_abs().into())
        } else {
            session_timeout
        };
        let instance_id = if version >= 5 {
            opt_string(&req.group_instance_id)
        } else {
            None
        };
        let protocol_type = req.protocol_type.to_string();
        let protocols: Vec<_> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();

        // Checked before the group is created so a malformed join leaves no empty group behind.
        if protocol_type.is_empty() || protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let group = if member_id.is_empty() {
            self.get_or_create_group(&group_id)
        } else {
            match self.get_group(&group_id) {
                Some(group) => group,
                None => return fail(ResponseError::UnknownMemberId),
            }
        };
        let mut group = group.lock();
        if group.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }

        if member_id.is_empty() {
            if !group.supports_protocols(None, &protocol_type, &protocols) {
                return fail(ResponseError::InconsistentGroupProtocol);
            }
            let new_id = if client.client_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                format!("{}-{}", client.client_id, uuid::Uuid::new_v4())
            };
            let known_static = instance_id
                .as_ref()
                .and_then(|i| group.static_members.get(i))
                .cloned();
            if let Some(old_id) = known_static {
                let new = NewMember {
                    id: new_id,
                    instance_id,
                    client_id: client.client_id,
                    client_host: client.client_host,
                    session_timeout,
                    rebalance_timeout,
                    protocol_type,
                    protocols,
                };
                return rejoin_static(&mut group, &old_id, new);
            }
            // Static members skip the extra round trip: their identity is the instance id.
            if version >= 4 && instance_id.is_none() {
                debug!(group = %group_id, member = %new_id, "issuing member id");
                group.add_pending(new_id.clone(), session_timeout);
                return Decision::Now(JoinOutcome::error(ResponseError::MemberIdRequired, new_id));
            }
            let new = NewMember {
                id: new_id,
                instance_id,
                client_id: client.client_id,
                client_host: client.client_host,
                session_timeout,
                rebalance_timeout,
                protocol_type,
                protocols,
            };
            return join_new_member(&mut group, new);
        }

        if group.take_pending(&member_id) {
            if !group.supports_protocols(None, &protocol_type, &protocols) {
                return fail(ResponseError::InconsistentGroupProtocol);
            }
            let new = NewMember {
                id: member_id,
                instance_id,
                client_id: client.client_id,
                client_host: client.client_host,
                session_timeout,
                rebalance_timeout,
                protocol_type,
                protocols,
            };
            return join_new_member(&mut group, new);
        }

        if fenced(&group, &member_id, instance_id.as_deref()) {
            return fail(ResponseError::FencedInstanceId);
        }
        if !group.members.contains_key(&member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if !group.supports_protocols(Some(&member_id), &protocol_type, &protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let sole_member = group.members.len() == 1;
        if sole_member {
            group.protocol_type = Some(protocol_type.clone());
        }
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        let state = group.state;
        let Some(member) = group.members.get_mut(&member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let changed = member.protocols != protocols || member.protocol_type != protocol_type;
        member.protocols = protocols;
        member.protocol_type = protocol_type;
        member.session_timeout = session_timeout;
        member.rebalance_timeout = rebalance_timeout;
        if !client.client_id.is_empty() {
            member.client_id = client.client_id;
        }
        if !client.client_host.is_empty() {
            member.client_host = client.client_host;
        }
        member.touch();
        debug!(group = %group_id, member = %member_id, ?state, changed, "member rejoining");
        match state {
            GroupState::PreparingRebalance => {
                let rx = park_join(member);
                group.try_complete_join();
                Decision::Wait(rx)
            }
            // The member most likely lost the JoinGroup response; repeat it unless something
            // changed. A stable leader rejoining means it wants a new assignment.
            GroupState::CompletingRebalance if !changed => {
                Decision::Now(group.current_join_outcome(&member_id))
            }
            GroupState::Stable if !changed && !is_leader => {
                Decision::Now(group.current_join_outcome(&member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let rx = park_join(member);
                group.prepare_rebalance("member rejoined with new metadata");
                Decision::Wait(rx)
            }
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    /// SyncGroup. Followers wait for the leader's assignment; the leader's call distributes it.
    pub async fn sync_group(
        self: &Arc<Self>,
        req: SyncGroupRequest,
        version: i16,
    ) -> SyncGroupResponse {
        let (decision, protocol_type, protocol_name) = self.begin_sync(&req, version);
        let outcome = match decision {
            Decision::Now(outcome) => outcome,
            Decision::Wait(rx) => rx.await.unwrap_or(Err(ResponseError::UnknownMemberId)),
        };
        let mut resp = SyncGroupResponse::default();
        match outcome {
            Ok(assignment) => {
                resp.assignment = assignment;
                if version >= 5 {
                    resp.protocol_type = protocol_type.map(StrBytes::from_string);
                    resp.protocol_name = protocol_name.map(StrBytes::from_string);
                }
            }
            Err(error) => resp.error_code = error.code(),
        }
        resp
    }

    fn begin_sync(
        &self,
        req: &SyncGroupRequest,
        version: i16,
    ) -> (Decision<SyncOutcome>, Option<String>, Option<String>) {
        let fail = |error| (Decision::Now(Err(error)), None, None);
        let Some(group) = self.get_group(req.group_id.as_str()) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let mut group = group.lock();
        let member_id = req.member_id.as_str();
        let instance_id = if version >= 3 {
            opt_string(&req.group_instance_id)
        } else {
            None
        };
        if group.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if fenced(&group, member_id, instance_id.as_deref()) {
            return fail(ResponseError::FencedInstanceId);
        }
        if !group.members.contains_key(member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if req.generation_id != group.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if version >= 5 {
            let type_mismatch = req
                .protocol_type
                .as_ref()
                .is_some_and(|t| group.protocol_type.as_deref() != Some(t.as_str()));
            let name_mismatch = req
                .protocol_name
                .as_ref()
                .is_some_and(|n| group.protocol.as_deref() != Some(n.as_str()));
            if type_mismatch || name_mismatch {
                return fail(ResponseError::InconsistentGroupProtocol);
            }
        }
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        let is_leader = group.leader.as_deref() == Some(member_id);
        match group.state {
            GroupState::Empty => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let Some(member) = group.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                member.touch();
                (
                    Decision::Now(Ok(member.assignment.clone())),
                    protocol_type,
                    protocol_name,
                )
            }
            GroupState::CompletingRebalance => {
                let Some(member) = group.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                member.touch();
                let (tx, rx) = oneshot::channel();
                if let Some(previous) = member.sync_waiter.replace(tx) {
                    let _ = previous.send(Err(ResponseError::RebalanceInProgress));
                }
                if is_leader {
                    let assignments: HashMap<_, _> = req
                        .assignments
                        .iter()
                        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                        .collect();
                    group.complete_sync(assignments);
                }
                (Decision::Wait(rx), protocol_type, protocol_name)
            }
            GroupState::Dead => fail(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Heartbeat: keeps the session alive and tells members when to rejoin.
    pub async fn heartbeat(
        self: &Arc<Self>,
        req: HeartbeatRequest,
        version: i16,
    ) -> HeartbeatResponse {
        let error = self.heartbeat_error(&req, version);
        HeartbeatResponse::default().with_error_code(code(error))
    }

    fn heartbeat_error(&self, req: &HeartbeatRequest, version: i16) -> Option<ResponseError> {
        let Some(group) = self.get_group(req.group_id.as_str()) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let mut group = group.lock();
        let member_id = req.member_id.as_str();
        let instance_id = if version >= 3 {
            opt_string(&req.group_instance_id)
        } else {
            None
        };
        if group.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if fenced(&group, member_id, instance_id.as_deref()) {
            return Some(ResponseError::FencedInstanceId);
        }
        let generation = group.generation;
        let state = group.state;
        let Some(member) = group.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if req.generation_id != generation {
            return Some(ResponseError::IllegalGeneration);
        }
        match state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.touch();
                None
            }
            GroupState::PreparingRebalance => {
                member.touch();
                Some(ResponseError::RebalanceInProgress)
            }
        }
    }
}

fn park_join(member: &mut super::state::Member) -> oneshot::Receiver<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    if let Some(previous) = member.join_waiter.replace(tx) {
        // A duplicate JoinGroup from the same member: only the newest one gets the result.
        let _ = previous.send(JoinOutcome::error(
            ResponseError::RebalanceInProgress,
            member.id.clone(),
        ));
    }
    rx
}

fn join_new_member(group: &mut Group, new: NewMember) -> Decision<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    debug!(group = %group.id, member = %new.id, state = ?group.state, "new member joining");
    group.add_member(new, Some(tx));
    match group.state {
        GroupState::PreparingRebalance => group.try_complete_join(),
        _ => group.prepare_rebalance("new member joined"),
    }
    Decision::Wait(rx)
}

/// A static member came back with a new member id (e.g. after a restart). Basic support: the
/// old id is fenced and the member keeps its place; a follower whose subscription did not
/// change rejoins a stable group without a rebalance, anything else triggers one.
fn rejoin_static(group: &mut Group, old_id: &str, new: NewMember) -> Decision<JoinOutcome> {
    let new_id = new.id.as_str();
    if !group.replace_static_member(old_id, new_id) {
        return Decision::Now(JoinOutcome::error(
            ResponseError::UnknownMemberId,
            String::new(),
        ));
    }
    let is_leader = group.leader.as_deref() == Some(new_id);
    let state = group.state;
    let Some(member) = group.members.get_mut(new_id) else {
        return Decision::Now(JoinOutcome::error(
            ResponseError::UnknownMemberId,
            String::new(),
        ));
    };
    let changed = member.protocols != new.protocols || member.protocol_type != new.protocol_type;
    member.protocols = new.protocols;
    member.protocol_type = new.protocol_type;
    member.session_timeout = new.session_timeout;
    member.rebalance_timeout = new.rebalance_timeout;
    if !new.client_id.is_empty() {
        member.client_id = new.client_id;
    }
    if !new.client_host.is_empty() {
        member.client_host = new.client_host;
    }
    match state {
        // No rebalance, the leader included (Kafka, KIP-345): a restarted
        // leader is told the old leader id, so it does not compute an
        // assignment a stable group would never hand out; its SyncGroup
        // gets the assignment it had.
        GroupState::Stable if !changed => {
            let mut outcome = group.current_join_outcome(new_id);
            if is_leader {
                outcome.leader = old_id.to_string();
                outcome.members = Vec::new();
            }
            Decision::Now(outcome)
        }
        GroupState::PreparingRebalance => {
            let rx = park_join(member);
            group.try_complete_join();
            Decision::Wait(rx)
        }
        _ => {
            let rx = park_join(member);
            group.prepare_rebalance("static member rejoined");
            Decision::Wait(rx)
        }
    }
}
