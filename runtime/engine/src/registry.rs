//! Uploaded modules: bytes and metadata live in the object store (content
//! addressed by sha256, so any broker on the store can load them); compiled
//! code is cached by the host on local disk, and at most
//! [`EngineSettings::max_compiled_modules`](crate::EngineSettings) modules
//! stay compiled in memory: the least recently used one beyond that is
//! dropped (deployments running it keep their reference) and compiled again
//! from the store, or the host's disk cache, when next needed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use vigil_host::{Host, Module, ModuleError};
use vigil_storage::paths;

pub use vigil_api::ModuleMeta;

/// Why a module could not be stored or found.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The bytes are not a module this broker can run (not retriable).
    #[error("module refused: {0}")]
    Invalid(#[from] ModuleError),
    /// No module with that hash or prefix.
    #[error("no module {0:?} was uploaded (list them with `vigil detector list --modules`)")]
    NotFound(String),
    /// A prefix matched several modules.
    #[error("module prefix {0:?} is ambiguous: give more characters of the hash")]
    Ambiguous(String),
    /// The object store failed (retriable).
    #[error("object store error while accessing module {key}: {source} (retry may help)")]
    Store {
        /// Object key.
        key: String,
        /// Cause.
        source: object_store::Error,
    },
    /// Stored bytes do not hash to their key (corruption; not retriable).
    #[error("stored module {0} is corrupt (its bytes hash to something else; not retriable)")]
    Corrupt(String),
    /// Metadata could not be (de)serialized.
    #[error("module metadata {0} is unreadable: {1} (not retriable)")]
    Meta(String, serde_json::Error),
}

/// Uploaded modules.
pub struct Registry {
    store: Arc<dyn ObjectStore>,
    host: Host,
    loaded: parking_lot::Mutex<Loaded>,
}

/// Compiled modules kept in memory, each with when it was last used.
struct Loaded {
    capacity: usize,
    /// Bumped at every use; a module's stamp says how recently it was used.
    clock: u64,
    modules: HashMap<String, (Arc<Module>, u64)>,
}

impl Loaded {
    fn get(&mut self, hash: &str) -> Option<Arc<Module>> {
        self.clock += 1;
        let clock = self.clock;
        self.modules.get_mut(hash).map(|(m, used)| {
            *used = clock;
            m.clone()
        })
    }

    /// Keeps `module`, and returns the hashes of the least recently used
    /// modules dropped to stay within the capacity.
    fn insert(&mut self, module: Arc<Module>) -> Vec<String> {
        self.clock += 1;
        self.modules
            .insert(module.hash.clone(), (module, self.clock));
        let mut evicted = Vec::new();
        while self.modules.len() > self.capacity {
            let Some(oldest) = self
                .modules
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(h, _)| h.clone())
            else {
                break;
            };
            self.modules.remove(&oldest);
            evicted.push(oldest);
        }
        evicted
    }
}

impl Registry {
    /// A registry over `store`, compiling with `host`, keeping at most
    /// `max_compiled` (at least one) modules compiled in memory.
    pub fn new(store: Arc<dyn ObjectStore>, host: Host, max_compiled: usize) -> Self {
        Registry {
            store,
            host,
            loaded: parking_lot::Mutex::new(Loaded {
                capacity: max_compiled.max(1),
                clock: 0,
                modules: HashMap::new(),
            }),
        }
    }

    /// How many modules are compiled and kept in memory now.
    pub fn compiled(&self) -> usize {
        self.loaded.lock().modules.len()
    }

