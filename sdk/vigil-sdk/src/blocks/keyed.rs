//! Per-key state with bounded memory and deterministic LRU eviction.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// FNV-1a: a fixed hash, so lookups behave identically natively and in
/// wasm (which has no randomness to seed std's default hasher). Keys come
/// from the partition's records; a detector keyed by attacker-chosen keys
/// is bounded by `max_keys` anyway.
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

#[derive(Debug, Clone, PartialEq)]
struct Slot<V> {
    value: V,
    /// When the key was last used; the key with the smallest tick is
    /// evicted first.
    tick: u64,
}

/// State per key (card, host, user…) holding at most `max_keys` keys; when
/// a new key arrives at the limit, the least recently used key is evicted
/// and counted.
///
/// Eviction order depends only on the sequence of accesses (a use counter,
/// not hash order or time), so it is identical natively and in wasm and
/// across snapshot/restore. Snapshots list entries in LRU order.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedState<V> {
    max_keys: usize,
    map: FixedMap<Vec<u8>, Slot<V>>,
    /// tick → key, oldest first.
    lru: BTreeMap<u64, Vec<u8>>,
    next_tick: u64,
    evictions: u64,
}

impl<V> KeyedState<V> {
    /// Room for `max_keys` (at least 1) keys.
    pub fn new(max_keys: usize) -> Self {
        KeyedState {
            max_keys: max_keys.max(1),
            map: FixedMap::default(),
            lru: BTreeMap::new(),
            next_tick: 0,
            evictions: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        let t = self.next_tick;
        self.next_tick += 1;
        t
    }

    /// The state of `key`, created with `f` if absent (evicting the least
    /// recently used key when full). Marks `key` as most recently used.
    pub fn get_or_insert_with(&mut self, key: impl AsRef<[u8]>, f: impl FnOnce() -> V) -> &mut V {
        let key = key.as_ref();
        let tick = self.tick();
        if let Some(slot) = self.map.get_mut(key) {
            let old = std::mem::replace(&mut slot.tick, tick);
            if let Some(k) = self.lru.remove(&old) {
                self.lru.insert(tick, k);
            }
        } else {
            if self.map.len() >= self.max_keys {
                self.evict_oldest();
            }
            self.map.insert(key.to_vec(), Slot { value: f(), tick });
            self.lru.insert(tick, key.to_vec());
        }
        // Present: found or inserted just above.
        match self.map.get_mut(key) {
            Some(slot) => &mut slot.value,
            None => unreachable!("key was just inserted"),
        }
    }

    /// Removes the least recently used entry, returning it.
    pub fn evict_oldest(&mut self) -> Option<(Vec<u8>, V)> {
        let (_, key) = self.lru.pop_first()?;
        let slot = self.map.remove(&key)?;
        self.evictions += 1;
        Some((key, slot.value))
    }

    /// The state of `key`, without marking it used.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&V> {
        self.map.get(key.as_ref()).map(|s| &s.value)
    }

    /// The state of `key`, marking it as most recently used.
    pub fn get_mut(&mut self, key: impl AsRef<[u8]>) -> Option<&mut V> {
        let key = key.as_ref();
        if !self.map.contains_key(key) {
            return None;
        }
        let tick = self.tick();
        let slot = self.map.get_mut(key)?;
        let old = std::mem::replace(&mut slot.tick, tick);
        if let Some(k) = self.lru.remove(&old) {
            self.lru.insert(tick, k);
        }
        Some(&mut slot.value)
    }

    /// Removes `key` (not counted as an eviction).
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Option<V> {
        let slot = self.map.remove(key.as_ref())?;
        self.lru.remove(&slot.tick);
        Some(slot.value)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The key limit.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Keys evicted so far to stay within `max_keys`.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Entries from least to most recently used.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.lru
            .values()
            .filter_map(|k| self.map.get(k).map(|s| (k.as_slice(), &s.value)))
    }
}

/// The serialized form: entries in LRU order, ticks renumbered from 0 on
/// restore (only their order matters).
#[derive(Serialize)]
struct ReprRef<'a, V> {
    max_keys: usize,
    evictions: u64,
    entries: Vec<(&'a [u8], &'a V)>,
}

#[derive(Deserialize)]
struct Repr<V> {
    max_keys: usize,
    evictions: u64,
    entries: Vec<(Vec<u8>, V)>,
}

impl<V: Serialize> Serialize for KeyedState<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReprRef {
            max_keys: self.max_keys,
            evictions: self.evictions,
            entries: self.iter().collect(),
        }
        .serialize(s)
    }
}

impl<'de, V: DeserializeOwned> Deserialize<'de> for KeyedState<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = Repr::<V>::deserialize(d)?;
        let mut k = KeyedState::new(r.max_keys);
        for (key, value) in r.entries {
            k.get_or_insert_with(key, || value);
        }
        k.evictions = r.evictions;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction_is_by_use_not_insertion() {
        let mut k: KeyedState<u32> = KeyedState::new(3);
        *k.get_or_insert_with("a", || 0) += 1;
        *k.get_or_insert_with("b", || 0) += 1;
        *k.get_or_insert_with("c", || 0) += 1;
        // Touch "a": "b" becomes the oldest.
        *k.get_or_insert_with("a", || 0) += 1;
        *k.get_or_insert_with("d", || 10) += 1;
        assert_eq!(k.len(), 3);
        assert_eq!(k.evictions(), 1);
        assert_eq!(k.get("b"), None);
        assert_eq!(k.get("a"), Some(&2));
        assert_eq!(k.get("d"), Some(&11));
        let order: Vec<&[u8]> = k.iter().map(|(key, _)| key).collect();
        assert_eq!(order, vec![&b"c"[..], b"a", b"d"]);
        // get_mut touches; get does not.
        *k.get_mut("c").unwrap() += 5;
        assert_eq!(k.evict_oldest(), Some((b"a".to_vec(), 2)));
        assert_eq!(k.remove("d"), Some(11));
        assert_eq!(k.evictions(), 2);
        assert_eq!(k.get("c"), Some(&6));
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn matches_naive_lru_model_and_snapshots() {
        let mut k: KeyedState<u64> = KeyedState::new(50);
        let mut model: Vec<(String, u64)> = Vec::new(); // oldest first
        let mut evicted = 0;
        for (i, x) in crate::blocks::stats::tests::noise(5000, 11)
            .iter()
            .enumerate()
        {
            let key = format!("k{}", (x * 80.0) as u32);
            *k.get_or_insert_with(&key, || 0) += i as u64;
            match model.iter().position(|(m, _)| *m == key) {
                Some(p) => {
                    let (m, v) = model.remove(p);
                    model.push((m, v + i as u64));
                }
                None => {
                    if model.len() == 50 {
                        model.remove(0);
                        evicted += 1;
                    }
                    model.push((key, i as u64));
                }
            }
        }
        let got: Vec<(String, u64)> = k
            .iter()
            .map(|(key, v)| (String::from_utf8(key.to_vec()).unwrap(), *v))
            .collect();
        assert_eq!(got, model);
        assert_eq!(k.evictions(), evicted);
        let bytes = crate::state::to_bytes(&k).unwrap();
        let mut back: KeyedState<u64> = crate::state::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            k.iter().collect::<Vec<_>>()
        );
        assert_eq!(back.evictions(), evicted);
        // Restored state evicts the same key next.
        assert_eq!(back.evict_oldest(), k.evict_oldest());
        // Same accesses → same bytes.
        assert_eq!(
            crate::state::to_bytes(&back).unwrap(),
            crate::state::to_bytes(&k).unwrap()
        );
    }
}
