//! The process-wide default cache that the attribute macros use.

use std::sync::RwLock;

use crate::cache::Cache;

static GLOBAL: RwLock<Option<Cache>> = RwLock::new(None);

impl Cache {
    /// Installs `cache` as the process-wide default (replacing any earlier one). The
    /// `#[cache_result]` and `#[invalidate_cache]` macros use it when no `cache = ..` is given.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// Cache::set_global(Cache::builder(MemoryStore::new()).build());
    /// assert!(Cache::global().is_some());
    /// ```
    pub fn set_global(cache: Cache) {
        *GLOBAL.write().unwrap_or_else(|p| p.into_inner()) = Some(cache);
    }

    /// The process-wide default cache, if one is installed.
    pub fn global() -> Option<Cache> {
        GLOBAL.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Removes the process-wide default cache; returns it.
    pub fn clear_global() -> Option<Cache> {
        GLOBAL.write().unwrap_or_else(|p| p.into_inner()).take()
    }
}
