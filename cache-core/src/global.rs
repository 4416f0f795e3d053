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
    /// ```
    pub fn set_global(cache: Cache) {
        *GLOBAL.write().unwrap_or_else(|p| p.into_inner()) = Some(cache);
    }

    /// The process-wide default cache, if one is installed (a cheap clone of the handle).
    ///
    /// ```
    /// # use cache_core::Cache;
    /// if let Some(cache) = Cache::global() {
    ///     println!("default cache on {}", cache.store().backend());
    /// }
    /// ```
    pub fn global() -> Option<Cache> {
        GLOBAL.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Removes the process-wide default cache; returns it.
    ///
    /// ```
    /// # use cache_core::{Cache, MemoryStore};
    /// Cache::set_global(Cache::builder(MemoryStore::new()).build());
    /// let _previous = Cache::clear_global();
    /// ```
    pub fn clear_global() -> Option<Cache> {
        GLOBAL.write().unwrap_or_else(|p| p.into_inner()).take()
    }
}
