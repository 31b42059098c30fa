//! The `vigil` host functions and the per-store state they work on.
//!
//! Every guest pointer/length is checked against the guest memory before it
//! is read; a bad one stops the guest with a trap that says which call and
//! which range, never a host panic.

use std::sync::Arc;

use vigil_abi::{imports, Alert};
use wasmtime::{Caller, Engine, Linker, Memory};

use crate::limits::GuestLimiter;
use crate::logsink::{GuestLogLine, GuestLogSink};

/// Longest `log` line or `set_error` message kept, in bytes.
pub(crate) const MAX_MESSAGE: usize = 4 << 10;
/// Log lines one guest call may write; the rest are dropped (with one warning).
pub(crate) const MAX_LOG_LINES_PER_CALL: u32 = 100;

/// Which export is running, and what host functions may do during it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Instantiation, `vigil_input`, version probes, `vigil_init`.
    Other,
    /// `vigil_process` over a batch whose `_offset` values span this range
    /// (`None`: no rows, or no `_offset` column).
    Process {
        offsets: Option<(i64, i64)>,
        max_alerts: u32,
    },
    /// `vigil_snapshot`: `emit_state` is allowed.
    Snapshot,
}

/// Something a host function detected that decides the call's outcome
/// regardless of how the guest then ends (the SDK traps after -1, say).
#[derive(Debug)]
pub(crate) enum Fault {
    /// `emit_alerts` went over the limit.
    AlertLimit(u32),
    /// Alerts did not decode.
    Abi(vigil_abi::AbiError),
    /// Another ABI rule was broken (alert outside the batch, bad JSON field,
    /// `emit_state` outside a snapshot).
    Violation(String),
    /// A bad pointer or an oversized payload: reported as a trap.
    Trap(String),
}

/// Per-call results collected by host functions; reset before every call.
#[derive(Debug, Default)]
pub(crate) struct CallState {
    pub(crate) alerts: Vec<Alert>,
    pub(crate) alert_bytes: usize,
    pub(crate) error: Option<String>,
    pub(crate) fault: Option<Fault>,
    pub(crate) state: Vec<u8>,
    pub(crate) log_lines: u32,
    /// The calling thread's CPU time when the call began (`cpu.rs`).
    pub(crate) cpu_started: Option<std::time::Duration>,
}

/// The data of every guest store.
pub(crate) struct HostState {
    pub(crate) limiter: GuestLimiter,
    /// Deployment label, for logs.
    pub(crate) label: Arc<str>,
    /// Module hash prefix, for logs.
    pub(crate) module: Arc<str>,
    /// The guest's exported memory, once instantiated.
    pub(crate) memory: Option<Memory>,
    pub(crate) phase: Phase,
    pub(crate) call: CallState,
    /// Also receives log lines (the engine's per-deployment ring).
    pub(crate) log_sink: Option<Arc<dyn GuestLogSink>>,
}

impl HostState {
    pub(crate) fn new(limiter: GuestLimiter, label: Arc<str>, module: Arc<str>) -> Self {
        HostState {
            limiter,
            label,
            module,
            memory: None,
            phase: Phase::Other,
            call: CallState::default(),
            log_sink: None,
        }
    }

    /// Resets per-call state before a guest call.
    pub(crate) fn begin(&mut self, phase: Phase) {
        self.phase = phase;
        self.call = CallState {
            cpu_started: crate::cpu::thread_cpu(),
            ..CallState::default()
        };
        self.limiter.denied = false;
    }

    /// Records a fault (the first one wins) and returns the error that stops
    /// the guest.
    fn fault(&mut self, f: Fault) -> wasmtime::Error {
        let msg = match &f {
            Fault::AlertLimit(n) => format!("more than {n} alerts"),
            Fault::Abi(e) => e.to_string(),
            Fault::Violation(m) | Fault::Trap(m) => m.clone(),
        };
        if self.call.fault.is_none() {
            self.call.fault = Some(f);
        }
        wasmtime::Error::msg(msg)
    }
}

