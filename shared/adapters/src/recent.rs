//! What an execution environment saw lately, bounded: a hint that lets a request plan
//! its write without reading first (SPEC §10). Never an authority: whatever is planned
//! from it is checked by the write's conditions, so a stale entry costs a refused write
//! and a read, not a wrong effect.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// At most `capacity` entries, the least recently used forgotten first.
pub struct Recent<K: Hash + Eq, V> {
    entries: Mutex<LruCache<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN))),
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
