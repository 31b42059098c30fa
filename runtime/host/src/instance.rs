//! A running detector: one wasmtime store with its limits, and the calls the
//! broker makes on it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{make_array, Array, ArrayRef, Int64Array, RecordBatch};
use arrow_data::transform::MutableArrayData;
use vigil_abi::{columns, exports, status, Alert, EncodedBatch};
use wasmtime::{Memory, Store, Trap, TypedFunc, WasmBacktrace};

use crate::engine::Shared;
use crate::error::GuestError;
use crate::hostfns::{Fault, HostState, Phase};
use crate::limits::{GuestLimiter, Limits};
use crate::module::Module;

/// One instantiated detector with its own memory, limits and state.
///
/// `Send`, not `Sync`: the broker moves it into a blocking task per call.
/// After any error other than [`GuestError::Detector`] it is poisoned and
/// every call fails; instantiate the module again.
pub struct Instance {
    store: Store<HostState>,
    module: Arc<Module>,
    memory: Memory,
    funcs: Funcs,
    limits: Limits,
    ticks: u64,
    poisoned: Option<&'static str>,
    last_call: Duration,
}

/// Epoch ticks for a budget (see [`crate::cpu::ticks_for`]).
pub(crate) fn deadline_ticks(budget: Duration, shared: &Shared) -> u64 {
    crate::cpu::ticks_for(budget, shared.config.epoch_tick)
}

