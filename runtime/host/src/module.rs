//! A loaded detector module: validated against ABI v1, compiled (or read
//! from the compiled cache), ready to instantiate.

use std::path::Path;
use std::sync::Arc;

use vigil_abi::{exports, imports};
use wasmtime::{ExternType, FuncType, InstancePre, Linker, Store};

use crate::engine::Shared;
use crate::error::{GuestError, ModuleError};
use crate::hostfns::{HostState, Phase};
use crate::instance::{classify, deadline_ticks, Instance};
use crate::limits::{GuestLimiter, Limits};
use crate::meta;

/// A validated, compiled detector module. Instantiate it once per
/// deployment (and again after any poisoning error).
pub struct Module {
    /// Lowercase hex SHA-256 of the wasm bytes.
    pub hash: String,
    /// The module's `vigil_abi_version()` (equal to [`vigil_abi::ABI_VERSION`]).
    pub abi_version: i32,
    /// The module's `vigil_sdk_version()` as `major.minor.patch`.
    pub sdk_version: String,
    /// `name` from the `vigil.detector` custom section, if present.
    pub name: Option<String>,
    /// `version` from the `vigil.detector` custom section, if present.
    pub version: Option<String>,
    /// Size of the wasm bytes.
    pub size: usize,
    /// Whether the compiled code came from `cache_dir/<hash>.cwasm` rather
    /// than from compiling now.
    pub loaded_from_cache: bool,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) shared: Shared,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("hash", &self.hash)
            .field("abi_version", &self.abi_version)
            .field("sdk_version", &self.sdk_version)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("size", &self.size)
            .field("loaded_from_cache", &self.loaded_from_cache)
            .finish_non_exhaustive()
    }
}

/// The exports ABI v1 requires, with their signatures as
/// [`sig`] renders them.
const REQUIRED_FUNCS: [(&str, &str); 7] = [
    (exports::ABI_VERSION, "func() -> i32"),
    (exports::SDK_VERSION, "func() -> i32"),
    (exports::INPUT, "func(i32) -> i32"),
    (exports::INIT, "func(i32) -> i32"),
    (exports::PROCESS, "func(i32) -> i32"),
    (exports::SNAPSHOT, "func() -> i32"),
    (exports::RESTORE, "func(i32) -> i32"),
];

/// The host functions, with their signatures.
const HOST_FUNCS: [(&str, &str); 4] = [
    (imports::LOG, "func(i32, i32, i32)"),
    (imports::EMIT_ALERTS, "func(i32, i32) -> i32"),
    (imports::SET_ERROR, "func(i32, i32)"),
    (imports::EMIT_STATE, "func(i32, i32)"),
];

/// Renders a function type as `func(i32, i32) -> i32`.
fn sig(ft: &FuncType) -> String {
    let params: Vec<String> = ft.params().map(|p| p.to_string()).collect();
    let results: Vec<String> = ft.results().map(|r| r.to_string()).collect();
    let mut s = format!("func({})", params.join(", "));
    match results.len() {
        0 => {}
        1 => s.push_str(&format!(" -> {}", results[0])),
        _ => s.push_str(&format!(" -> ({})", results.join(", "))),
    }
    s
}

