//! The group state machine: members, rebalances and the timers that drive them.
//!
//! Everything here runs with the group's mutex held by the caller; the timers that call back
//! into it live in [`super::timers`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::offsets::StoredOffset;
use super::timers::{rebalance_timer, spawn_guarded, watch_session, TaskGuard};

/// Lifecycle of a classic consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The state name exactly as Kafka spells it in DescribeGroups/ListGroups.
    pub(crate) fn kafka_name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup call is answered with, independent of the wire version.
#[derive(Clone, Debug)]
pub(crate) struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    pub(crate) fn error(error: ResponseError, member_id: String) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// One entry of the leader's member list.
#[derive(Clone, Debug)]
pub(crate) struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a SyncGroup call is answered with: the member's assignment or an error.
pub(crate) type SyncOutcome = Result<Bytes, ResponseError>;

/// Everything needed to add a member.
pub(crate) struct NewMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// Supported protocols in the member's order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Set while the member's JoinGroup is parked waiting for the rebalance to complete;
    /// "has rejoined this rebalance" is exactly `join_waiter.is_some()`.
    pub join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    /// Set while the member's SyncGroup is parked waiting for the leader's assignment.
    pub sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Last JoinGroup/SyncGroup/Heartbeat/OffsetCommit; the session expires
    /// `session_timeout` after it.
    pub last_seen: Instant,
    join_order: u64,
    session_timer: Option<TaskGuard>,
}

