//! The process-wide wasmtime engine, its epoch ticker, and the module
//! registry (in memory by hash, compiled artifacts on disk).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use crate::error::{HostError, ModuleError};
use crate::hostfns::{self, HostState};
use crate::logsink::{GuestLogSink, SinkSlot};
use crate::module::Module;

/// Configuration of the process-wide [`Host`].
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Where compiled modules are cached (`<hash>.cwasm`). Created if missing.
    pub cache_dir: PathBuf,
    /// Instances (and linear memories) the pooling allocator holds: the most
    /// detector instances alive at once, including the short-lived probe
    /// instance of each `load`. Default 256.
    pub max_instances: u32,
    /// Largest linear memory any instance may have (a deployment's
    /// [`Limits::memory_bytes`](crate::Limits) is capped by it; at most
    /// 4 GiB). Default 512 MiB.
    pub max_memory_bytes: u64,
    /// Epoch tick: the granularity of CPU budgets. Default 2 ms.
    pub epoch_tick: Duration,
    /// Wasm stack a guest call may use before it traps with a stack
    /// overflow. Default 512 KiB.
    pub max_wasm_stack: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: std::env::temp_dir().join("vigil-module-cache"),
            max_instances: 256,
            max_memory_bytes: 512 << 20,
            epoch_tick: Duration::from_millis(2),
            max_wasm_stack: 512 << 10,
        }
    }
}

/// Guard region after each linear memory: with a 4 GiB reservation, loads
/// and stores with a constant offset below this need no bounds check (Rust
/// code's field offsets are far smaller); the wasmtime default is 32 MiB.
const GUARD_BYTES: u64 = 64 << 10;

/// The whole 32-bit index space: a reservation this large lets cranelift
/// drop bounds checks.
const FOUR_GIB: u64 = 4 << 30;

/// How linear memories are allocated. [`Host::new`] tries them in this
/// order and keeps the first the OS accepts.
///
/// Measured here (wasmtime 48, a load+store loop over 16 MiB): bounds
/// checks cost ~23% (28.4 ms vs 23.1 ms), so the unchecked layout comes
/// first even though it reserves `max_instances × (4 GiB + 64 KiB)` of
/// address space (~1 TiB for 256 slots; `PROT_NONE`, uncommitted: no RAM,
/// no page tables, no overcommit charge, 1/128 of the x86-64 user address
/// space). Where that is refused (a `ulimit -v`), the pool shrinks to
/// `max_memory_bytes` per slot with bounds checks, and as a last resort
/// instances are allocated on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryLayout {
    /// Pooling allocator, 4 GiB reservation per slot, no bounds checks.
    PoolingUnchecked,
    /// Pooling allocator, `max_memory_bytes` per slot, bounds-checked.
    PoolingChecked,
    /// mmap per instance, `max_memory_bytes` reservation, bounds-checked.
    OnDemand,
}

/// The wasm host: one wasmtime [`Engine`] for the process (cranelift, pooling
/// allocator, epoch interruption), the `vigil` host functions, and the loaded
/// modules. Cheap to clone; all clones share everything.
///
/// A background thread advances the engine's epoch every
/// [`HostConfig::epoch_tick`]; it stops once the last `Host` clone *and* the
/// last [`Module`]/[`Instance`](crate::Instance) are dropped (modules hold it
/// too, so CPU budgets keep working for instances that outlive the host).
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    linker: Linker<HostState>,
    config: HostConfig,
    layout: MemoryLayout,
    ticker: Arc<Ticker>,
    /// Where guest log lines go besides `tracing`.
    log_sink: SinkSlot,
    /// Loaded modules by hash. Strong references: a module is kept compiled
    /// until [`Host::unload`], so a redeploy of the same bytes is instant.
    modules: Mutex<HashMap<String, Arc<Module>>>,
}

/// Things every module (and so every instance) needs from the host.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) config: HostConfig,
    /// Keeps the epoch ticker alive while any module exists.
    pub(crate) _ticker: Arc<Ticker>,
    /// The host's guest log sink (shared: set once for every module).
    pub(crate) log_sink: SinkSlot,
}

impl Host {
    /// Creates the engine, starts the epoch ticker, creates the cache directory.
    ///
    /// Memory layouts are tried in [`MemoryLayout`] order; a fallback is
    /// logged as a warning (detectors then run somewhat slower, limits work
    /// the same). `max_memory_bytes` is capped at 4 GiB (32-bit memories).
    pub fn new(mut config: HostConfig) -> Result<Host, HostError> {
        config.max_memory_bytes = config.max_memory_bytes.clamp(64 << 10, FOUR_GIB);
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| HostError::CacheDir {
            path: config.cache_dir.clone(),
            source,
        })?;
        let mut chosen = None;
        let mut last_err = String::new();
        for layout in [
            MemoryLayout::PoolingUnchecked,
            MemoryLayout::PoolingChecked,
            MemoryLayout::OnDemand,
        ] {
            match Engine::new(&engine_config(&config, layout)) {
                Ok(e) => {
                    chosen = Some((e, layout));
                    break;
                }
                Err(e) => {
                    last_err = format!("{e:#}");
                    tracing::warn!(?layout, error = %last_err, "wasm memory layout unavailable; trying the next one");
                }
            }
        }
        let (engine, layout) = chosen.ok_or(HostError::Engine(last_err))?;
        let linker = hostfns::linker(&engine).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticker = Arc::new(Ticker::start(engine.clone(), config.epoch_tick)?);
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                linker,
                config,
                layout,
                ticker,
                log_sink: SinkSlot::default(),
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The module's identity everywhere: lowercase hex SHA-256 of its bytes.
    pub fn hash(wasm: &[u8]) -> String {
        hex::encode(Sha256::digest(wasm))
    }