impl Instance {
    pub(crate) fn new(
        module: Arc<Module>,
        limits: &Limits,
        config_json: &str,
        label: &str,
    ) -> Result<Instance, GuestError> {
        let shared = &module.shared;
        let mut limits = limits.clone();
        // The pool slot cannot hold more than max_memory_bytes anyway; say
        // the effective limit in errors.
        limits.memory_bytes = limits.memory_bytes.min(shared.config.max_memory_bytes);
        let mut state = HostState::new(
            GuestLimiter::new(limits.memory_bytes),
            Arc::from(label),
            Arc::from(module.short_hash()),
        );
        state.log_sink = shared.log_sink.get();
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        crate::cpu::enforce(&mut store, limits.cpu_per_batch, shared.config.epoch_tick);
        let ticks = deadline_ticks(limits.cpu_per_batch, shared);
        store.set_epoch_deadline(ticks);
        store.data_mut().begin(Phase::Other);
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, store.data_mut(), &limits))?;
        // Load-time validation guarantees these exist with these types.
        let missing =
            |what: &str| GuestError::Host(format!("export {what} vanished after validation"));
        let memory = instance
            .get_memory(&mut store, exports::MEMORY)
            .ok_or_else(|| missing(exports::MEMORY))?;
        let func = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_typed_func::<i32, i32>(store, name)
                .map_err(|_| missing(name))
        };
        let input = func(&mut store, exports::INPUT)?;
        let init = func(&mut store, exports::INIT)?;
        let process = func(&mut store, exports::PROCESS)?;
        let restore = func(&mut store, exports::RESTORE)?;
        let snapshot = instance
            .get_typed_func::<(), i32>(&mut store, exports::SNAPSHOT)
            .map_err(|_| missing(exports::SNAPSHOT))?;
        store.data_mut().memory = Some(memory);
        let mut inst = Instance {
            store,
            module,
            memory,
            funcs: Funcs {
                input,
                init,
                process,
                snapshot,
                restore,
            },
            limits,
            ticks,
            poisoned: None,
            last_call: Duration::ZERO,
        };
        let bytes = config_json.as_bytes();
        let len = inst.write_input(bytes.len(), |dst| {
            dst.copy_from_slice(bytes);
            Ok(())
        })?;
        let st = inst.call(Phase::Other, |s, f| f.init.call(s, len))?;
        inst.status(exports::INIT, st)?;
        Ok(inst)
    }

    /// Runs `vigil_process` on `batch` and returns the alerts it emitted.
    ///
    /// The batch is copied once, straight into the guest's input buffer
    /// (sliced arrays are normalized first). Every alert's `source_offset`
    /// must lie within the batch's `_offset` range.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Vec<Alert>, GuestError> {
        self.check_poisoned()?;
        let batch = normalize(batch)?;
        let enc = EncodedBatch::new(&batch)?;
        let offsets = offset_range(&batch);
        let len = self.write_input(enc.len(), |dst| Ok(enc.write_to(dst)?))?;
        let phase = Phase::Process {
            offsets,
            max_alerts: self.limits.max_alerts_per_batch,
        };
        let st = self.call(phase, |s, f| f.process.call(s, len))?;
        self.status(exports::PROCESS, st)?;
        Ok(std::mem::take(&mut self.store.data_mut().call.alerts))
    }

    /// Asks the detector for its state. `None`: it cannot snapshot.
    pub fn snapshot(&mut self) -> Result<Option<Vec<u8>>, GuestError> {
        let st = self.call(Phase::Snapshot, |s, f| f.snapshot.call(s, ()))?;
        if st == status::UNSUPPORTED {
            return Ok(None);
        }
        self.status(exports::SNAPSHOT, st)?;
        Ok(Some(std::mem::take(&mut self.store.data_mut().call.state)))
    }

    /// Restores state from [`Instance::snapshot`] bytes. `false`: the
    /// detector cannot restore.
    pub fn restore(&mut self, state: &[u8]) -> Result<bool, GuestError> {
        let len = self.write_input(state.len(), |dst| {
            dst.copy_from_slice(state);
            Ok(())
        })?;
        let st = self.call(Phase::Other, |s, f| f.restore.call(s, len))?;
        if st == status::UNSUPPORTED {
            return Ok(false);
        }
        self.status(exports::RESTORE, st)?;
        Ok(true)
    }

    /// Current size of the guest's linear memory.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    /// Wall time of the last guest call (epoch interruption measures wall
    /// time, not fuel).
    pub fn fuel_or_time_used_last(&self) -> Duration {
        self.last_call
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// The label given at instantiation.
    pub fn label(&self) -> &str {
        &self.store.data().label
    }

    /// The effective limits (memory capped by the host's pool slot size).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether an earlier error made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn check_poisoned(&self) -> Result<(), GuestError> {
        match self.poisoned {
            None => Ok(()),
            Some(cause) => Err(GuestError::Host(format!(
                "instance poisoned by an earlier {cause} error; re-instantiate"
            ))),
        }
    }

    /// Interprets a status code; the call itself succeeded.
    fn status(&mut self, export: &str, st: i32) -> Result<(), GuestError> {
        match st {
            status::OK => Ok(()),
            status::ERROR => {
                let msg = self
                    .store
                    .data_mut()
                    .call
                    .error
                    .take()
                    .unwrap_or_else(|| format!("{export} failed without a message"));
                Err(GuestError::Detector(msg))
            }
            other => {
                let e =
                    GuestError::AbiViolation(format!("{export} returned unknown status {other}"));
                self.poisoned = Some(e.cause());
                Err(e)
            }
        }
    }

    /// Gets the guest's input buffer for `len` bytes and lets `write` fill
    /// it in place. Returns `len` as the ABI's i32.
    fn write_input(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<(), GuestError>,
    ) -> Result<i32, GuestError> {
        self.check_poisoned()?;
        // The guest cannot hold an input larger than its memory limit.
        if len as u64 > self.limits.memory_bytes {
            return Err(GuestError::MemoryLimit {
                limit: self.limits.memory_bytes,
            });
        }
        let len32 = i32::try_from(len).map_err(|_| {
            GuestError::Host(format!("input of {len} bytes exceeds the ABI's 2 GiB"))
        })?;
        let ptr = self.call(Phase::Other, |s, f| f.input.call(s, len32))?;
        let start = ptr as u32 as usize;
        let data = self.memory.data_mut(&mut self.store);
        let Some(dst) = start
            .checked_add(len)
            .and_then(|end| data.get_mut(start..end))
        else {
            let e = GuestError::AbiViolation(format!(
                "vigil_input({len}) returned {start:#x}, outside guest memory of {} bytes",
                data.len()
            ));
            self.poisoned = Some(e.cause());
            return Err(e);
        };
        if !start.is_multiple_of(8) {
            let e = GuestError::AbiViolation(format!(
                "vigil_input returned {start:#x}, which is not 8-aligned"
            ));
            self.poisoned = Some(e.cause());
            return Err(e);
        }
        write(dst)?;
        Ok(len32)
    }

    /// Runs one guest call under the CPU budget and turns its outcome into
    /// a status or a classified error (poisoning the instance).
    fn call<R>(
        &mut self,
        phase: Phase,
        f: impl FnOnce(&mut Store<HostState>, &Funcs) -> wasmtime::Result<R>,
    ) -> Result<R, GuestError> {
        self.check_poisoned()?;
        self.store.data_mut().begin(phase);
        self.store.set_epoch_deadline(self.ticks);
        let started = Instant::now();
        let res = f(&mut self.store, &self.funcs);
        self.last_call = started.elapsed();
        let st = self.store.data_mut();
        let res = match (res, st.call.fault.is_some()) {
            (Ok(r), false) => return Ok(r),
            // A fault decides even if the guest then returned normally
            // (e.g. it ignored the -1 from emit_alerts).
            (Ok(_), true) => classify(wasmtime::Error::msg("host fault"), st, &self.limits),
            (Err(e), _) => classify(e, st, &self.limits),
        };
        self.poisoned = Some(res.cause());
        Err(res)
    }
}

