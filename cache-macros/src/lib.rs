//! Attribute macros for [cachemere](https://docs.rs/cachemere): [`macro@cache_result`] caches
//! what an async function returns, [`macro@invalidate_cache`] removes cached values when a
//! function changes the data behind them.
//!
//! Use them through `cachemere` (`use cachemere::{cache_result, invalidate_cache};`), or through
//! `cache_core` with its `macros` feature and `crate = "cache_core"`. Their documentation is
//! the manual: the options, what is checked at compile time, and the code each expansion stands
//! for.
//!
//! ```
//! use cachemere::{Cache, MemoryStore, cache_result, invalidate_cache};
//!
//! #[cache_result("user:profile:{user_id}", expire = 3600)]
//! async fn get_user_profile(user_id: u64) -> Result<String, std::io::Error> {
//!     Ok(format!("profile of {user_id}")) // a database query, in real life
//! }
//!
//! #[invalidate_cache("user:profile:{user_id}")]
//! async fn rename_user(user_id: u64, name: &str) -> Result<(), std::io::Error> {
//!     # let _ = name;
//!     Ok(()) // a database update
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! Cache::set_global(Cache::builder(MemoryStore::new()).build());
//! get_user_profile(42).await?; // runs the body, caches under "user:profile:42"
//! get_user_profile(42).await?; // served from the cache
//! rename_user(42, "Ada").await?; // removes "user:profile:42" once the update succeeded
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod attr;
mod error;
mod expand;
mod function;
mod key;

use proc_macro::TokenStream;

