//! Versioned keys on an object store that only promises `PutMode::Create`
//! (LocalFileSystem cannot do `PutMode::Update`): each logical key is a
//! directory of numbered version objects, `<key>/<version:020>`, and its
//! value is the highest one. A compare-and-swap at version `v` creates
//! `v + 1`: of concurrent writers exactly one succeeds.
//!
//! Old versions are deleted, and a create can land in a deleted slot; so
//! every write lists the key again after its create and counts only if no
//! higher version exists (pruning only removes versions below a newer one,
//! so a resurrected slot always has a newer version beside it, which the
//! listing sees). The loser deletes its object again.
//!
//! Body: one tag byte (`v` value, `d` deleted), a 16-byte nonce (tells our
//! own create whose reply was lost from someone else's), the value.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{CoordError, Result};

const VALUE: u8 = b'v';
const DELETED: u8 = b'd';
const NONCE_LEN: usize = 16;

/// The newest version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub version: u64,
    /// `None`: deleted.
    pub value: Option<Bytes>,
}

/// Versioned keys on one object store.
#[derive(Clone)]
pub(crate) struct Versioned {
    pub store: Arc<dyn ObjectStore>,
}

fn version_path(key: &str, version: u64) -> Path {
    Path::from(format!("{key}/{version:020}"))
}

/// `(key, version)` of a version object's path.
pub(crate) fn parse_version_path(path: &Path) -> Option<(String, u64)> {
    let s = path.as_ref();
    let (key, v) = s.rsplit_once('/')?;
    if v.len() != 20 {
        return None;
    }
    Some((key.to_string(), v.parse().ok()?))
}

impl Versioned {
    /// Versions of `key` (direct children only), ascending.
    pub async fn versions(&self, key: &str) -> Result<Vec<u64>> {
        let prefix = Path::from(key);
        let listing = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| CoordError::store("list", key, e))?;
        let mut v: Vec<u64> = listing
            .objects
            .iter()
            .filter_map(|m| parse_version_path(&m.location))
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Reads one version's body: `None` if it is gone (pruned meanwhile).
    async fn read(&self, key: &str, version: u64) -> Result<Option<(u8, [u8; NONCE_LEN], Bytes)>> {
        let path = version_path(key, version);
        let bytes = match self.store.get(&path).await {
            Ok(g) => g
                .bytes()
                .await
                .map_err(|e| CoordError::store("get", path.as_ref(), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(CoordError::store("get", path.as_ref(), e)),
        };
        if bytes.len() < 1 + NONCE_LEN || ![VALUE, DELETED].contains(&bytes[0]) {
            return Err(CoordError::corrupt(
                "coordinator record",
                path.as_ref(),
                "bad header",
            ));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[1..1 + NONCE_LEN]);
        Ok(Some((bytes[0], nonce, bytes.slice(1 + NONCE_LEN..))))
    }

    /// The newest version of `key`, if any.
    pub async fn head(&self, key: &str) -> Result<Option<Head>> {
        // A version can be pruned between the listing and the read: then a
        // newer one exists, so list again (bounded: pruning needs writes).
        for _ in 0..8 {
            let Some(&version) = self.versions(key).await?.last() else {
                return Ok(None);
            };
            if let Some((tag, _, value)) = self.read(key, version).await? {
                return Ok(Some(Head {
                    version,
                    value: (tag == VALUE).then_some(value),
                }));
            }
        }
        Err(CoordError::store(
            "get",
            key,
            "versions kept disappearing while reading",
        ))
    }

    /// The newest version number of every key whose full key starts with
    /// `prefix` (one listing of the enclosing directory).
    pub async fn newest(&self, prefix: &str) -> Result<std::collections::BTreeMap<String, u64>> {
        // Object store prefixes match whole segments: list the directory
        // and filter by the full prefix.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let path = Path::from(dir);
        let metas: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| CoordError::store("list", prefix, e))?;
        let mut newest: std::collections::BTreeMap<String, u64> = Default::default();
        for m in &metas {
            if let Some((k, v)) = parse_version_path(&m.location) {
                if k.starts_with(prefix) {
                    let e = newest.entry(k).or_default();
                    *e = (*e).max(v);
                }
            }
        }
        Ok(newest)
    }

    /// The newest version of every key whose full key starts with `prefix`.
    pub async fn heads(&self, prefix: &str) -> Result<Vec<(String, Head)>> {
        let newest = self.newest(prefix).await?;
        let mut out = Vec::with_capacity(newest.len());
        for (key, version) in newest {
            let head = match self.read(&key, version).await? {
                Some((tag, _, value)) => Head {
                    version,
                    value: (tag == VALUE).then_some(value),
                },
                None => match self.head(&key).await? {
                    Some(h) => h,
                    None => continue,
                },
            };
            out.push((key, head));
        }
        Ok(out)
    }

    /// The newest version of `key` if it is `version` (`None` otherwise).
    pub async fn read_version(&self, key: &str, version: u64) -> Result<Option<Head>> {
        Ok(self.read(key, version).await?.map(|(tag, _, value)| Head {
            version,
            value: (tag == VALUE).then_some(value),
        }))
    }

    /// Writes version `version` of `key` (a value, or a deletion with
    /// `None`) if it is the next one: `Ok(false)` when another writer got
    /// there first.
    pub async fn create(&self, key: &str, version: u64, value: Option<&[u8]>) -> Result<bool> {
        let path = version_path(key, version);
        let nonce = *uuid::Uuid::new_v4().as_bytes();
        let mut body = Vec::with_capacity(1 + NONCE_LEN + value.map_or(0, <[u8]>::len));
        body.push(if value.is_some() { VALUE } else { DELETED });
        body.extend_from_slice(&nonce);
        body.extend_from_slice(value.unwrap_or_default());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let landed = match self
            .store
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Ours, if a retried request's first attempt had landed.
                matches!(self.read(key, version).await?, Some((_, n, _)) if n == nonce)
            }
            Err(e) => match self.read(key, version).await {
                Ok(Some((_, n, _))) if n == nonce => true,
                _ => return Err(CoordError::store("put", path.as_ref(), e)),
            },
        };
        if !landed {
            return Ok(false);
        }
        let versions = self.versions(key).await?;
        if versions.last().is_some_and(|v| *v > version) {
            // We landed in a pruned slot below a newer version: not a win.
            let _ = self.store.delete(&path).await;
            return Ok(false);
        }
        // Keep the previous version (a reader may be between listing and
        // reading it); older ones go.
        for old in versions.iter().filter(|v| **v + 1 < version) {
            let _ = self.store.delete(&version_path(key, *old)).await;
        }
        Ok(true)
    }
}