impl Member {
    pub(crate) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub(crate) fn touch(&mut self) {
        self.last_seen = Instant::now();
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

struct Rebalance {
    epoch: u64,
    /// First rebalance of an empty group: completes only when the initial delay passes
    /// without new members arriving (or the overall deadline is reached).
    initial: bool,
    new_member_added: bool,
    deadline: Instant,
    _timer: Option<TaskGuard>,
}

pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → current member id of that static member.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they stop being honoured.
    pending_members: HashMap<String, Instant>,
    rebalance: Option<Rebalance>,
    rebalance_epoch: u64,
    next_join_order: u64,
    pub(super) offsets: BTreeMap<(String, i32), StoredOffset>,
    pub(super) next_commit_seq: u64,
    /// Commits sent to the store and not yet answered: while any is, the group is not
    /// forgotten by offset expiry even if it holds no offsets yet.
    pub(super) inflight_commits: u32,
    self_ref: Weak<Mutex<Group>>,
    initial_rebalance_delay: Duration,
}

impl Group {
    pub(crate) fn new(
        id: String,
        self_ref: Weak<Mutex<Group>>,
        initial_rebalance_delay: Duration,
    ) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance: None,
            rebalance_epoch: 0,
            next_join_order: 0,
            offsets: BTreeMap::new(),
            next_commit_seq: 1,
            inflight_commits: 0,
            self_ref,
            initial_rebalance_delay,
        }
    }

    /// Remembers an id issued with MEMBER_ID_REQUIRED; it is honoured for one session timeout.
    pub(crate) fn add_pending(&mut self, member_id: String, session_timeout: Duration) {
        let now = Instant::now();
        self.pending_members.retain(|_, expiry| *expiry > now);
        self.pending_members
            .insert(member_id, now + session_timeout);
    }

    /// Consumes a pending id; true if it was issued and has not expired.
    pub(crate) fn take_pending(&mut self, member_id: &str) -> bool {
        match self.pending_members.remove(member_id) {
            Some(expiry) => expiry > Instant::now(),
            None => false,
        }
    }

    /// Whether a member speaking `protocol_type` with these protocols may join (or stay in)
    /// the group: it must share the group's protocol type and support at least one protocol
    /// every other member supports. `exclude` is the member itself when it is rejoining.
    pub(crate) fn supports_protocols(
        &self,
        exclude: Option<&str>,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| Some(m.id.as_str()) != exclude)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols
            .iter()
            .any(|(name, _)| others.iter().all(|m| m.supports(name)))
    }

    /// Adds a member, optionally with a parked JoinGroup, and starts its session timer. Does
    /// not change state; callers follow up with [`Self::prepare_rebalance`] or
    /// [`Self::try_complete_join`].
    pub(crate) fn add_member(
        &mut self,
        new: NewMember,
        join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(new.protocol_type.clone());
        }
        if let Some(instance) = &new.instance_id {
            self.static_members.insert(instance.clone(), new.id.clone());
        }
        if let Some(rebalance) = &mut self.rebalance {
            rebalance.new_member_added = true;
        }
        let session_timer = spawn_guarded(watch_session(self.self_ref.clone(), new.id.clone()));
        self.next_join_order += 1;
        debug!(group = %self.id, member = %new.id, instance = ?new.instance_id, "member added");
        self.members.insert(
            new.id.clone(),
            Member {
                id: new.id,
                instance_id: new.instance_id,
                client_id: new.client_id,
                client_host: new.client_host,
                session_timeout: new.session_timeout,
                rebalance_timeout: new.rebalance_timeout,
                protocol_type: new.protocol_type,
                protocols: new.protocols,
                assignment: Bytes::new(),
                join_waiter,
                sync_waiter: None,
                last_seen: Instant::now(),
                join_order: self.next_join_order,
                session_timer,
            },
        );
    }

    /// Moves a static member to a freshly issued member id; requests still parked under the
    /// old id are answered with FENCED_INSTANCE_ID. Returns false if `old_id` is unknown.
    pub(crate) fn replace_static_member(&mut self, old_id: &str, new_id: &str) -> bool {
        let Some(mut member) = self.members.remove(old_id) else {
            return false;
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinOutcome::error(
                ResponseError::FencedInstanceId,
                old_id.to_string(),
            ));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(Err(ResponseError::FencedInstanceId));
        }
        member.id = new_id.to_string();
        // Replacing the guard aborts the timer that was watching the old id.
        member.session_timer =
            spawn_guarded(watch_session(self.self_ref.clone(), new_id.to_string()));
        member.touch();
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), new_id.to_string());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        debug!(group = %self.id, old = %old_id, new = %new_id, "static member replaced");
        self.members.insert(new_id.to_string(), member);
        true
    }

    /// Removes a member and moves the group on: a stable group rebalances, a rebalancing
    /// group re-checks whether everyone remaining has joined. Parked requests of the removed
    /// member see their sender dropped and answer UNKNOWN_MEMBER_ID.
    pub(crate) fn remove_member(&mut self, member_id: &str, reason: &str) -> bool {
        let Some(member) = self.members.remove(member_id) else {
            return false;
        };
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        debug!(group = %self.id, member = %member_id, reason, "member removed");
        drop(member);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(reason),
            GroupState::PreparingRebalance => self.try_complete_join(),
            GroupState::Empty | GroupState::Dead => {}
        }
        true
    }

    /// Enters PreparingRebalance: members must rejoin within their rebalance timeout.
    pub(crate) fn prepare_rebalance(&mut self, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being computed is for a membership that no longer holds.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(Err(ResponseError::RebalanceInProgress));
                }
            }
        }
        let initial = self.state == GroupState::Empty;
        let now = Instant::now();
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let (deadline, first_fire) = if initial {
            let total = rebalance_timeout.max(self.initial_rebalance_delay);
            (now + total, now + self.initial_rebalance_delay.min(total))
        } else {
            (now + rebalance_timeout, now + rebalance_timeout)
        };
        self.rebalance_epoch += 1;
        let epoch = self.rebalance_epoch;
        self.state = GroupState::PreparingRebalance;
        self.rebalance = Some(Rebalance {
            epoch,
            initial,
            new_member_added: false,
            deadline,
            _timer: spawn_guarded(rebalance_timer(self.self_ref.clone(), epoch, first_fire)),
        });
        debug!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            initial,
            reason,
            "preparing rebalance"
        );
        self.try_complete_join();
    }

    /// Completes the rebalance if every member has rejoined (never during the initial delay,
    /// which exists precisely to wait for members we do not know about yet).
    pub(crate) fn try_complete_join(&mut self) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.rebalance.as_ref().is_some_and(|r| r.initial) {
            return;
        }
        if self.members.values().all(|m| m.join_waiter.is_some()) {
            self.complete_join();
        }
    }

    pub(super) fn on_rebalance_timer(&mut self, epoch: u64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let Some(rebalance) = &mut self.rebalance else {
            return;
        };
        if rebalance.epoch != epoch {
            return;
        }
        let now = Instant::now();
        if rebalance.initial && rebalance.new_member_added && now < rebalance.deadline {
            rebalance.new_member_added = false;
            let next = (now + self.initial_rebalance_delay).min(rebalance.deadline);
            // Replacing the guard aborts the task running this very call, which is fine: it
            // has nothing left to do after returning.
            rebalance._timer = spawn_guarded(rebalance_timer(self.self_ref.clone(), epoch, next));
            debug!(group = %self.id, "new members arrived during initial delay; waiting longer");
            return;
        }
        self.complete_join();
    }

    /// Starts the next generation with the members that rejoined; the others are dropped.
    fn complete_join(&mut self) {
        self.rebalance = None;
        let laggards: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in laggards {
            debug!(group = %self.id, member = %id, "member did not rejoin in time");
            if let Some(member) = self.members.remove(&id) {
                if let Some(instance) = &member.instance_id {
                    if self.static_members.get(instance) == Some(&id) {
                        self.static_members.remove(instance);
                    }
                }
            }
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.join_order)
                .map(|m| m.id.clone());
        }
        let Some(protocol) = self.select_protocol() else {
            // Joins are validated against the group's protocols, so this only happens if that
            // check has a bug; fail everyone rather than hand out a nonsense generation.
            warn!(group = %self.id, "no protocol supported by all members");
            for member in self.members.values_mut() {
                if let Some(waiter) = member.join_waiter.take() {
                    let _ = waiter.send(JoinOutcome::error(
                        ResponseError::InconsistentGroupProtocol,
                        member.id.clone(),
                    ));
                }
            }
            self.members.clear();
            self.static_members.clear();
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        };
        self.protocol = Some(protocol);
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.current_join_outcome(&id);
            if let Some(member) = self.members.get_mut(&id) {
                member.touch();
                if let Some(waiter) = member.join_waiter.take() {
                    let _ = waiter.send(outcome);
                }
            }
        }
        info!(
            group = %self.id,
            generation = self.generation,
            protocol = ?self.protocol,
            leader = ?self.leader,
            members = self.members.len(),
            "rebalance completed; new generation"
        );
    }

    /// The first protocol in the leader's preference order that every member supports.
    fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l))?;
        leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| self.members.values().all(|m| m.supports(name)))
            .cloned()
    }

    /// JoinGroup answer for `member_id` in the current generation (member list for the
    /// leader only).
    pub(crate) fn current_join_outcome(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut members: Vec<&Member> = self.members.values().collect();
            members.sort_by_key(|m| m.join_order);
            members
                .into_iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Stores the leader's assignment and releases every parked SyncGroup.
    pub(crate) fn complete_sync(&mut self, assignments: HashMap<String, Bytes>) {
        for member in self.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Ok(member.assignment.clone()));
            }
        }
        self.state = GroupState::Stable;
        info!(group = %self.id, generation = self.generation, "group is stable");
    }

    /// Session bookkeeping for the member's timer: the next time to look again, or None when
    /// the member is gone (possibly because its session just expired).
    pub(super) fn check_session(&mut self, member_id: &str) -> Option<Instant> {
        let now = Instant::now();
        let member = self.members.get(member_id)?;
        // A member parked in JoinGroup/SyncGroup cannot heartbeat; the rebalance deadline
        // bounds how long that lasts.
        if member.join_waiter.is_some() || member.sync_waiter.is_some() {
            return Some(now + member.session_timeout);
        }
        let expiry = member.last_seen + member.session_timeout;
        if expiry > now {
            return Some(expiry);
        }
        info!(group = %self.id, member = %member_id, "member session expired");
        self.remove_member(member_id, "session timeout");
        None
    }
}
