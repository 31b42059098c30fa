//! Per-key state with bounded memory and deterministic LRU eviction.

use std::collections::HashMap;
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

/// "No slot" in the LRU links.
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Slot<V> {
    key: Vec<u8>,
    value: V,
    /// Next older slot ([`NIL`]: this is the least recently used).
    older: u32,
    /// Next newer slot ([`NIL`]: this is the most recently used).
    newer: u32,
}

/// State per key (card, host, user…) holding at most `max_keys` keys; when
/// a new key arrives at the limit, the least recently used key is evicted
/// and counted.
///
/// Eviction order depends only on the sequence of accesses, not on hash
/// order or time, so it is identical natively and in wasm and across
/// snapshot/restore. Snapshots list entries in LRU order.
///
/// The recency order is a doubly linked list through a dense slot vector
/// (indices, no pointers), so an access is one hash lookup and a few index
/// writes; no allocation except for a key not seen before. (An ordered map
/// from a use counter to the key, as before, cost a tree removal and
/// insertion per access: a fifth of a detector's guest time in wasm.)
#[derive(Debug, Clone)]
pub struct KeyedState<V> {
    max_keys: usize,
    /// Key → index into `slots`.
    map: FixedMap<Vec<u8>, u32>,
    slots: Vec<Slot<V>>,
    /// Least recently used slot ([`NIL`] when empty).
    oldest: u32,
    /// Most recently used slot ([`NIL`] when empty).
    newest: u32,
    evictions: u64,
}

/// Equal when both hold the same entries in the same recency order, with
/// the same limit and eviction count (how the slots are laid out inside
/// does not matter).
impl<V: PartialEq> PartialEq for KeyedState<V> {
    fn eq(&self, other: &Self) -> bool {
        self.max_keys == other.max_keys
            && self.evictions == other.evictions
            && self.len() == other.len()
            && self.iter().eq(other.iter())
    }
}

/// A slot index as stored in the links; `max_keys` is far below `u32::MAX`
/// in practice, and [`KeyedState::new`] caps it there.
fn idx(i: usize) -> u32 {
    i as u32
}

impl<V> KeyedState<V> {
    /// Room for `max_keys` (at least 1, at most `u32::MAX - 1`) keys.
    pub fn new(max_keys: usize) -> Self {
        KeyedState {
            max_keys: max_keys.clamp(1, (NIL - 1) as usize),
            map: FixedMap::default(),
            slots: Vec::new(),
            oldest: NIL,
            newest: NIL,
            evictions: 0,
        }
    }

