//! A byte-bounded, least-recently-used cache of loaded models.
//!
//! [`ModelCache`] maps a key (typically a model's CID or folder) to a loaded model held as an
//! [`Arc`]. The cache is bounded by the *bytes* its entries report when they are loaded
//! (default [`DEFAULT_CACHE_BYTES`], 10 GB), not by the number of entries: after every
//! insertion the least recently used entries are evicted until the total fits again.
//!
//! Properties:
//!
//! - Thread-safe: every method takes `&self`; the state sits behind one [`Mutex`], which is
//!   never held while a model loads.
//! - No double loads: concurrent [`ModelCache::get_or_load`] calls for the same key wait for
//!   the one load in progress instead of starting their own.
//! - A failed (or panicking) load is not cached; the error goes back to the caller that
//!   loaded, and the callers that were waiting for it retry the load themselves.
//! - Eviction only drops the cache's reference. A model evicted while a caller still holds its
//!   `Arc` stays alive, and its memory is freed when the last user drops it; the cache's byte
//!   count no longer includes it from the moment it is evicted.
//! - An entry larger than the whole capacity is still inserted and returned (an insertion
//!   never evicts the entry being inserted); it is evicted by the next insertion.
//!
//! Each operation is O(log n): a [`HashMap`] holds the entries and a [`BTreeMap`] keyed by a
//! monotonically increasing use counter holds the recency order.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The default capacity of a [`ModelCache`]: 10 GB (10 000 000 000 bytes).
pub const DEFAULT_CACHE_BYTES: u64 = 10_000_000_000;

/// A snapshot of a [`ModelCache`]'s size and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Models currently cached (loads in progress are not counted).
    pub entries: usize,
    /// The sum of the cached models' sizes, in bytes.
    pub bytes: u64,
    /// The capacity in bytes.
    pub capacity: u64,
    /// Lookups answered from the cache: [`ModelCache::get`] finding the key, and
    /// [`ModelCache::get_or_load`] finding it cached or waiting for another caller's load.
    pub hits: u64,
    /// Lookups not answered from the cache: [`ModelCache::get`] not finding the key, and
    /// [`ModelCache::get_or_load`] calling its loader.
    pub misses: u64,
    /// Entries evicted to stay within capacity (explicit [`ModelCache::remove`]s not counted).
    pub evictions: u64,
}

/// A cached model.
struct Entry<V> {
    value: Arc<V>,
    bytes: u64,
    /// The use counter value at the last use; the entry's key in `Inner::order`.
    tick: u64,
}

/// What the map holds for a key.
enum Slot<V> {
    Ready(Entry<V>),
    /// A caller is running the loader for this key; others wait on `ModelCache::loaded`.
    Loading,
}

/// The result of a lookup under the lock.
enum Lookup<V> {
    Hit(Arc<V>),
    Loading,
    Absent,
}

