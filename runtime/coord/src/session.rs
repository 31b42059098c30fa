//! A node's session and its locally cached view of what it leads.
//!
//! The session is the node's lease on the cluster: an etcd lease, or a
//! heartbeat object in the object store. A background task renews it every
//! third of its TTL and, right after, re-reads every partition's leader.
//! [`Session::check`] — "do I still lead this partition at epoch E?" — then
//! answers from memory, cheaply enough to run before every acknowledgement,
//! and passes only while both are fresh:
//!
//! - the session: its last successful renewal *started* less than the TTL
//!   the backend granted ago. The backend expires the session no earlier
//!   than that (etcd counts from when it received the renewal), so as long
//!   as clocks run at the same rate, no other node can have been handed a
//!   leadership that lapsed with this session;
//! - the leadership: the last read that showed it *started* less than
//!   `validity` ago. Taking a partition from a live leader without its
//!   cooperation (a forced transfer) records a `fence_wait` of the same
//!   `validity`, which the new leader waits out before it acknowledges; by
//!   then every confirmation the old leader started before the transfer has
//!   expired, and every later read shows the transfer. The same rule as the
//!   storage fence (storage/src/fence.rs), per partition.
//!
//! A paused process keeps its monotonic clock running, so a node that wakes
//! up after a long stop finds its confirmations expired and checks fail
//! (retriable `Unconfirmed`, or `SessionLost` once the renewal finds the
//! session gone): never a silent stale leader.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::{CoordError, Result};
use crate::types::{Leader, LeaderEpoch, NodeInfo, TopicPartition};

/// Timing of a session. All nodes of a cluster should use the same values:
/// a forced takeover waits the *taker's* `validity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Session time-to-live: a node that stops renewing for this long loses
    /// its membership and every leadership.
    pub ttl: Duration,
    /// How long one read of the leaders lets this node acknowledge.
    pub validity: Duration,
}

impl SessionSettings {
    /// `ttl` with the default validity (the TTL: renewals run every third of
    /// it, so two may fail before checks stop passing).
    pub fn with_ttl(ttl: Duration) -> Self {
        SessionSettings { ttl, validity: ttl }
    }

    /// How often the session is renewed and the leaders re-read.
    pub fn renew_interval(&self) -> Duration {
        (self.ttl.min(self.validity) / 3).max(Duration::from_millis(50))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(3600) {
            return Err(CoordError::Invalid {
                what: "session TTL",
                reason: format!(
                    "{:?}: use 1 s to 1 h (etcd leases count whole seconds)",
                    self.ttl
                ),
            });
        }
        if self.validity.is_zero() || self.validity > self.ttl {
            return Err(CoordError::Invalid {
                what: "leadership validity",
                reason: format!(
                    "{:?}: must be positive and at most the TTL {:?}",
                    self.validity, self.ttl
                ),
            });
        }
        Ok(())
    }
}

/// What the backend does for the renewal task.
#[async_trait]
pub(crate) trait SessionDriver: Send + Sync + 'static {
    /// Renews the session: the TTL it now has, or `None` if it is gone.
    async fn renew(&self, session: &str) -> Result<Option<Duration>>;
    /// Reads every partition's live leader.
    async fn leaders(&self) -> Result<Vec<Leader>>;
    /// Ends the session (its member record and leaderships go with it).
    async fn end(&self, session: &str) -> Result<()>;
}

/// State of a session, as a watch channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Renewed; valid until the given instant.
    Alive,
    /// Gone for good, with the reason.
    Lost(String),
}

#[derive(Debug, Clone)]
struct Held {
    epoch: LeaderEpoch,
    /// Start of the last read (or our own write) that showed it.
    confirmed: Instant,
    /// When our own write or the read that added it completed.
    set_at: Instant,
    /// Before this, a forced takeover is still waiting out the old leader.
    usable_from: Instant,
}

#[derive(Debug)]
struct Inner {
    valid_until: Option<Instant>,
    lost: Option<String>,
    held: HashMap<TopicPartition, Held>,
    /// Leaderships this node gave up: a later read must not bring them back
    /// when the release itself failed to reach the backend.
    relinquished: HashSet<(TopicPartition, LeaderEpoch)>,
}