/// Caches what an async function returns, under a key built from its arguments.
///
/// ```
/// # use cachemere::cache_result;
/// # #[derive(serde::Serialize, serde::Deserialize, Clone)] struct Assignment;
/// # #[derive(Debug)] struct DbError;
/// #[cache_result("user:assignments:{user_id}", expire = 1800)]
/// async fn get_user_assignments(user_id: &str) -> Result<Vec<Assignment>, DbError> {
///     # let _ = user_id;
///     Ok(Vec::new()) // the query
/// }
/// ```
///
/// The first call with a given `user_id` runs the body and stores an `Ok` value under
/// `user:assignments:<user_id>` for 30 minutes; later calls read it back without running the
/// body. Concurrent calls that miss run the body once and share its value.
///
/// # Key templates
///
/// The first argument is the key, exactly as it appears in Redis (after the cache's
/// [prefix](https://docs.rs/cache-core/latest/cache_core/struct.CacheBuilder.html#method.prefix),
/// if it has one). Placeholders are formatted with `Display`:
///
/// | placeholder | value |
/// |---|---|
/// | `{user_id}` | the parameter `user_id` |
/// | `{user.id}` | a field of a parameter (fields of fields too: `{a.b.c}`) |
/// | `{self.tenant}` | a field of the receiver, in a method taking `&self` or `&mut self` |
/// | `{{`, `}}` | a literal brace |
///
/// Every placeholder is checked at compile time: one that names no parameter is an error
/// pointing at the template, with the closest parameter name as a suggestion. Include in the
/// key every argument the result depends on. `*` is not allowed (it is a pattern character,
/// for [`macro@invalidate_cache`]).
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `expire = 1800` | time to live in whole seconds |
/// | `ttl = <expr>` | time to live as any `Into<Ttl>` expression: a `Duration`, `Ttl::Short`, .. |
/// | `class = "short"` | an expiry class: `"default"`, `"short"` or `"long"` (`CACHE_*_EXPIRE`) |
/// | `cache = <expr>` | the `Cache` to use (a `Cache`, `&Cache`, `Arc<Cache>` or `Option<Cache>`, may use `self` and the parameters); the global cache otherwise |
/// | `tags = ["class:{class_id}"]` | tag the value; templates like the key |
/// | `condition = <bool expr>` | use the cache only when true (evaluated before the call, over the parameters) |
/// | `unless = <closure>` | do not store a value for which `closure(&value)` is true |
/// | `cache_none = true` | cache `None` too (functions returning `Option<T>`) |
/// | `lock = true` | also take a lock in the store, so that several processes compute a key once |
/// | `stale_for = 600` | fail-safe: keep the value this many seconds past its ttl and serve it when a recomputation fails (see `CacheBuilder::fail_safe`) |
/// | `batch(id in ids)` | the function loads many ids at once: see [Batch functions](#batch-functions) |
/// | `key_args = ["user_id"]` | the seed's spelling: the parameters the key uses, checked against the template |
/// | `crate = "cache_core"` | the path to the runtime crate when not depending on `cachemere` |
///
/// With none of `expire`, `ttl` and `class`, values live for the cache's default expiry
/// (`CACHE_DEFAULT_EXPIRE`, one hour).
///
/// # Return types
///
/// | returns | cached | `unless` receives |
/// |---|---|---|
/// | `T` | every value | `&T` |
/// | `Option<T>` | `Some` values; `None` too with `cache_none = true` | `&Option<T>` |
/// | `Result<T, E>` (any alias of `core::result::Result`) | `Ok` values; errors are returned untouched and never cached | `&T` |
///
/// The cached type must implement `serde::Serialize` and `serde::de::DeserializeOwned`; it
/// need not be `Clone`, and `E` needs nothing. The `Option` and `Result` shapes are recognised
/// by the last segment of the written return type. On the in-process store, a cached type that
/// is `Clone + Send + Sync + 'static` (known where the function is written, so not a generic
/// parameter without these bounds) is decoded once and then copied on each hit.
///
/// # Batch functions
///
/// With `batch(id in ids)`, a function that takes a collection of ids (`ids`, a `Vec`,
/// `HashSet`, .. any type that can be collected from a `Vec`) is cached per id: the key
/// template is applied to each id (`{id}` names one; it must appear in the key), the cached
/// ids are read in one `MGET`, and the body runs **once**, with `ids` holding only the ids
/// that are not cached. What it returns is written in one pipeline, each id under its own key,
/// and merged with the cached values. Single flight is shared with every other caller of the
/// same keys (see `Cache::get_or_set_multi`, which this expands to).
///
/// ```
/// # use cachemere::{Cache, MemoryStore, cache_result};
/// # use std::collections::HashMap;
/// #[cache_result("user:name:{id}", batch(id in ids), class = "long")]
/// async fn user_names(ids: Vec<u64>) -> HashMap<u64, String> {
///     // one database query for the ids that are not cached
///     ids.into_iter().map(|id| (id, format!("user {id}"))).collect()
/// }
///
/// #[cache_result("grade:{id}", batch(id in ids))]
/// async fn grades(ids: Vec<u64>) -> Vec<Option<f32>> {
///     ids.iter().map(|_| Some(3.5)).collect() // one entry per id, in order
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # Cache::set_global(Cache::builder(MemoryStore::new()).build());
/// assert_eq!(user_names(vec![1, 2]).await[&2], "user 2");
/// assert_eq!(grades(vec![7, 8]).await, [Some(3.5), Some(3.5)]);
/// # }
/// ```
///
/// - It returns a map of id to value (`HashMap`, `BTreeMap`, any type that is an iterator of
///   `(id, value)` pairs and can be collected from one) or a `Vec<Option<V>>` with one entry
///   per id in order (then `V: Clone`), or a `Result` of either: an `Err` is returned and
///   nothing is cached (`Cache::try_get_or_set_multi`). An id the body leaves out (or maps
///   to `None`) has no value and is not cached; to cache that an id has none, make the
///   map's values `Option`s.
/// - The body may run a second time, for ids whose other caller gave up, so the other
///   parameters it uses must be `Copy` (references are): an owned one is a compile error at
///   its type. `&mut self` and `self` by value are refused for the same reason.
/// - `cache`, `ttl`/`expire`/`class`, `tags` (the same for every id), `stale_for` and
///   `condition` apply; `lock`, `early_refresh`, `cache_none` and `unless` are refused.
///
/// # Failures
///
/// Caching never breaks the function: a store error or timeout while reading is a miss, a
/// failed write is logged (rate-limited) and counted in
/// [`CacheStats::errors`](https://docs.rs/cache-core/latest/cache_core/struct.CacheStats.html),
/// and a stored value that does not decode is deleted and recomputed. Without a global cache
/// and without `cache = ..`, the function runs uncached and a warning is logged once.
///
/// # Methods and traits
///
/// Inherent and trait methods work the same, also under `#[async_trait]` (put the attribute on
/// the method inside the `#[async_trait] impl`):
///
/// ```
/// # use cachemere::{Cache, cache_result};
/// struct Directory {
///     cache: Cache,
///     school: String,
/// }
///
/// impl Directory {
///     #[cache_result("school:{self.school}:student:{student_id}", cache = self.cache, class = "short")]
///     async fn student_name(&self, student_id: u32) -> Option<String> {
///         Some(format!("student {student_id} of {}", self.school))
///     }
/// }
/// ```
///
/// # What it expands to
///
/// The function keeps its signature, attributes and docs; its body becomes, in effect:
///
/// ```
/// # use cachemere::{Cache, Ttl};
/// # use std::time::Duration;
/// # #[derive(serde::Serialize, serde::Deserialize, Clone)] struct Assignment;
/// # #[derive(Debug, Clone)] struct DbError;
/// async fn get_user_assignments(user_id: &str) -> Result<Vec<Assignment>, DbError> {
///     let site = Cache::global().map(|cache| (cache, format!("user:assignments:{}", user_id)));
///     let body = async move {
///         # let _ = user_id;
///         Ok(Vec::new()) // the original body
///     };
///     match site {
///         None => body.await,
///         Some((cache, key)) => {
///             cache.try_get_or_set(&key, Duration::from_secs(1800), || body).await
///         }
///     }
/// }
/// ```
///
/// with two differences from `try_get_or_set`: the error type needs no `Clone` (a caller
/// waiting on a computation that failed runs the body itself), and `condition`, `unless` and
/// `cache_none` are applied. Every generated name starts with `__cache_` and every path is
/// absolute, so parameters may be called `key`, `cache` or `result`, and the caller's imports
/// do not matter.
#[proc_macro_attribute]
pub fn cache_result(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cache_result(args.into(), item.into()).into()
}