struct Inner<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Ready entries by last use, oldest first.
    order: BTreeMap<u64, K>,
    next_tick: u64,
    bytes: u64,
    capacity: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl<K: Eq + Hash + Clone, V> Inner<K, V> {
    /// Looks `key` up, marking a ready entry as the most recently used.
    fn lookup(&mut self, key: &K) -> Lookup<V> {
        match self.map.get_mut(key) {
            None => Lookup::Absent,
            Some(Slot::Loading) => Lookup::Loading,
            Some(Slot::Ready(entry)) => {
                let tick = self.next_tick;
                self.next_tick += 1;
                let old = std::mem::replace(&mut entry.tick, tick);
                if let Some(k) = self.order.remove(&old) {
                    self.order.insert(tick, k);
                }
                Lookup::Hit(Arc::clone(&entry.value))
            }
        }
    }

    /// Stores a loaded value as the most recently used entry (replacing the loading marker).
    fn insert_ready(&mut self, key: &K, value: Arc<V>, bytes: u64) {
        let tick = self.next_tick;
        self.next_tick += 1;
        let old = self
            .map
            .insert(key.clone(), Slot::Ready(Entry { value, bytes, tick }));
        if let Some(Slot::Ready(old)) = old {
            // Not reached (only the loader replaces its marker), but keep the books right.
            self.order.remove(&old.tick);
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
        self.order.insert(tick, key.clone());
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Evicts least-recently-used entries until the total fits, never evicting `keep`.
    /// Returns the evicted values so that they are dropped after the lock is released.
    fn evict_to_fit(&mut self, keep: &K) -> Vec<Arc<V>> {
        let mut evicted = Vec::new();
        while self.bytes > self.capacity {
            match self.order.first_key_value() {
                Some((_, oldest)) if oldest != keep => {}
                // Empty, or only `keep` (the newest) is left.
                _ => break,
            }
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(Slot::Ready(entry)) = self.map.remove(&key) {
                self.bytes = self.bytes.saturating_sub(entry.bytes);
                self.evictions += 1;
                tracing::debug!(
                    bytes = entry.bytes,
                    total = self.bytes,
                    capacity = self.capacity,
                    "evicted model from cache"
                );
                evicted.push(entry.value);
            }
        }
        evicted
    }
}

/// A thread-safe LRU cache of loaded models, bounded by bytes.
///
/// Values are handed out as [`Arc<V>`]. Evicting or removing an entry only drops the cache's
/// own reference: a model still in use by a caller stays alive until the last `Arc` is
/// dropped, and only then is its memory freed. See the [module documentation](crate::cache) for the
/// full behaviour.
pub struct ModelCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    /// Signalled whenever a load finishes (successfully or not).
    loaded: Condvar,
}

impl<K: Eq + Hash + Clone, V> ModelCache<K, V> {
    /// An empty cache holding at most `capacity_bytes` bytes of models (see
    /// [`ModelCache::get_or_load`] for the one exception: a single oversize entry).
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                next_tick: 0,
                bytes: 0,
                capacity: capacity_bytes,
                hits: 0,
                misses: 0,
                evictions: 0,
            }),
            loaded: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the cached model for `key`, or loads it with `load`, which returns the model
    /// and its size in bytes, and caches it.
    ///
    /// - Concurrent callers asking for the same key while it loads wait for that one load
    ///   and then get its result (no double load). `load` runs without the cache's lock
    ///   held, so loads of different keys run in parallel and other lookups are not blocked.
    /// - A failed load is not cached: its error goes to the caller whose `load` ran, and the
    ///   callers that were waiting retry with their own `load` (one of them loads, the others
    ///   wait again). The same holds if `load` panics: the panic goes on in the loading
    ///   caller and the waiters retry.
    /// - After insertion, least-recently-used entries are evicted until the total size is at
    ///   most the capacity. The entry being inserted is never evicted by its own insertion:
    ///   a single model bigger than the whole capacity is still cached and returned (all
    ///   other entries are evicted to make room), and it is evicted by the next insertion.
    /// - Evicted models that callers still hold stay alive through their `Arc`s; their
    ///   memory is freed when the last user drops them.
    pub fn get_or_load<E>(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<(V, u64), E>,
    ) -> Result<Arc<V>, E> {
        let mut inner = self.lock();
        loop {
            match inner.lookup(key) {
                Lookup::Hit(value) => {
                    inner.hits += 1;
                    return Ok(value);
                }
                Lookup::Loading => {
                    inner = self.loaded.wait(inner).unwrap_or_else(|e| e.into_inner());
                }
                Lookup::Absent => break,
            }
        }
        inner.map.insert(key.clone(), Slot::Loading);
        inner.misses += 1;
        drop(inner);

        // Removes the loading marker and wakes the waiters if `load` fails or panics.
        let mut guard = LoadGuard {
            cache: self,
            key,
            armed: true,
        };
        let (value, bytes) = load()?;
        guard.armed = false;

        let value = Arc::new(value);
        let evicted = {
            let mut inner = self.lock();
            inner.insert_ready(key, Arc::clone(&value), bytes);
            if bytes > inner.capacity {
                tracing::warn!(
                    bytes,
                    capacity = inner.capacity,
                    "model is larger than the cache capacity; cached until the next insertion"
                );
            }
            inner.evict_to_fit(key)
        };
        self.loaded.notify_all();
        // The cache's references to evicted models are dropped here, outside the lock.
        drop(evicted);
        Ok(value)
    }

    /// Whether `key` is loaded now (not counted as a hit or miss, recency unchanged).
    pub fn contains(&self, key: &K) -> bool {
        matches!(self.lock().map.get(key), Some(Slot::Ready(_)))
    }

    /// Returns the cached model for `key`, marking it as the most recently used, or `None`
    /// if it is not cached (including while it is still loading: `get` never waits).
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut inner = self.lock();
        match inner.lookup(key) {
            Lookup::Hit(value) => {
                inner.hits += 1;
                Some(value)
            }
            Lookup::Loading | Lookup::Absent => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Removes `key` from the cache and returns the cache's reference to it, or `None` if it
    /// is not cached. A load in progress for `key` is not affected (its result is cached
    /// when it finishes).
    pub fn remove(&self, key: &K) -> Option<Arc<V>> {
        let mut inner = self.lock();
        // A loading marker stays: only its loader may take it out.
        let Some(Slot::Ready(_)) = inner.map.get(key) else {
            return None;
        };
        let Some(Slot::Ready(entry)) = inner.map.remove(key) else {
            return None;
        };
        inner.order.remove(&entry.tick);
        inner.bytes = inner.bytes.saturating_sub(entry.bytes);
        Some(entry.value)
    }

    /// A snapshot of the cache's size and counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.order.len(),
            bytes: inner.bytes,
            capacity: inner.capacity,
            hits: inner.hits,
            misses: inner.misses,
            evictions: inner.evictions,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Default for ModelCache<K, V> {
    /// An empty cache of [`DEFAULT_CACHE_BYTES`].
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BYTES)
    }
}

