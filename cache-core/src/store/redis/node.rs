//! One Redis server: a `ConnectionManager`, replaced by a new one when it goes silent.
//!
//! redis-rs's manager reconnects after an I/O error or a dropped connection, but a connection
//! that goes silent without closing (a half-open TCP connection after a partition or a NAT
//! timeout) fails no request: each one times out, and the manager keeps using it. So a
//! timed-out health check, or [`TIMEOUTS_IN_A_ROW`] request timeouts with no answer between
//! them, replaces the manager; requests already sent on the old one finish or time out there.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisFuture, RedisResult, Value};

/// Request timeouts in a row, with no answer between them, that replace the connection.
pub(super) const TIMEOUTS_IN_A_ROW: u32 = 3;

/// See the module documentation.
#[derive(Clone)]
pub(super) struct NodeLink(Arc<Shared>);

struct Shared {
    current: RwLock<ConnectionManager>,
    client: Client,
    config: ConnectionManagerConfig,
    timeouts: AtomicU32,
}

impl NodeLink {
    /// A link that connects on first use (and reconnects on its own after I/O errors).
    pub(super) fn new_lazy(
        client: Client,
        config: ConnectionManagerConfig,
    ) -> RedisResult<NodeLink> {
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(NodeLink(Arc::new(Shared {
            current: RwLock::new(manager),
            client,
            config,
            timeouts: AtomicU32::new(0),
        })))
    }

    /// The connection to send on (a cheap handle).
    #[inline]
    pub(super) fn manager(&self) -> ConnectionManager {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A request was answered: the connection is alive. Only reads in the common case.
    #[inline]
    pub(super) fn answered(&self) {
        if self.0.timeouts.load(Ordering::Relaxed) != 0 {
            self.0.timeouts.store(0, Ordering::Relaxed);
        }
    }

    /// A request timed out: the connection may have gone silent.
    pub(super) fn timed_out(&self) {
        let run = self
            .0
            .timeouts
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if run >= TIMEOUTS_IN_A_ROW {
            self.replace("requests timed out in a row");
        }
    }

    /// Replaces the connection with a new one, which connects on first use.
    pub(super) fn replace(&self, why: &'static str) {
        let manager = match ConnectionManager::new_lazy_with_config(
            self.0.client.clone(),
            self.0.config.clone(),
        ) {
            Ok(manager) => manager,
            Err(err) => {
                tracing::warn!(error = %err, "could not replace a silent Redis connection");
                return;
            }
        };
        *self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = manager;
        self.0.timeouts.store(0, Ordering::Relaxed);
        tracing::warn!(
            reason = why,
            "the Redis connection went silent: replaced by a new one"
        );
    }
}

impl ConnectionLike for NodeLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        let mut manager = self.manager();
        Box::pin(async move { manager.send_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        Box::pin(async move { manager.send_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}