/// The byte range `ptr..ptr+len` of guest memory, or why it is invalid.
fn range(mem_len: usize, ptr: i32, len: i32, what: &str) -> Result<std::ops::Range<usize>, String> {
    // The ABI passes u32 values in i32 slots.
    let start = ptr as u32 as usize;
    let n = len as u32 as usize;
    match start.checked_add(n) {
        Some(end) if end <= mem_len => Ok(start..end),
        _ => Err(format!(
            "{what}: range {start:#x}+{n} is outside guest memory of {mem_len} bytes"
        )),
    }
}

fn memory_of(caller: &mut Caller<'_, HostState>) -> Option<Memory> {
    if let Some(m) = caller.data().memory {
        return Some(m);
    }
    // During instantiation (a start function) the memory is not cached yet.
    caller
        .get_export(vigil_abi::exports::MEMORY)
        .and_then(|e| e.into_memory())
}

/// Runs `f` on the guest bytes `ptr..ptr+len` and the host state, or stops
/// the guest with a trap naming the bad range.
fn with_guest_bytes<R>(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    what: &str,
    f: impl FnOnce(&[u8], &mut HostState) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let Some(mem) = memory_of(caller) else {
        let st = caller.data_mut();
        return Err(st.fault(Fault::Trap(format!(
            "{what} called, but the module exports no memory"
        ))));
    };
    let (data, st) = mem.data_and_store_mut(caller);
    match range(data.len(), ptr, len, what) {
        Ok(r) => f(&data[r], st),
        Err(msg) => Err(st.fault(Fault::Trap(msg))),
    }
}

/// A bounded, lossy UTF-8 copy of a guest message.
fn message(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_MESSAGE)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > MAX_MESSAGE {
        s.push_str("… (truncated)");
    }
    s
}

/// Builds the linker with the four `vigil` imports. One per engine; every
/// module is instantiated through it.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut l = Linker::new(engine);
    l.func_wrap(imports::MODULE, imports::LOG, host_log)?;
    l.func_wrap(imports::MODULE, imports::EMIT_ALERTS, host_emit_alerts)?;
    l.func_wrap(imports::MODULE, imports::SET_ERROR, host_set_error)?;
    l.func_wrap(imports::MODULE, imports::EMIT_STATE, host_emit_state)?;
    Ok(l)
}

fn host_log(
    mut caller: Caller<'_, HostState>,
    level: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<()> {
    with_guest_bytes(&mut caller, ptr, len, "vigil::log", |bytes, st| {
        st.call.log_lines = st.call.log_lines.saturating_add(1);
        if st.call.log_lines > MAX_LOG_LINES_PER_CALL {
            if st.call.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(
                    target: "vigil::guest",
                    label = %st.label,
                    module = %st.module,
                    "detector wrote more than {MAX_LOG_LINES_PER_CALL} log lines in one call; dropping the rest of this call's lines"
                );
            }
            return Ok(());
        }
        let msg = message(bytes);
        macro_rules! ev {
            ($lvl:expr) => {{
                tracing::event!(target: "vigil::guest", $lvl, label = %st.label, module = %st.module, "{}", msg);
                $lvl
            }};
        }
        let level = match level {
            i32::MIN..=0 => ev!(tracing::Level::ERROR),
            1 => ev!(tracing::Level::WARN),
            2 => ev!(tracing::Level::INFO),
            3 => ev!(tracing::Level::DEBUG),
            _ => ev!(tracing::Level::TRACE),
        };
        if let Some(sink) = &st.log_sink {
            sink.line(&GuestLogLine {
                label: &st.label,
                module: &st.module,
                level,
                message: &msg,
            });
        }
        Ok(())
    })
}

fn host_set_error(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    with_guest_bytes(&mut caller, ptr, len, "vigil::set_error", |bytes, st| {
        st.call.error = Some(message(bytes));
        Ok(())
    })
}