impl<K: Eq + Hash + Clone, V> fmt::Debug for ModelCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelCache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Undoes a load's marker unless disarmed: on error or panic in the loader, the key is
/// removed again and waiters are woken so that they can retry.
struct LoadGuard<'a, K: Eq + Hash + Clone, V> {
    cache: &'a ModelCache<K, V>,
    key: &'a K,
    armed: bool,
}

impl<K: Eq + Hash + Clone, V> Drop for LoadGuard<'_, K, V> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        {
            let mut inner = self.cache.lock();
            if matches!(inner.map.get(self.key), Some(Slot::Loading)) {
                inner.map.remove(self.key);
            }
        }
        self.cache.loaded.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    fn ok(value: &'static str, bytes: u64) -> impl FnOnce() -> Result<(&'static str, u64), String> {
        move || Ok((value, bytes))
    }

    fn keys(cache: &ModelCache<&'static str, &'static str>) -> Vec<&'static str> {
        let inner = cache.lock();
        inner.order.values().copied().collect()
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let cache = ModelCache::new(300);
        cache.get_or_load(&"a", ok("A", 100)).expect("load");
        cache.get_or_load(&"b", ok("B", 100)).expect("load");
        cache.get_or_load(&"c", ok("C", 100)).expect("load");
        // Touch "a": "b" is now the least recently used.
        assert_eq!(*cache.get(&"a").expect("cached"), "A");
        cache.get_or_load(&"d", ok("D", 100)).expect("load");
        assert!(cache.get(&"b").is_none());
        assert_eq!(keys(&cache), ["c", "a", "d"]);
        // A hit through get_or_load also counts as a use: "c" survives, "a" goes.
        cache
            .get_or_load(&"c", || -> Result<_, String> { panic!("must not load") })
            .expect("load");
        cache.get_or_load(&"e", ok("E", 150)).expect("load");
        assert_eq!(keys(&cache), ["c", "e"]);
        let stats = cache.stats();
        assert_eq!(stats.evictions, 3);
        assert_eq!(stats.bytes, 250);
    }

    #[test]
    fn byte_accounting() {
        let cache = ModelCache::new(1_000);
        cache.get_or_load(&"a", ok("A", 400)).expect("load");
        cache.get_or_load(&"b", ok("B", 350)).expect("load");
        assert_eq!(cache.stats().bytes, 750);
        assert_eq!(cache.stats().entries, 2);
        // Exactly at capacity: nothing evicted.
        cache.get_or_load(&"c", ok("C", 250)).expect("load");
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes, stats.evictions), (3, 1_000, 0));
        // One byte over: the oldest goes.
        cache.get_or_load(&"d", ok("D", 1)).expect("load");
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes, stats.evictions), (3, 601, 1));
        assert_eq!(*cache.remove(&"b").expect("removed"), "B");
        assert!(cache.remove(&"b").is_none());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes, stats.evictions), (2, 251, 1));
        cache.remove(&"c");
        cache.remove(&"d");
        assert_eq!(cache.stats().bytes, 0);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn oversize_entry_is_returned_then_evicted_next() {
        let cache = ModelCache::new(100);
        cache.get_or_load(&"small", ok("S", 60)).expect("load");
        let big = cache.get_or_load(&"big", ok("BIG", 500)).expect("load");
        assert_eq!(*big, "BIG");
        // Everything else went to make room; the big one stays until the next insertion.
        assert_eq!(keys(&cache), ["big"]);
        assert_eq!(cache.stats().bytes, 500);
        assert_eq!(*cache.get(&"big").expect("cached"), "BIG");
        cache.get_or_load(&"next", ok("N", 10)).expect("load");
        assert_eq!(keys(&cache), ["next"]);
        assert_eq!(cache.stats().bytes, 10);
        // The caller's Arc still works after eviction.
        assert_eq!(*big, "BIG");
        assert_eq!(Arc::strong_count(&big), 1);
    }

    #[test]
    fn zero_capacity_keeps_only_the_latest() {
        let cache = ModelCache::new(0);
        cache.get_or_load(&"a", ok("A", 1)).expect("load");
        cache.get_or_load(&"b", ok("B", 1)).expect("load");
        assert_eq!(keys(&cache), ["b"]);
    }

    #[test]
    fn evicted_value_lives_while_in_use() {
        struct Model(Arc<AtomicUsize>);
        impl Drop for Model {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let cache = ModelCache::new(10);
        let d = Arc::clone(&drops);
        let held = cache
            .get_or_load(&1, || Ok::<_, ()>((Model(d), 10)))
            .expect("load");
        let d = Arc::clone(&drops);
        cache
            .get_or_load(&2, || Ok::<_, ()>((Model(d), 10)))
            .expect("load");
        assert!(cache.get(&1).is_none());
        assert_eq!(drops.load(Ordering::SeqCst), 0, "still held by the caller");
        drop(held);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(cache);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn concurrent_callers_share_one_load() {
        const THREADS: usize = 8;
        let cache = ModelCache::<&str, String>::new(DEFAULT_CACHE_BYTES);
        let loads = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        cache
                            .get_or_load(&"model", || {
                                loads.fetch_add(1, Ordering::SeqCst);
                                // Long enough that the others arrive while it loads.
                                thread::sleep(Duration::from_millis(100));
                                Ok::<_, String>(("weights".to_string(), 7))
                            })
                            .expect("load")
                    })
                })
                .collect();
            let values: Vec<Arc<String>> = handles
                .into_iter()
                .map(|h| h.join().expect("thread panicked"))
                .collect();
            for v in &values {
                assert!(Arc::ptr_eq(v, &values[0]));
            }
        });
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!(stats.misses, 1);
        assert_eq!(stats.hits, THREADS as u64 - 1);
        assert_eq!((stats.entries, stats.bytes), (1, 7));
    }

    #[test]
    fn failed_load_is_not_cached_and_waiters_retry() {
        let cache = ModelCache::<&str, u32>::new(100);
        let err = cache
            .get_or_load(&"m", || Err::<(u32, u64), _>("disk on fire"))
            .expect_err("load must fail");
        assert_eq!(err, "disk on fire");
        assert!(cache.get(&"m").is_none());
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(
            *cache
                .get_or_load(&"m", || Ok::<_, &str>((5, 1)))
                .expect("load"),
            5
        );

        // A failing loader with waiters: the waiters load again themselves.
        const THREADS: usize = 6;
        let cache = ModelCache::<&str, u32>::new(100);
        let loads = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        let results: Vec<Result<Arc<u32>, String>> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        cache.get_or_load(&"m", || {
                            let n = loads.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(50));
                            if n == 0 {
                                Err("first load fails".to_string())
                            } else {
                                Ok((42, 1))
                            }
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread panicked"))
                .collect()
        });
        let failures = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(failures, 1, "only the first loader sees its error");
        assert!(results.iter().flatten().all(|v| **v == 42));
        // The failure was not cached and the retry loaded exactly once more.
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(*cache.get(&"m").expect("cached"), 42);
    }

    #[test]
    fn panicking_load_releases_waiters() {
        let cache = ModelCache::<&str, u32>::new(100);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.get_or_load(&"m", || -> Result<(u32, u64), ()> { panic!("loader bug") })
        }));
        assert!(result.is_err());
        // Not stuck in the loading state: the next caller loads.
        assert_eq!(
            *cache
                .get_or_load(&"m", || Ok::<_, ()>((1, 1)))
                .expect("load"),
            1
        );
    }

    #[test]
    fn stats_count_hits_misses_evictions() {
        let cache = ModelCache::new(200);
        assert_eq!(
            cache.stats(),
            CacheStats {
                entries: 0,
                bytes: 0,
                capacity: 200,
                hits: 0,
                misses: 0,
                evictions: 0
            }
        );
        assert!(cache.get(&"a").is_none()); // miss
        cache.get_or_load(&"a", ok("A", 100)).expect("load"); // miss (load)
        cache.get_or_load(&"a", ok("A", 100)).expect("load"); // hit
        cache.get(&"a").expect("cached"); // hit
        cache.get_or_load(&"b", ok("B", 100)).expect("load"); // miss
        cache.get_or_load(&"c", ok("C", 100)).expect("load"); // miss, evicts "a"
        assert_eq!(
            cache.stats(),
            CacheStats {
                entries: 2,
                bytes: 200,
                capacity: 200,
                hits: 2,
                misses: 4,
                evictions: 1
            }
        );
        let json = serde_json::to_value(cache.stats()).expect("serializes");
        assert_eq!(json["capacity"], 200);
        assert_eq!(
            ModelCache::<u8, u8>::default().stats().capacity,
            DEFAULT_CACHE_BYTES
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ModelCache<String, Vec<u8>>>();
    }
}