fn extern_desc(t: &ExternType) -> String {
    match t {
        ExternType::Func(f) => sig(f),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Global(_) => "a global".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}

/// Wall-clock budget of the load-time probe (start function + version calls).
const PROBE_CPU: std::time::Duration = std::time::Duration::from_secs(1);

impl Module {
    /// `NAME@VERSION` (or `NAME`) from the module's metadata, if it has a name.
    pub fn label(&self) -> Option<String> {
        match (&self.name, &self.version) {
            (Some(n), Some(v)) => Some(format!("{n}@{v}")),
            (Some(n), None) => Some(n.clone()),
            _ => None,
        }
    }

    pub(crate) fn load(
        shared: Shared,
        linker: &Linker<HostState>,
        wasm: &[u8],
        hash: String,
    ) -> Result<Module, ModuleError> {
        check_header(wasm)?;
        let meta = meta::read(wasm);
        let cache_path = shared.config.cache_dir.join(format!("{hash}.cwasm"));
        let (module, loaded_from_cache) = match from_cache(&shared, &cache_path) {
            Some(m) => (m, true),
            None => (
                wasmtime::Module::new(&shared.engine, wasm)
                    .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?,
                false,
            ),
        };

        let abi_export = module.get_export(exports::ABI_VERSION);
        check_func_export(exports::ABI_VERSION, "func() -> i32", abi_export.as_ref())?;
        // The version is read before the imports are judged, so a module
        // built for another ABI (which may import host functions this host
        // does not know) gets the "what to upgrade" message, not a
        // ForbiddenImport. Every import is a trapping stub in the probe.
        let mut probe = Probe::new(&shared, &module, &hash);
        let abi_version = match &mut probe {
            Ok(p) => p.call_version(exports::ABI_VERSION)?,
            Err(_) => None,
        };
        if let Some(v) = abi_version {
            if v != vigil_abi::ABI_VERSION {
                return Err(ModuleError::AbiMismatch {
                    module: v,
                    host: vigil_abi::ABI_VERSION,
                });
            }
        }
        check_imports(&module)?;
        check_exports(&module)?;
        let mut probe = probe?;
        let abi_version = match abi_version {
            Some(v) => v,
            None => probe
                .call_version(exports::ABI_VERSION)?
                .unwrap_or_default(),
        };
        let sdk = probe
            .call_version(exports::SDK_VERSION)?
            .map(vigil_abi::unpack_version)
            .unwrap_or_default();
        // Frees the probe's pool slot before the module is handed out.
        drop(probe);
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;

        if !loaded_from_cache {
            write_cache(&module, &cache_path);
        }
        tracing::info!(
            module = %short(&hash),
            name = meta.name.as_deref().unwrap_or("-"),
            version = meta.version.as_deref().unwrap_or("-"),
            sdk = %sdk,
            loaded_from_cache,
            "detector module loaded"
        );
        Ok(Module {
            hash,
            abi_version,
            sdk_version: sdk,
            name: meta.name,
            version: meta.version,
            size: wasm.len(),
            loaded_from_cache,
            pre,
            shared,
        })
    }

    /// Creates an instance with `limits` and runs `vigil_init(config_json)`.
    /// `label` names the instance in logs and errors (e.g. the deployment).
    ///
    /// An init that reports an error is [`GuestError::Detector`] with the
    /// module's message (fix the config); a trap or limit is reported as for
    /// [`Instance::process`].
    pub fn instantiate(
        self: &Arc<Self>,
        limits: &Limits,
        config_json: &str,
        label: &str,
    ) -> Result<Instance, GuestError> {
        Instance::new(self.clone(), limits, config_json, label)
    }

    /// The first 12 hex digits of the hash, as used in logs.
    pub fn short_hash(&self) -> &str {
        short(&self.hash)
    }
}

/// The first 12 hex digits of a module hash.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn check_header(wasm: &[u8]) -> Result<(), ModuleError> {
    if !wasm.starts_with(b"\0asm") {
        return Err(ModuleError::Invalid(
            "not a WebAssembly binary (no \\0asm magic); upload the .wasm built for wasm32-unknown-unknown".into(),
        ));
    }
    if wasm.get(4..8) != Some(&[1, 0, 0, 0]) {
        return Err(ModuleError::Invalid(
            "a WebAssembly component or unknown binary version; detectors are core modules built for wasm32-unknown-unknown".into(),
        ));
    }
    Ok(())
}

/// The compiled artifact from the cache, if present and usable.
fn from_cache(shared: &Shared, path: &Path) -> Option<wasmtime::Module> {
    let bytes = std::fs::read(path).ok()?;
    // SAFETY: `path` is `<cache_dir>/<sha256 of the wasm>.cwasm`, which only
    // `write_cache` below creates, from `Module::serialize` of an engine built
    // by `engine_config` (atomically: temp file + rename, so never partial).
    // wasmtime checks the artifact's header — its version and the engine
    // configuration it was compiled for — and fails on a mismatch instead of
    // running incompatible code; on any error we compile from the wasm.
    // Reading into memory (not `deserialize_file`) means later changes to
    // the file cannot affect the loaded code.
    match unsafe { wasmtime::Module::deserialize(&shared.engine, &bytes) } {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "ignoring unusable compiled-module cache entry; recompiling");
            None
        }
    }
}

/// Writes the compiled artifact atomically. Failure only costs a recompile
/// next time, so it is logged, not returned.
fn write_cache(module: &wasmtime::Module, path: &Path) {
    let res = module
        .serialize()
        .map_err(|e| format!("{e:#}"))
        .and_then(|bytes| {
            let tmp = path.with_extension(format!("cwasm.tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    e.to_string()
                })
        });
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "cannot write compiled-module cache entry");
    }
}

