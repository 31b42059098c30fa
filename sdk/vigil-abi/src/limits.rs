//! What one detector instance may use: part of a deployment's spec, shared
//! by the host (which enforces it) and the admin API (which carries it).

use std::time::Duration;

/// What one detector instance may use. Part of a deployment's configuration
/// (JSON: `{"memory_mb": .., "cpu_ms_per_batch": .., "max_alerts_per_batch": ..}`,
/// every field optional).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Ceiling of the guest's linear memory, in bytes (default 64 MiB).
    /// Also capped by `HostConfig::max_memory_bytes` (vigil-host).
    /// Serialized as whole MiB `memory_mb`, the unit people set it in.
    #[serde(rename = "memory_mb", with = "mebibytes")]
    pub memory_bytes: u64,
    /// CPU-time budget of one guest call (default 500 ms): the calling
    /// thread's CPU time, checked at every `HostConfig::epoch_tick`
    /// (vigil-host), so time the thread waited for a core is not charged.
    /// Serialized as integer milliseconds `cpu_ms_per_batch`.
    #[serde(rename = "cpu_ms_per_batch", with = "millis")]
    pub cpu_per_batch: Duration,
    /// Alerts one `vigil_process` call may emit (default 10 000).
    pub max_alerts_per_batch: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            cpu_per_batch: Duration::from_millis(500),
            max_alerts_per_batch: 10_000,
        }
    }
}

mod mebibytes {
    pub fn serialize<S: serde::Serializer>(b: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(b >> 20)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let mb: u64 = serde::Deserialize::deserialize(d)?;
        mb.checked_mul(1 << 20)
            .ok_or_else(|| serde::de::Error::custom(format!("memory_mb {mb} is too large")))
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_serde_uses_millis_and_defaults() {
        let l: Limits = serde_json::from_str(r#"{"cpu_ms_per_batch": 250}"#).unwrap();
        assert_eq!(l.cpu_per_batch, Duration::from_millis(250));
        assert_eq!(l.memory_bytes, 64 << 20);
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["cpu_ms_per_batch"], 250);
        assert!(serde_json::from_str::<Limits>(r#"{"cpu": 1}"#).is_err());
        let m: Limits = serde_json::from_str(r#"{"memory_mb": 32}"#).unwrap();
        assert_eq!(m.memory_bytes, 32 << 20);
        assert_eq!(serde_json::to_value(&m).unwrap()["memory_mb"], 32);
    }
}
