//! A store for one test, on each backend, with what keeps its server running.

use std::any::Any;
use std::sync::Arc;

use cache_core::{MemoryStore, RedisStore, Result, Store};

use crate::{RedisCluster, RedisServer};

/// A store for one test: on a private `redis-server`, on a leased Redis Cluster, or in
/// process. The server lives as long as the fixture, so that a suite runs the same test on
/// every backend:
///
/// ```no_run
/// use cache_testing::TestStore;
///
/// # async fn demo() -> cache_core::Result<()> {
/// for fixture in [TestStore::redis().await?, TestStore::memory()] {
///     fixture.store.set("k", b"v", std::time::Duration::from_secs(60)).await?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct TestStore {
    /// The store.
    pub store: Arc<dyn Store>,
    _server: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl TestStore {
    /// A store on a private `redis-server` of its own.
    pub async fn redis() -> Result<TestStore> {
        let server = RedisServer::start_private()?;
        let store = RedisStore::connect(&server.config()).await?;
        Ok(TestStore {
            store: Arc::new(store),
            _server: Some(Box::new(server)),
        })
    }

    /// A store on a Redis Cluster leased from this process's pool (three primaries,
    /// emptied).
    pub async fn cluster() -> Result<TestStore> {
        let cluster = RedisCluster::lease()?;
        let store = RedisStore::connect(&cluster.config()).await?;
        Ok(TestStore {
            store: Arc::new(store),
            _server: Some(Box::new(cluster)),
        })
    }

    /// An in-process store.
    pub fn memory() -> TestStore {
        TestStore {
            store: Arc::new(MemoryStore::new()),
            _server: None,
        }
    }
}