    /// Takes slot `i` out of the recency list (it stays in `slots`).
    fn unlink(&mut self, i: u32) {
        let (older, newer) = {
            let s = &self.slots[i as usize];
            (s.older, s.newer)
        };
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o as usize].newer = newer,
        }
        match newer {
            NIL => self.newest = older,
            n => self.slots[n as usize].older = older,
        }
    }

    /// Appends slot `i` (not in the list) as the most recently used.
    fn push_newest(&mut self, i: u32) {
        let prev = self.newest;
        {
            let s = &mut self.slots[i as usize];
            s.older = prev;
            s.newer = NIL;
        }
        match prev {
            NIL => self.oldest = i,
            p => self.slots[p as usize].newer = i,
        }
        self.newest = i;
    }

    /// Marks slot `i` as the most recently used.
    fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.push_newest(i);
        }
    }

    /// Removes slot `i` from the list, the map and `slots` (the last slot
    /// moves into its place) and returns its key and value.
    fn take(&mut self, i: u32) -> (Vec<u8>, V) {
        self.unlink(i);
        let last = idx(self.slots.len() - 1);
        let slot = self.slots.swap_remove(i as usize);
        self.map.remove(&slot.key);
        if i != last {
            // The former last slot now lives at `i`: repoint its neighbours
            // and its map entry.
            let (older, newer) = {
                let s = &self.slots[i as usize];
                (s.older, s.newer)
            };
            match older {
                NIL => self.oldest = i,
                o => self.slots[o as usize].newer = i,
            }
            match newer {
                NIL => self.newest = i,
                n => self.slots[n as usize].older = i,
            }
            if let Some(m) = self.map.get_mut(self.slots[i as usize].key.as_slice()) {
                *m = i;
            }
        }
        (slot.key, slot.value)
    }

    /// The state of `key`, created with `f` if absent (evicting the least
    /// recently used key when full). Marks `key` as most recently used.
    pub fn get_or_insert_with(&mut self, key: impl AsRef<[u8]>, f: impl FnOnce() -> V) -> &mut V {
        let key = key.as_ref();
        let i = match self.map.get(key) {
            Some(&i) => {
                self.touch(i);
                i
            }
            None => {
                if self.map.len() >= self.max_keys {
                    self.evict_oldest();
                }
                let i = idx(self.slots.len());
                self.slots.push(Slot {
                    key: key.to_vec(),
                    value: f(),
                    older: NIL,
                    newer: NIL,
                });
                self.map.insert(key.to_vec(), i);
                self.push_newest(i);
                i
            }
        };
        &mut self.slots[i as usize].value
    }

    /// Removes the least recently used entry, returning it.
    pub fn evict_oldest(&mut self) -> Option<(Vec<u8>, V)> {
        if self.oldest == NIL {
            return None;
        }
        let entry = self.take(self.oldest);
        self.evictions += 1;
        Some(entry)
    }

    /// The state of `key`, without marking it used.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&V> {
        let &i = self.map.get(key.as_ref())?;
        Some(&self.slots[i as usize].value)
    }

    /// The state of `key`, marking it as most recently used.
    pub fn get_mut(&mut self, key: impl AsRef<[u8]>) -> Option<&mut V> {
        let &i = self.map.get(key.as_ref())?;
        self.touch(i);
        Some(&mut self.slots[i as usize].value)
    }

    /// Removes `key` (not counted as an eviction).
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Option<V> {
        let &i = self.map.get(key.as_ref())?;
        Some(self.take(i).1)
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
        let mut at = self.oldest;
        std::iter::from_fn(move || {
            let s = self.slots.get(at as usize)?;
            at = s.newer;
            Some((s.key.as_slice(), &s.value))
        })
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
    fn removals_anywhere_keep_the_order_and_the_index() {
        // `remove` and evictions move the last slot into the freed one;
        // the recency order and every lookup must survive that.
        let mut k: KeyedState<u64> = KeyedState::new(20);
        let mut model: Vec<(String, u64)> = Vec::new(); // oldest first
        for (i, x) in crate::blocks::stats::tests::noise(3000, 5)
            .iter()
            .enumerate()
        {
            let key = format!("k{}", (x * 30.0) as u32);
            if i % 7 == 3 {
                let got = k.remove(&key);
                let want = model
                    .iter()
                    .position(|(m, _)| *m == key)
                    .map(|p| model.remove(p).1);
                assert_eq!(got, want, "remove {key} at step {i}");
                continue;
            }
            *k.get_or_insert_with(&key, || 0) += i as u64;
            match model.iter().position(|(m, _)| *m == key) {
                Some(p) => {
                    let (m, v) = model.remove(p);
                    model.push((m, v + i as u64));
                }
                None => {
                    if model.len() == 20 {
                        model.remove(0);
                    }
                    model.push((key, i as u64));
                }
            }
            let got: Vec<(&[u8], u64)> = k.iter().map(|(key, v)| (key, *v)).collect();
            let want: Vec<(&[u8], u64)> = model.iter().map(|(m, v)| (m.as_bytes(), *v)).collect();
            assert_eq!(got, want, "step {i}");
            for (m, v) in &model {
                assert_eq!(k.get(m), Some(v), "lookup {m} at step {i}");
            }
        }
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