fn check_func_export(
    name: &str,
    expected: &str,
    found: Option<&ExternType>,
) -> Result<(), ModuleError> {
    match found {
        None => Err(ModuleError::MissingExport {
            name: name.into(),
            expected_sig: expected.into(),
        }),
        Some(t) => {
            let found = extern_desc(t);
            if found == expected {
                Ok(())
            } else {
                Err(ModuleError::WrongSignature {
                    name: name.into(),
                    expected: expected.into(),
                    found,
                })
            }
        }
    }
}

fn check_exports(module: &wasmtime::Module) -> Result<(), ModuleError> {
    for (name, expected) in REQUIRED_FUNCS {
        check_func_export(name, expected, module.get_export(name).as_ref())?;
    }
    match module.get_export(exports::MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_shared() && !m.is_64() => Ok(()),
        Some(ExternType::Memory(_)) => Err(ModuleError::WrongSignature {
            name: exports::MEMORY.into(),
            expected: "a 32-bit unshared memory".into(),
            found: "a shared or 64-bit memory".into(),
        }),
        Some(other) => Err(ModuleError::WrongSignature {
            name: exports::MEMORY.into(),
            expected: "a memory".into(),
            found: extern_desc(&other),
        }),
        None => Err(ModuleError::MissingExport {
            name: exports::MEMORY.into(),
            expected_sig: "a memory".into(),
        }),
    }
}

fn check_imports(module: &wasmtime::Module) -> Result<(), ModuleError> {
    for imp in module.imports() {
        let known = HOST_FUNCS.iter().find(|(n, _)| *n == imp.name());
        match (imp.module() == imports::MODULE, known) {
            (true, Some((name, expected))) => {
                let found = extern_desc(&imp.ty());
                if found != *expected {
                    return Err(ModuleError::ImportSignature {
                        name: (*name).into(),
                        expected: (*expected).into(),
                        found,
                    });
                }
            }
            _ => {
                return Err(ModuleError::ForbiddenImport {
                    module: imp.module().into(),
                    name: imp.name().into(),
                })
            }
        }
    }
    Ok(())
}

/// A throwaway instance used at load to read the version exports. All
/// imports are trapping stubs, so nothing the module does here can reach
/// the host beyond running its start function under small limits.
struct Probe {
    store: Store<HostState>,
    instance: wasmtime::Instance,
    ticks: u64,
}

impl Probe {
    fn new(shared: &Shared, module: &wasmtime::Module, hash: &str) -> Result<Probe, ModuleError> {
        let mut linker: Linker<HostState> = Linker::new(&shared.engine);
        linker
            .define_unknown_imports_as_traps(module)
            .map_err(|e| ModuleError::Probe(format!("{e:#}")))?;
        let limits = Limits {
            memory_bytes: shared.config.max_memory_bytes,
            cpu_per_batch: PROBE_CPU,
            max_alerts_per_batch: 0,
        };
        let state = HostState::new(
            GuestLimiter::new(limits.memory_bytes),
            Arc::from("load-probe"),
            Arc::from(short(hash)),
        );
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        crate::cpu::enforce(&mut store, PROBE_CPU, shared.config.epoch_tick);
        let ticks = deadline_ticks(PROBE_CPU, shared);
        store.set_epoch_deadline(ticks);
        store.data_mut().begin(Phase::Other);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| probe_error(classify(e, store.data_mut(), &limits)))?;
        Ok(Probe {
            store,
            instance,
            ticks,
        })
    }

    /// Calls a `() -> i32` export; `None` if it is missing or mistyped
    /// (reported by the export checks).
    fn call_version(&mut self, name: &str) -> Result<Option<i32>, ModuleError> {
        let Ok(f) = self
            .instance
            .get_typed_func::<(), i32>(&mut self.store, name)
        else {
            return Ok(None);
        };
        self.store.data_mut().begin(Phase::Other);
        self.store.set_epoch_deadline(self.ticks);
        let limits = Limits {
            cpu_per_batch: PROBE_CPU,
            ..Limits::default()
        };
        f.call(&mut self.store, ())
            .map(Some)
            .map_err(|e| probe_error(classify(e, self.store.data_mut(), &limits)))
    }
}

fn probe_error(e: GuestError) -> ModuleError {
    match e {
        GuestError::Host(m) => ModuleError::Host(m),
        other => ModuleError::Probe(other.to_string()),
    }
}