/// The typed exports, passed to the closure in [`Instance::call`].
struct Funcs {
    init: TypedFunc<i32, i32>,
    input: TypedFunc<i32, i32>,
    process: TypedFunc<i32, i32>,
    snapshot: TypedFunc<(), i32>,
    restore: TypedFunc<i32, i32>,
}

/// Turns a failed guest call into a [`GuestError`]. Host-detected faults
/// win, then the trap kind, then a refused memory growth, then the guest's
/// own message.
pub(crate) fn classify(err: wasmtime::Error, st: &mut HostState, limits: &Limits) -> GuestError {
    if let Some(f) = st.call.fault.take() {
        return match f {
            Fault::AlertLimit(limit) => GuestError::AlertLimit { limit },
            Fault::Abi(e) => GuestError::Abi(e),
            Fault::Violation(m) => GuestError::AbiViolation(m),
            Fault::Trap(m) => GuestError::Trap { message: m },
        };
    }
    let trap = err.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::Interrupt) => {
            return GuestError::CpuBudget {
                budget: limits.cpu_per_batch,
            }
        }
        Some(Trap::StackOverflow) => return GuestError::StackOverflow,
        Some(Trap::MemoryOutOfBounds) if shadow_stack_overflow(&err) => {
            return GuestError::StackOverflow
        }
        _ => {}
    }
    if st.limiter.denied {
        return GuestError::MemoryLimit {
            limit: limits.memory_bytes,
        };
    }
    if let Some(p) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return GuestError::Host(format!(
            "{p}: every instance slot of the pool is in use; retry after other deployments stop, or raise max_instances"
        ));
    }
    if trap.is_none() && err.downcast_ref::<WasmBacktrace>().is_none() {
        // Not a trap at all: instantiation failed for a host reason.
        return GuestError::Host(format!("{err:#}"));
    }
    let message = match st.call.error.take() {
        Some(m) => m,
        None => {
            let what = trap.map_or_else(|| err.root_cause().to_string(), |t| t.to_string());
            match err.downcast_ref::<WasmBacktrace>().map(backtrace_summary) {
                Some(bt) if !bt.is_empty() => format!("{what} at {bt}"),
                _ => what,
            }
        }
    };
    GuestError::Trap { message }
}