/// A node's membership session; see the module docs.
pub struct Session {
    node: NodeInfo,
    id: String,
    settings: SessionSettings,
    inner: parking_lot::Mutex<Inner>,
    state: watch::Sender<SessionState>,
    stop: watch::Sender<bool>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    driver: Arc<dyn SessionDriver>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.node.node_id)
            .field("id", &self.id)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl Session {
    /// Starts the renewal task of a session the backend just created with a
    /// renewal that started at `started` and granted `ttl`.
    pub(crate) fn start(
        node: NodeInfo,
        id: String,
        settings: SessionSettings,
        started: Instant,
        ttl: Duration,
        driver: Arc<dyn SessionDriver>,
    ) -> Arc<Session> {
        let session = Arc::new(Session {
            node,
            id,
            settings,
            inner: parking_lot::Mutex::new(Inner {
                valid_until: Some(started + ttl),
                lost: None,
                held: HashMap::new(),
                relinquished: HashSet::new(),
            }),
            state: watch::channel(SessionState::Alive).0,
            stop: watch::channel(false).0,
            task: parking_lot::Mutex::new(None),
            driver,
        });
        let task = tokio::spawn(renewal(Arc::downgrade(&session), session.stop.subscribe()));
        *session.task.lock() = Some(task);
        session
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// The backend's id of this session.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The session's timing.
    pub fn settings(&self) -> SessionSettings {
        self.settings
    }

    /// Follows the session's state (to stop serving when it is lost).
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// Whether the session is known to be gone.
    pub fn is_lost(&self) -> bool {
        self.inner.lock().lost.is_some()
    }

    /// The partitions this node believes it leads, with their epochs (the
    /// view [`check`](Session::check) answers from).
    pub fn held(&self) -> Vec<(TopicPartition, LeaderEpoch)> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .held
            .iter()
            .map(|(tp, h)| (tp.clone(), h.epoch))
            .collect();
        v.sort();
        v
    }

    /// Passes only if this node leads `tp` at `epoch` and both the session
    /// and the leadership were confirmed recently enough (module docs). Run
    /// it before acknowledging a write; it takes a lock and reads a clock.
    pub fn check(&self, tp: &TopicPartition, epoch: LeaderEpoch) -> Result<()> {
        let now = Instant::now();
        let inner = self.inner.lock();
        if let Some(reason) = &inner.lost {
            return Err(self.lost_error(reason.clone()));
        }
        let unconfirmed = |reason: String| CoordError::Unconfirmed {
            node: self.node.node_id,
            topic: tp.topic.clone(),
            partition: tp.partition,
            epoch,
            reason,
        };
        let held = match inner.held.get(tp) {
            Some(h) if h.epoch == epoch => h,
            other => {
                return Err(CoordError::NotLeader {
                    node: self.node.node_id,
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    ours: epoch,
                    current: match other {
                        Some(h) => format!("this node leads it at epoch {}", h.epoch),
                        None => "this node does not lead it".to_string(),
                    },
                })
            }
        };
        if now < held.usable_from {
            return Err(unconfirmed(format!(
                "taken over from a live leader; waiting {:?} more for its last confirmation to expire",
                held.usable_from - now
            )));
        }
        match inner.valid_until {
            Some(t) if now < t => {}
            _ => {
                return Err(unconfirmed(
                    "the session was not renewed within its TTL".to_string(),
                ))
            }
        }
        if now.duration_since(held.confirmed) >= self.settings.validity {
            return Err(unconfirmed(format!(
                "leadership last confirmed {:?} ago (validity {:?})",
                now.duration_since(held.confirmed),
                self.settings.validity
            )));
        }
        Ok(())
    }

    /// Waits until [`check`](Session::check) passes or fails for good, at
    /// most `timeout`: for a new leader that has to wait out a forced
    /// takeover, or for tests.
    pub async fn wait_usable(
        &self,
        tp: &TopicPartition,
        epoch: LeaderEpoch,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.check(tp, epoch) {
                Err(e @ CoordError::Unconfirmed { .. }) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for leadership to become usable");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r => return r,
            }
        }
    }

    pub(crate) fn lost_error(&self, reason: String) -> CoordError {
        CoordError::SessionLost {
            node: self.node.node_id,
            session: self.id.clone(),
            reason,
        }
    }

    /// Fails if the session is lost (before a backend write bound to it).
    pub(crate) fn ensure_alive(&self) -> Result<()> {
        match &self.inner.lock().lost {
            Some(reason) => Err(self.lost_error(reason.clone())),
            None => Ok(()),
        }
    }

    /// Records a leadership this node just wrote for itself.
    pub(crate) fn hold(&self, leader: &Leader, op_started: Instant) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner
            .relinquished
            .remove(&(leader.tp.clone(), leader.epoch));
        if let Some(h) = inner.held.get_mut(&leader.tp) {
            if h.epoch == leader.epoch {
                // Already held (an idempotent acquire): refresh, keeping the
                // takeover wait it started with.
                h.confirmed = h.confirmed.max(op_started);
                h.set_at = now;
                return;
            }
        }
        inner.held.insert(
            leader.tp.clone(),
            Held {
                epoch: leader.epoch,
                confirmed: op_started,
                set_at: now,
                usable_from: now + Duration::from_millis(leader.fence_wait_ms),
            },
        );
    }

    /// Stops using a leadership before it is released or handed over.
    pub(crate) fn relinquish(&self, tp: &TopicPartition, epoch: LeaderEpoch) {
        let mut inner = self.inner.lock();
        if inner.held.get(tp).is_some_and(|h| h.epoch <= epoch) {
            inner.held.remove(tp);
        }
        inner.relinquished.insert((tp.clone(), epoch));
    }

    /// Stops renewing without ending the session in the backend: what a
    /// crashed or frozen process looks like to the cluster (its session
    /// expires after the TTL). For fault drills and tests.
    #[doc(hidden)]
    pub fn abandon(&self) {
        self.stop.send_replace(true);
    }

    fn renewed(&self, started: Instant, ttl: Duration) {
        let mut inner = self.inner.lock();
        let until = started + ttl;
        if inner.valid_until.is_none_or(|t| t < until) {
            inner.valid_until = Some(until);
        }
    }

    /// Applies a read of all leaders that started at `started`.
    fn apply_read(&self, started: Instant, leaders: &[Leader]) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let mine: HashMap<&TopicPartition, &Leader> = leaders
            .iter()
            .filter(|l| l.session == self.id)
            .map(|l| (&l.tp, l))
            .collect();
        // Drop what the read no longer shows, unless we wrote it after the
        // read began (the read may predate our write).
        inner.held.retain(|tp, h| match mine.get(tp) {
            Some(l) => l.epoch >= h.epoch || h.set_at > started,
            None => h.set_at > started,
        });
        let Inner {
            held, relinquished, ..
        } = &mut *inner;
        for (tp, l) in mine {
            if relinquished.contains(&(tp.clone(), l.epoch)) {
                continue;
            }
            match held.get_mut(tp) {
                Some(h) if h.epoch == l.epoch => {
                    if h.confirmed < started {
                        h.confirmed = started;
                    }
                }
                Some(h) if h.epoch > l.epoch => {}
                _ => {
                    // Handed to us by another node: learned now.
                    held.insert(
                        tp.clone(),
                        Held {
                            epoch: l.epoch,
                            confirmed: started,
                            set_at: now,
                            usable_from: now + Duration::from_millis(l.fence_wait_ms),
                        },
                    );
                }
            }
        }
    }

    fn mark_lost(&self, reason: String) {
        let mut inner = self.inner.lock();
        if inner.lost.is_none() {
            tracing::error!(node = self.node.node_id, session = %self.id, %reason, "coordinator session lost; every leadership of this node is gone");
            inner.lost = Some(reason.clone());
            inner.held.clear();
            inner.valid_until = None;
            drop(inner);
            self.state.send_replace(SessionState::Lost(reason));
        }
    }

    /// Ends the session: stops renewing, gives up every leadership locally,
    /// then deletes it in the backend (its member record and leaderships
    /// lapse at once instead of after the TTL).
    pub async fn close(&self) -> Result<()> {
        self.stop.send_replace(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.mark_lost("closed by this node".to_string());
        self.driver.end(&self.id).await
    }

    /// Renews once and re-reads the leaders now (tests, and after an
    /// operation that must be visible at once).
    pub async fn refresh(&self) -> Result<()> {
        refresh_once(self).await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn refresh_once(session: &Session) -> Result<()> {
    session.ensure_alive()?;
    let started = Instant::now();
    match session.driver.renew(&session.id).await? {
        Some(ttl) => session.renewed(started, ttl),
        None => {
            session.mark_lost("the backend no longer knows the session (it expired)".to_string());
            return Err(session.lost_error("expired".to_string()));
        }
    }
    let started = Instant::now();
    let leaders = session.driver.leaders().await?;
    session.apply_read(started, &leaders);
    Ok(())
}

async fn renewal(session: std::sync::Weak<Session>, mut stop: watch::Receiver<bool>) {
    let Some(interval) = session.upgrade().map(|s| s.settings.renew_interval()) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(s) = session.upgrade() else { return };
        // A renewal must not outlive the session's validity: a hung request
        // would otherwise delay noticing that the session is lost.
        match tokio::time::timeout(s.settings.ttl, refresh_once(&s)).await {
            Ok(Ok(())) => {}
            Ok(Err(CoordError::SessionLost { .. })) => return,
            Ok(Err(e)) => {
                tracing::warn!(node = s.node.node_id, error = %e, "could not renew the coordinator session; retrying")
            }
            Err(_) => tracing::warn!(
                node = s.node.node_id,
                "renewing the coordinator session timed out; retrying"
            ),
        }
    }
}