/// Removes cached values when an async function changes the data behind them.
///
/// ```
/// # use cachemere::invalidate_cache;
/// # #[derive(Debug)] struct DbError;
/// # struct NewAssignment;
/// #[invalidate_cache("user:assignments:{user_id}", "class:*:{class_id}", tags = ["class:{class_id}"])]
/// async fn create_assignment(user_id: &str, class_id: u32, data: NewAssignment) -> Result<u64, DbError> {
///     # let _ = (user_id, class_id, data);
///     Ok(7) // the insert
/// }
/// ```
///
/// After a successful call this deletes `user:assignments:<user_id>`, every key matching
/// `class:*:<class_id>`, and every value tagged `class:<class_id>` by
/// [`macro@cache_result`]. Success means `Ok` for a function returning `Result`; any return
/// otherwise.
///
/// # Templates
///
/// Templates take the same placeholders as [`macro@cache_result`], checked at compile time.
/// A template containing `*` is a pattern (deleted with cursored `SCAN` + `UNLINK`, never
/// `KEYS`); the values of its placeholders are glob-escaped, so a `class_id` of `*` removes
/// only the literal key and never widens to other classes. Keys are built before the call,
/// from the arguments as they were passed.
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `"template", ..` | keys or patterns to delete |
/// | `tags = ["class:{class_id}"]` | delete every value carrying these tags |
/// | `before = true` | invalidate before running the body (whatever its outcome) instead of after success |
/// | `cache = <expr>` | the `Cache` to use; the global cache otherwise |
/// | `key_args = ["user_id"]` | the parameters the templates use, checked against them |
/// | `crate = "cache_core"` | the path to the runtime crate when not depending on `cachemere` |
///
/// At least one template or tag is required. Store failures are logged and counted, never
/// returned: the function's result is what the body returned.
///
/// # What it expands to
///
/// ```
/// # use cachemere::Cache;
/// # #[derive(Debug)] struct DbError;
/// async fn create_assignment(user_id: &str) -> Result<u64, DbError> {
///     let site = Cache::global().map(|cache| (cache, format!("user:assignments:{}", user_id)));
///     let output: Result<u64, DbError> = async move {
///         # let _ = user_id;
///         Ok(7) // the original body
///     }
///     .await;
///     if let (Ok(_), Some((cache, key))) = (&output, site) {
///         let _ = cache.delete(&key).await; // failures are logged and counted
///     }
///     output
/// }
/// ```
#[proc_macro_attribute]
pub fn invalidate_cache(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidate_cache(args.into(), item.into()).into()
}
