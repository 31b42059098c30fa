//! Caps on connections (total and per IP address) and the metrics of what
//! the listener refused or closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a connection was refused or closed by the broker, for metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// e.g. `max_connections`, `idle`, `request_read_timeout`.
    pub reason: String,
}

/// Metrics of the Kafka listener's limits.
#[derive(Default)]
pub struct ConnMetrics {
    /// Connections accepted and closed at once because a cap was reached.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Connections the broker closed on its own (idle, trickled frame).
    pub closed: Family<ReasonLabel, Counter>,
    /// accept() failures (EMFILE, ENFILE, ...).
    pub accept_errors: Counter,
    /// Requests dispatched and not yet answered, over all connections.
    pub in_flight: Gauge,
    /// Bytes of encoded responses not yet written to their client.
    pub response_bytes: Gauge,
}

impl ConnMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_rejected",
            "Connections closed at accept because max-connections or max-connections-per-ip was reached",
            self.rejected.clone(),
        );
        registry.register(
            "connections_closed_by_broker",
            "Connections the broker closed: idle, or a request frame too slow to arrive",
            self.closed.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts on the Kafka listener (e.g. out of file descriptors)",
            self.accept_errors.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Kafka requests dispatched and not yet answered",
            self.in_flight.clone(),
        );
        registry.register(
            "response_bytes_held",
            "Bytes of encoded Kafka responses not yet written to their clients",
            self.response_bytes.clone(),
        );
    }

    /// Counts one refused connection.
    pub fn reject(&self, why: Rejected) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: why.reason().to_string(),
            })
            .inc();
    }

    /// Counts one connection closed by the broker for `reason`.
    pub fn close(&self, reason: &str) {
        self.closed
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// `max-connections` reached.
    Total,
    /// `max-connections-per-ip` reached for the client's address.
    PerIp,
}

impl Rejected {
    /// The setting that refused it, as a metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::Total => "max_connections",
            Rejected::PerIp => "max_connections_per_ip",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open connections, counted against the caps.
pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

/// One admitted connection; frees its place when dropped.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    /// Caps of `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for one more connection from `ip`, unless a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Rejected> {
        // The counts are plain integers: a panic elsewhere cannot leave them
        // half-updated, so a poisoned lock is still usable.
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.total >= self.max_total {
            return Err(Rejected::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Rejected::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self
            .limits
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Keep the map's size bounded by the open connections.
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_ip_and_in_total_and_free_on_drop() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = limits.admit(a).expect("first");
        let a2 = limits.admit(a).expect("second");
        assert_eq!(limits.admit(a).err(), Some(Rejected::PerIp));
        let b1 = limits.admit(b).expect("other ip");
        assert_eq!(limits.admit(b).err(), Some(Rejected::Total));
        drop(a1);
        let a3 = limits.admit(a).expect("a freed slot is reused");
        drop((a2, a3, b1));
        assert_eq!(limits.open(), 0);
        let c = limits.counts.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(c.per_ip.is_empty(), "no entry for closed addresses");
    }
}
