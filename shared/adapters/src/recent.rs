//! What an execution environment saw lately, bounded: a hint that lets a request plan
//! its write without reading first (SPEC §10). Never an authority: whatever is planned
//! from it is checked by the write's conditions, so a stale entry costs a refused write
//! and a read, not a wrong effect.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// At most `capacity` entries, the least recently used forgotten first.
pub struct Recent<K: Hash + Eq, V> {
    entries: Mutex<LruCache<K, V, IdHashing>>,
}

/// Hashing for keys that are server-made ids (ULIDs: 80 random bits): a multiply-rotate
/// mix of their words under a per-process random seed, a fraction of SipHash's cost on
/// every request that remembers or looks up. Only ids the service made are stored, so
/// there is nothing for a caller to collide with.
#[derive(Clone, Copy)]
pub struct IdHashing(u64);

impl IdHashing {
    fn new() -> Self {
        Self(RandomState::new().hash_one(0x6669_6e74_7821_u64))
    }
}

impl BuildHasher for IdHashing {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

pub struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_u128(&mut self, value: u128) {
        self.mix(value as u64);
        self.mix((value >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::with_hasher(capacity, IdHashing::new())),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Remembers `value` under `key`, unless `keep(known)` says the entry already held
    /// is to be kept (it is newer, say).
    pub fn remember(&self, key: K, value: V, keep: impl FnOnce(&V) -> bool) {
        let Ok(mut entries) = self.entries.lock() else { return };
        match entries.get_mut(&key) {
            Some(known) if keep(known) => {}
            Some(known) => *known = value,
            None => {
                entries.put(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_what_it_is_told_to_and_forgets_the_least_recently_used() {
        let recent = Recent::new(2);
        recent.remember(1, 10, |_| false);
        recent.remember(1, 9, |known| *known > 9);
        assert_eq!(recent.get(&1), Some(10), "a newer entry is kept");
        recent.remember(1, 11, |known| *known > 11);
        assert_eq!(recent.get(&1), Some(11));
        recent.remember(2, 20, |_| false);
        assert_eq!(recent.get(&1), Some(11), "1 is now the most recently used");
        recent.remember(3, 30, |_| false);
        assert_eq!(
            (recent.get(&2), recent.get(&1), recent.get(&3)),
            (None, Some(11), Some(30))
        );
    }
}