    /// Validates and compiles `wasm` (or loads its compiled artifact from
    /// the cache directory), checks the ABI, and prepares fast instantiation.
    /// A second `load` of the same bytes returns the same `Arc`.
    ///
    /// Blocks for the compile (~1 s for a 1 MB module on this class of
    /// machine): call it from a blocking thread.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<Module>, ModuleError> {
        let hash = Self::hash(wasm);
        if let Some(m) = self.lock_modules().get(&hash) {
            return Ok(m.clone());
        }
        let shared = Shared {
            engine: self.inner.engine.clone(),
            config: self.inner.config.clone(),
            _ticker: self.inner.ticker.clone(),
            log_sink: self.inner.log_sink.clone(),
        };
        let module = Arc::new(Module::load(
            shared,
            &self.inner.linker,
            wasm,
            hash.clone(),
        )?);
        // Two concurrent loads of the same bytes both compile; the first to
        // finish wins so every caller shares one module.
        Ok(self.lock_modules().entry(hash).or_insert(module).clone())
    }

    /// Drops the host's reference to a loaded module (instances keep theirs).
    /// Returns whether it was loaded.
    pub fn unload(&self, hash: &str) -> bool {
        self.lock_modules().remove(hash).is_some()
    }

    /// The loaded module with this hash, if any.
    pub fn get(&self, hash: &str) -> Option<Arc<Module>> {
        self.lock_modules().get(hash).cloned()
    }

    /// Sends every guest log line (of instances created from now on, by any
    /// module of this host) to `sink` as well as to `tracing`; replaces an
    /// earlier sink.
    pub fn set_log_sink(&self, sink: Arc<dyn GuestLogSink>) {
        self.inner.log_sink.set(sink);
    }

    /// The memory layout [`Host::new`] settled on.
    pub fn memory_layout(&self) -> MemoryLayout {
        self.inner.layout
    }

    /// The configuration the host was created with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Module>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove calls), so a poisoned lock is still usable.
        self.inner.modules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.inner.config)
            .field("layout", &self.inner.layout)
            .finish_non_exhaustive()
    }
}

/// The engine configuration. Everything that affects compiled code must be
/// derived from `HostConfig` deterministically: cached artifacts are only
/// reusable by an engine with the same settings (wasmtime checks this on
/// deserialize and we recompile on mismatch).
fn engine_config(config: &HostConfig, layout: MemoryLayout) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.max_wasm_stack(config.max_wasm_stack);
    c.parallel_compilation(true);
    // (No wasm threads: the `threads` feature is not compiled in, so shared
    // memories, which would escape per-store accounting, cannot validate.)
    // See `MemoryLayout` for why and what it costs.
    c.memory_reservation(match layout {
        MemoryLayout::PoolingUnchecked => FOUR_GIB,
        _ => config.max_memory_bytes,
    });
    c.memory_guard_size(GUARD_BYTES);
    // Memories never move (growth past the reservation fails, which the
    // limiter reports as a memory limit): cranelift may keep the heap base
    // in a register.
    c.memory_reservation_for_growth(0);
    c.memory_may_move(false);
    if layout != MemoryLayout::OnDemand {
        let mut p = PoolingAllocationConfig::new();
        p.total_core_instances(config.max_instances);
        p.total_memories(config.max_instances);
        p.total_tables(config.max_instances);
        p.max_memories_per_module(1);
        p.max_tables_per_module(1);
        p.max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

/// Advances the engine epoch every tick on a dedicated thread.
pub(crate) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Result<Ticker, HostError> {
        let tick = tick.max(Duration::from_micros(100));
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vigil-epoch".into())
            .spawn(move || {
                // The sender is never used to send: its drop (Disconnected)
                // is the stop signal, and a timeout is a tick.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(HostError::Ticker)?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // The thread exits within one tick of the disconnect.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_memory_layout_makes_an_engine() {
        let config = HostConfig {
            max_instances: 2,
            ..HostConfig::default()
        };
        for layout in [
            MemoryLayout::PoolingUnchecked,
            MemoryLayout::PoolingChecked,
            MemoryLayout::OnDemand,
        ] {
            Engine::new(&engine_config(&config, layout)).unwrap();
        }
    }

    #[test]
    fn ticker_stops_with_the_last_owner() {
        let host = Host::new(HostConfig {
            cache_dir: std::env::temp_dir().join("vigil-host-ticker-test"),
            max_instances: 2,
            ..HostConfig::default()
        })
        .unwrap();
        let weak = Arc::downgrade(&host.inner.ticker);
        let clone = host.clone();
        drop(host);
        assert!(weak.upgrade().is_some());
        // Dropping the last owner joins the thread (Ticker::drop).
        drop(clone);
        assert!(weak.upgrade().is_none());
    }
}