fn host_emit_state(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    with_guest_bytes(&mut caller, ptr, len, "vigil::emit_state", |bytes, st| {
        if st.phase != Phase::Snapshot {
            return Err(st.fault(Fault::Violation(
                "vigil::emit_state called outside vigil_snapshot".into(),
            )));
        }
        // A snapshot can never need more than the guest's own memory limit.
        if st.call.state.len() + bytes.len() > st.limiter.memory_bytes {
            return Err(st.fault(Fault::Trap(format!(
                "snapshot exceeds the memory limit of {} bytes",
                st.limiter.memory_bytes
            ))));
        }
        st.call.state.extend_from_slice(bytes);
        Ok(())
    })
}

fn host_emit_alerts(
    mut caller: Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    with_guest_bytes(&mut caller, ptr, len, "vigil::emit_alerts", |bytes, st| {
        let Phase::Process {
            offsets,
            max_alerts,
        } = st.phase
        else {
            return Err(st.fault(Fault::Violation(
                "vigil::emit_alerts called outside vigil_process".into(),
            )));
        };
        if matches!(st.call.fault, Some(Fault::AlertLimit(_))) {
            return Ok(-1);
        }
        let alerts = match vigil_abi::decode_alerts(bytes) {
            Ok(a) => a,
            Err(e) => return Err(st.fault(Fault::Abi(e))),
        };
        if st.call.alerts.len() + alerts.len() > max_alerts as usize {
            st.call.fault = Some(Fault::AlertLimit(max_alerts));
            return Ok(-1);
        }
        // Alerts are held by the host until the call returns; bound them by
        // what the guest itself may hold.
        st.call.alert_bytes += bytes.len();
        if st.call.alert_bytes > st.limiter.memory_bytes {
            return Err(st.fault(Fault::Trap(format!(
                "alerts of one batch exceed the memory limit of {} bytes",
                st.limiter.memory_bytes
            ))));
        }
        for a in &alerts {
            if let Err(m) = check_alert(a, offsets) {
                return Err(st.fault(Fault::Violation(m)));
            }
        }
        st.call.alerts.extend(alerts);
        Ok(0)
    })
}

/// The checks the ABI promises on each alert: the offset is in the batch
/// and every field value is JSON.
fn check_alert(a: &Alert, offsets: Option<(i64, i64)>) -> Result<(), String> {
    match offsets {
        Some((lo, hi)) if (lo..=hi).contains(&a.source_offset) => {}
        Some((lo, hi)) => {
            return Err(format!(
                "alert for offset {} outside batch {lo}..{hi}",
                a.source_offset
            ))
        }
        None => {
            return Err(format!(
                "alert for offset {} but the batch has no records",
                a.source_offset
            ))
        }
    }
    for (name, json) in &a.fields {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(json) {
            return Err(format!(
                "alert field {name:?} is not JSON ({e}): {json:.80}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert_eq!(range(100, 10, 20, "x").unwrap(), 10..30);
        assert!(range(100, 90, 20, "x").is_err());
        assert!(range(100, -1, 2, "x").is_err());
        assert!(
            range(usize::MAX / 2, -1, -1, "x").is_ok(),
            "u32 values, no overflow"
        );
        assert_eq!(range(0, 0, 0, "x").unwrap(), 0..0);
    }

    #[test]
    fn alerts_are_checked() {
        let mut a = Alert {
            source_offset: 5,
            ..Default::default()
        };
        assert!(check_alert(&a, Some((5, 9))).is_ok());
        let e = check_alert(&a, Some((6, 9))).unwrap_err();
        assert_eq!(e, "alert for offset 5 outside batch 6..9");
        a.fields.push(("z".into(), "not json".into()));
        assert!(check_alert(&a, Some((5, 9)))
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn messages_are_bounded() {
        let long = vec![b'a'; MAX_MESSAGE * 2];
        assert!(message(&long).len() < MAX_MESSAGE + 32);
        assert_eq!(message(b"hi \xff"), "hi \u{fffd}");
    }
}