    /// The host the modules run in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    async fn compile(&self, wasm: Bytes) -> Result<Arc<Module>, RegistryError> {
        let host = self.host.clone();
        // Compiling takes ~1 s of CPU: keep it off the async workers.
        let module = tokio::task::spawn_blocking(move || host.load(&wasm))
            .await
            .map_err(|e| ModuleError::Invalid(format!("compiler task failed: {e}")))??;
        let evicted = self.loaded.lock().insert(module.clone());
        for hash in evicted {
            // The host keeps its own reference for instant reloads: drop it
            // too, or the eviction would free nothing.
            self.host.unload(&hash);
            tracing::debug!(module = %hash, "compiled module evicted from memory (least recently used)");
        }
        Ok(module)
    }

    /// Validates, compiles and stores a module; uploading the same bytes
    /// twice is harmless and returns the same metadata.
    pub async fn upload(&self, wasm: Bytes) -> Result<ModuleMeta, RegistryError> {
        let size = wasm.len();
        let module = self.compile(wasm.clone()).await?;
        let meta = ModuleMeta {
            hash: module.hash.clone(),
            name: module.name.clone(),
            version: module.version.clone(),
            abi_version: module.abi_version,
            sdk_version: module.sdk_version.clone(),
            size,
            uploaded_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        if let Ok(existing) = self.meta(&meta.hash).await {
            return Ok(existing);
        }
        let key = paths::module_wasm(&meta.hash);
        self.put(&key, wasm).await?;
        let json =
            serde_json::to_vec(&meta).map_err(|e| RegistryError::Meta(meta.hash.clone(), e))?;
        self.put(&paths::module_meta(&meta.hash), Bytes::from(json))
            .await?;
        tracing::info!(hash = %meta.hash, name = ?meta.name, version = ?meta.version, size, "module uploaded");
        Ok(meta)
    }

    async fn put(&self, key: &object_store::path::Path, b: Bytes) -> Result<(), RegistryError> {
        self.store
            .put(key, PutPayload::from_bytes(b))
            .await
            .map(|_| ())
            .map_err(|source| RegistryError::Store {
                key: key.to_string(),
                source,
            })
    }

    async fn get(&self, key: &object_store::path::Path) -> Result<Bytes, RegistryError> {
        let r = self.store.get(key).await;
        let r = match r {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        r.map_err(|source| match source {
            object_store::Error::NotFound { .. } => RegistryError::NotFound(key.to_string()),
            source => RegistryError::Store {
                key: key.to_string(),
                source,
            },
        })
    }

    /// Metadata of module `hash`.
    pub async fn meta(&self, hash: &str) -> Result<ModuleMeta, RegistryError> {
        let b = self
            .get(&paths::module_meta(hash))
            .await
            .map_err(|e| match e {
                RegistryError::NotFound(_) => RegistryError::NotFound(hash.to_string()),
                e => e,
            })?;
        serde_json::from_slice(&b).map_err(|e| RegistryError::Meta(hash.to_string(), e))
    }

    /// All uploaded modules, oldest first.
    pub async fn list(&self) -> Result<Vec<ModuleMeta>, RegistryError> {
        use futures::TryStreamExt;
        let prefix = paths::modules_prefix();
        let objects: Vec<_> =
            self.store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|source| RegistryError::Store {
                    key: prefix.to_string(),
                    source,
                })?;
        let mut out = Vec::new();
        for o in objects {
            if let Some(hash) = paths::parse_module_meta(&o.location) {
                out.push(self.meta(&hash).await?);
            }
        }
        out.sort_by_key(|m| m.uploaded_at_ms);
        Ok(out)
    }

    /// Uploads of module `name` (the crate name it was built from), oldest
    /// first.
    pub async fn versions(&self, name: &str) -> Result<Vec<ModuleMeta>, RegistryError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|m| m.name.as_deref() == Some(name))
            .collect())
    }

    /// The full hash of the module a reference names: a full sha256, a
    /// unique hash prefix of at least 8 hex digits, `NAME@VERSION`, or a bare
    /// `NAME` (its latest upload). When one label was uploaded several times
    /// (rebuilt with changes but not re-versioned), the latest upload wins.
    pub async fn resolve(&self, reference: &str) -> Result<String, RegistryError> {
        let want = reference.to_ascii_lowercase();
        let is_hex = !want.is_empty() && want.chars().all(|c| c.is_ascii_hexdigit());
        if is_hex && want.len() == 64 {
            return self.meta(&want).await.map(|m| m.hash);
        }
        let all = self.list().await?;
        let latest = |it: Vec<&ModuleMeta>| it.last().map(|m| m.hash.clone());
        if let Some((name, version)) = reference.split_once('@') {
            let hit = latest(
                all.iter()
                    .filter(|m| {
                        m.name.as_deref() == Some(name) && m.version.as_deref() == Some(version)
                    })
                    .collect(),
            );
            return hit.ok_or_else(|| RegistryError::NotFound(reference.to_string()));
        }
        let by_name = latest(
            all.iter()
                .filter(|m| m.name.as_deref() == Some(reference))
                .collect(),
        );
        if let Some(hash) = by_name {
            return Ok(hash);
        }
        if !is_hex || want.len() < 8 {
            return Err(RegistryError::NotFound(format!(
                "{reference} (give a module name, NAME@VERSION, or at least 8 hex digits of its hash)"
            )));
        }
        let matches: Vec<_> = all.iter().filter(|m| m.hash.starts_with(&want)).collect();
        match matches.as_slice() {
            [one] => Ok(one.hash.clone()),
            [] => Err(RegistryError::NotFound(reference.to_string())),
            _ => Err(RegistryError::Ambiguous(reference.to_string())),
        }
    }

    /// The compiled module `hash`, fetched from the object store if this
    /// broker has not loaded it yet.
    pub async fn module(&self, hash: &str) -> Result<Arc<Module>, RegistryError> {
        if let Some(m) = self.loaded.lock().get(hash) {
            return Ok(m);
        }
        let wasm = self.get(&paths::module_wasm(hash)).await?;
        if Host::hash(&wasm) != hash {
            return Err(RegistryError::Corrupt(hash.to_string()));
        }
        self.compile(wasm).await
    }
}