/// Whether an out-of-bounds access looks like an overflow of the guest's
/// *shadow* stack, which Rust (LLVM) keeps in linear memory below the data
/// (`--stack-first`): deep recursion drives the stack pointer below 0 and it
/// wraps to just under 4 GiB. wasmtime's own stack check never fires then.
///
/// Evidence, in order: the faulting address (wasmtime attaches "memory fault
/// at wasm address 0x…" when guard pages caught it) lies in the top 256 MiB
/// of the 32-bit space; or, without an address (bounds-checked layouts), the
/// innermost eight frames are all the same function.
fn shadow_stack_overflow(err: &wasmtime::Error) -> bool {
    const PREFIX: &str = "memory fault at wasm address 0x";
    let addr = err.chain().find_map(|e| {
        let msg = e.to_string();
        let hex = msg.strip_prefix(PREFIX)?;
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        u64::from_str_radix(&hex[..end], 16).ok()
    });
    match addr {
        Some(a) => (0xF000_0000..=0xFFFF_FFFF).contains(&a),
        None => err.downcast_ref::<WasmBacktrace>().is_some_and(|bt| {
            let f = bt.frames();
            f.len() >= 8 && f[..8].iter().all(|x| x.func_index() == f[0].func_index())
        }),
    }
}

/// `f ← g ← h`, innermost first, at most five frames.
fn backtrace_summary(bt: &WasmBacktrace) -> String {
    let frames: Vec<String> = bt
        .frames()
        .iter()
        .take(5)
        .map(|f| match f.func_name() {
            Some(n) => n.to_string(),
            None => format!("func[{}]", f.func_index()),
        })
        .collect();
    let mut s = frames.join(" ← ");
    if bt.frames().len() > 5 {
        s.push_str(" ← …");
    }
    s
}

/// The batch with every array unsliced (Arrow offset 0), as the ABI encoder
/// requires; borrowed when it already is.
fn normalize(batch: &RecordBatch) -> Result<Cow<'_, RecordBatch>, GuestError> {
    if !batch.columns().iter().any(|c| is_sliced(&c.to_data())) {
        return Ok(Cow::Borrowed(batch));
    }
    let cols = batch
        .columns()
        .iter()
        .map(|c| {
            let d = c.to_data();
            if !is_sliced(&d) {
                return Ok(c.clone());
            }
            // Copies exactly the visible rows into fresh buffers.
            let mut m = MutableArrayData::new(vec![&d], false, d.len());
            m.try_extend(0, 0, d.len())?;
            Ok(make_array(m.freeze()))
        })
        .collect::<Result<Vec<ArrayRef>, arrow_schema::ArrowError>>()
        .map_err(|e| GuestError::Host(format!("cannot normalize a sliced batch: {e}")))?;
    RecordBatch::try_new(batch.schema(), cols)
        .map(Cow::Owned)
        .map_err(|e| GuestError::Host(format!("cannot normalize a sliced batch: {e}")))
}

fn is_sliced(d: &arrow_data::ArrayData) -> bool {
    d.offset() != 0
        || d.nulls().is_some_and(|n| n.offset() != 0)
        || d.child_data().iter().any(is_sliced)
}

/// Smallest and largest `_offset` of the batch.
fn offset_range(batch: &RecordBatch) -> Option<(i64, i64)> {
    let col = batch.column_by_name(columns::OFFSET)?;
    let offs = col.as_any().downcast_ref::<Int64Array>()?;
    let fold = |(lo, hi): (i64, i64), o: i64| (lo.min(o), hi.max(o));
    if offs.null_count() == 0 {
        // The common case, over the plain slice (vectorizes).
        let v = offs.values();
        let first = *v.first()?;
        return Some(v.iter().copied().fold((first, first), fold));
    }
    let mut it = offs.iter().flatten();
    let first = it.next()?;
    Some(it.fold((first, first), fold))
}
