//! Running commands, pipelines and scripts: bounded, routed by key on a cluster, errors
//! classified.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{FromRedisValue, RedisError, RedisResult, Value};

use super::commands::{key_ttl, ttl_millis};
use super::scripts::{FENCE, FENCE_LUA, WRITE_WITH_TTL};
use super::{Link, RedisStore, SCAN_BATCH};
use crate::error::{Error, Result};
use crate::health::HealthReport;
use crate::store::cluster::{self, Cluster};
use crate::store::{FENCE_PREFIX, KeyTtl, Store};

impl RedisStore {
    /// Runs a Lua script under the store's command timeout, with the store's error mapping;
    /// `operation` and `key` name it in errors. Scripts keep multi-key steps atomic for
    /// crates built on the store (the session manager uses this).
    ///
    /// On a cluster every key the script touches must share `key`'s hash slot (give them one
    /// `{hash tag}`); the script is loaded on that slot's primary only.
    ///
    /// ```no_run
    /// use cache_core::RedisStore;
    /// use redis::Script;
    ///
    /// # async fn demo(store: &RedisStore) -> cache_core::Result<()> {
    /// let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    /// let total: i64 = store.invoke("INCRBY", "visits", script.key("visits").arg(3)).await?;
    /// # let _ = total;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invoke<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let request = async {
            match &self.connection.0 {
                Link::Node(node) => invocation.invoke_async(&mut node.clone()).await,
                Link::Sentinel(primary) => invocation.invoke_async(&mut primary.clone()).await,
                Link::Cluster(cluster) => {
                    let mut connection = cluster.for_script(cluster::slot(key.as_bytes()));
                    invocation.invoke_async(&mut connection).await
                }
            }
        };
        self.bounded(operation, key, request).await
    }

    /// Runs a pipeline under the store's command timeout (one round trip).
    ///
    /// On a cluster a pipeline on keys of one hash slot goes to its node in one round trip; one
    /// over several slots is sent as its commands, each to its node, all at once (a
    /// transaction, `atomic()`, must stay within one slot).
    /// [`pipeline_by_key`](RedisStore::pipeline_by_key) batches such work per node.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        self.query_pipe(operation, key, pipe).await
    }

    /// Runs commands that each touch one key (given with the command; or several keys of that
    /// key's hash slot) and returns their replies in order, under the store's command timeout:
    /// one pipeline on a single server, one pipeline per primary on a cluster, sent to all
    /// primaries at once.
    ///
    /// ```no_run
    /// use cache_core::RedisStore;
    ///
    /// # async fn demo(store: &RedisStore) -> cache_core::Result<()> {
    /// let users = ["42", "43"];
    /// let commands: Vec<(String, redis::Cmd)> = users
    ///     .iter()
    ///     .map(|user| {
    ///         let key = format!("logins:{user}");
    ///         let cmd = redis::cmd("ZCARD").arg(&key).to_owned();
    ///         (key, cmd)
    ///     })
    ///     .collect();
    /// let counts: Vec<u64> = store.pipeline_by_key("ZCARD", &commands).await?;
    /// assert_eq!(counts.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pipeline_by_key<K, T>(
        &self,
        operation: &'static str,
        commands: &[(K, redis::Cmd)],
    ) -> Result<Vec<T>>
    where
        K: AsRef<str>,
        T: FromRedisValue,
    {
        let Some((first, _)) = commands.first() else {
            return Ok(Vec::new());
        };
        let first = first.as_ref();
        let replies: Vec<Value> = match &self.connection.0 {
            Link::Node(_) | Link::Sentinel(_) => {
                let mut pipe = redis::pipe();
                for (_, cmd) in commands {
                    pipe.add_command(cmd.clone());
                }
                self.query_pipe(operation, first, &pipe).await?
            }
            Link::Cluster(cluster) => {
                let routed: Vec<(u16, &redis::Cmd)> = commands
                    .iter()
                    .map(|(key, cmd)| (cluster::slot(key.as_ref().as_bytes()), cmd))
                    .collect();
                self.bounded(operation, first, cluster.scatter(&routed))
                    .await?
            }
        };
        replies
            .into_iter()
            .map(|reply| {
                T::from_redis_value(reply).map_err(|source| Error::Redis {
                    operation,
                    source: source.into(),
                })
            })
            .collect()
    }

    /// The `host:port` (or socket path) this store talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub(super) async fn bounded<T>(
        &self,
        operation: &'static str,
        key: &str,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        let result = match &self.connection.0 {
            Link::Node(_) => super::within(self.command_timeout, request).await,
            Link::Sentinel(primary) => {
                let started = std::time::Instant::now();
                let result = super::within(self.command_timeout, request).await;
                if result.as_ref().is_err_and(RedisError::is_timeout) {
                    // A frozen primary answers nothing, so no reply tells that it is gone:
                    // ask again which server is primary, unless the connection answered or
                    // was replaced since this request began.
                    primary.forget_if_silent_since(started);
                }
                result
            }
            // The cluster connection bounds each attempt itself (and retries within its
            // response timeout), as configured at connect.
            Link::Cluster(_) => request.await,
        };
        self.classify(operation, key, result)
    }

    /// A request's result with its error classified: a type mismatch, a timeout, any other
    /// Redis error.
    fn classify<T>(&self, operation: &'static str, key: &str, result: RedisResult<T>) -> Result<T> {
        if let Link::Node(node) = &self.connection.0 {
            match &result {
                Err(err) if err.is_timeout() => node.timed_out(),
                _ => node.answered(),
            }
        }
        match result {
            Ok(value) => Ok(value),
            Err(err) if err.code() == Some("WRONGTYPE") => Err(Error::WrongType {
                key: key.to_owned(),
                operation,
            }),
            Err(err) if err.is_timeout() => Err(Error::Timeout {
                operation,
                after: self.command_timeout,
            }),
            Err(source) => Err(Error::Redis { operation, source }),
        }
    }

    /// `GET key`, as [`Store::get`] (which calls it), but not boxed, so that a
    /// [`Cache`](crate::Cache) can await it inline.
    pub(crate) async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query("GET", key, &cmd).await
    }

    /// `MGET keys..`, as [`Store::mget`] (which calls it), but not boxed (see
    /// [`get_value`](RedisStore::get_value)).
    pub(crate) async fn mget_values(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(&first) = keys.first() else {
            return Ok(Vec::new());
        };
        let Link::Cluster(cluster) = &self.connection.0 else {
            let mut cmd = redis::cmd("MGET");
            cmd.arg(keys);
            return self.query("MGET", first, &cmd).await;
        };
        let replies = self.per_slot("MGET", cluster, keys).await?;
        let mut values = vec![None; keys.len()];
        for (indices, reply) in replies {
            let found = Vec::<Option<Vec<u8>>>::from_redis_value(reply)
                .map_err(|err| Error::redis("MGET")(err.into()))?;
            for (index, value) in indices.into_iter().zip(found) {
                values[index] = value;
            }
        }
        Ok(values)
    }

    /// `MGET keys..` and a `PTTL` of each key in one round trip: one pipeline on a server,
    /// one `MGET` per slot and the `PTTL`s beside it, pipelined per primary, on a cluster.
    pub(super) async fn mget_with_ttl_values(
        &self,
        keys: &[&str],
    ) -> Result<Vec<Option<(Vec<u8>, KeyTtl)>>> {
        let Some(&first) = keys.first() else {
            return Ok(Vec::new());
        };
        let pttl = |key: &str| redis::cmd("PTTL").arg(key).to_owned();
        let (values, ttls): (Vec<Option<Vec<u8>>>, Vec<Value>) = match &self.connection.0 {
            Link::Cluster(cluster) => {
                let groups = cluster::by_slot(keys);
                let mut commands: Vec<(u16, redis::Cmd)> = groups
                    .iter()
                    .map(|(slot, indices)| {
                        let mut cmd = redis::cmd("MGET");
                        for &index in indices {
                            cmd.arg(keys[index]);
                        }
                        (*slot, cmd)
                    })
                    .collect();
                commands.extend(
                    keys.iter()
                        .map(|key| (cluster::slot(key.as_bytes()), pttl(key))),
                );
                let mut replies = self
                    .bounded("MGET", first, cluster.scatter(&commands))
                    .await?;
                let ttls = replies.split_off(groups.len());
                let mut values = vec![None; keys.len()];
                for ((_, indices), reply) in groups.into_iter().zip(replies) {
                    let found = Vec::<Option<Vec<u8>>>::from_redis_value(reply)
                        .map_err(|err| Error::redis("MGET")(err.into()))?;
                    for (index, value) in indices.into_iter().zip(found) {
                        values[index] = value;
                    }
                }
                (values, ttls)
            }
            Link::Node(_) | Link::Sentinel(_) => {
                let mut pipe = redis::pipe();
                pipe.cmd("MGET").arg(keys);
                for key in keys {
                    pipe.add_command(pttl(key));
                }
                let mut replies: Vec<Value> = self.query_pipe("MGET", first, &pipe).await?;
                let ttls = replies.split_off(1.min(replies.len()));
                let values = match replies.pop() {
                    Some(reply) => Vec::<Option<Vec<u8>>>::from_redis_value(reply)
                        .map_err(|err| Error::redis("MGET")(err.into()))?,
                    None => Vec::new(),
                };
                (values, ttls)
            }
        };
        if values.len() != keys.len() || ttls.len() != keys.len() {
            return Err(Error::redis("MGET")(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a reply of another length than the keys asked for",
            ))));
        }
        values
            .into_iter()
            .zip(ttls)
            .map(|(value, ttl)| {
                let millis =
                    i64::from_redis_value(ttl).map_err(|err| Error::redis("PTTL")(err.into()))?;
                Ok(value.map(|bytes| (bytes, key_ttl(millis))))
            })
            .collect()
    }

    /// Runs one command under the command timeout.
    ///
    /// On one server it calls `ConnectionManager`'s own method rather than its
    /// `ConnectionLike` impl, which boxes a future of over a kilobyte per command (above
    /// glibc's thread cache, so a slow allocation): the same request, reconnection included,
    /// built in place. `select!` keeps it there; `timeout(after, request)` would move the
    /// request's state into its own future first.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let node = match &self.connection.0 {
            Link::Node(node) => node,
            // sent as `RedisConnection` sends it, without boxing the request a second time
            Link::Cluster(cluster) => {
                let reply = async {
                    let value = cluster.command(cmd).await?.extract_error()?;
                    Ok(redis::from_redis_value(value)?)
                };
                return self.bounded(operation, key, reply).await;
            }
            Link::Sentinel(_) => {
                let mut connection = self.connection.clone();
                return self
                    .bounded(operation, key, cmd.query_async(&mut connection))
                    .await;
            }
        };
        let mut node = node.manager();
        let reply = tokio::select! {
            biased;
            reply = node.send_packed_command(cmd) => reply,
            () = tokio::time::sleep(self.command_timeout) => Err(super::timed_out()),
        };
        let value = reply
            .and_then(Value::extract_error)
            .and_then(|value| Ok(redis::from_redis_value(value)?));
        self.classify(operation, key, value)
    }

    pub(super) async fn query_pipe<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut connection = self.connection.clone();
        self.bounded(operation, key, pipe.query_async(&mut connection))
            .await
    }

    /// Runs `command key args..` then `PEXPIRE key ttl` atomically in one script, so a
    /// failing command (a type mismatch, say) leaves the key's ttl alone; returns the
    /// command's reply.
    pub(super) async fn write_with_ttl<T: FromRedisValue>(
        &self,
        command: &'static str,
        key: &str,
        args: &[&[u8]],
        ttl: Duration,
    ) -> Result<T> {
        let mut invocation = WRITE_WITH_TTL.key(key);
        invocation.arg(command).arg(ttl_millis(ttl));
        for arg in args {
            invocation.arg(*arg);
        }
        self.invoke(command, key, &invocation).await
    }

    /// `PING`s the server, or every primary of a cluster; the unhealthy report names the node
    /// that failed.
    pub(super) async fn ping(&self) -> std::result::Result<(), HealthReport> {
        let unhealthy = |err: &Error| HealthReport::unhealthy(self.backend(), err);
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self
                .query::<()>("PING", "", &redis::cmd("PING"))
                .await
                .map_err(|err| unhealthy(&err));
        };
        let pings = self
            .ping_primaries(cluster)
            .await
            .map_err(|err| unhealthy(&err))?;
        for (node, ping) in pings {
            if let Err(err) = ping {
                let mut report = unhealthy(&err);
                report.error = Some(format!("node {node}: {}", crate::error::one_line(&err)));
                return Err(report);
            }
        }
        Ok(())
    }

    /// `PING`s every primary at once; each node with its outcome.
    pub(super) async fn ping_primaries(
        &self,
        cluster: &Cluster,
    ) -> Result<Vec<(redis::cluster::NodeAddress, Result<Value>)>> {
        let primaries = self.primaries(cluster).await?;
        let pings = primaries
            .iter()
            .map(|node| self.bounded("PING", "", cluster.on_node(node, redis::cmd("PING"))));
        let outcomes = join_all(pings).await;
        Ok(primaries.into_iter().zip(outcomes).collect())
    }

    /// The server version and used memory (on a cluster: the first primary's version and the
    /// primaries' total).
    pub(super) async fn server_facts(&self) -> Result<(Option<String>, Option<u64>)> {
        let info = redis::cmd("INFO").arg("server").arg("memory").to_owned();
        let reports: Vec<String> = match &self.connection.0 {
            Link::Node(_) | Link::Sentinel(_) => vec![self.query("INFO", "", &info).await?],
            Link::Cluster(cluster) => {
                let primaries = self.primaries(cluster).await?;
                let replies = primaries
                    .iter()
                    .map(|node| cluster.on_node(node, info.clone()));
                let mut reports = Vec::with_capacity(primaries.len());
                for reply in join_all(replies).await {
                    let reply =
                        reply.and_then(|v| String::from_redis_value(v).map_err(RedisError::from));
                    reports.push(reply.map_err(Error::redis("INFO"))?);
                }
                reports
            }
        };
        let field = |info: &str, name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.trim().to_owned())
        };
        let version = reports.iter().find_map(|info| field(info, "redis_version"));
        let used_memory = reports
            .iter()
            .map(|info| field(info, "used_memory").and_then(|v| v.parse::<u64>().ok()))
            .sum();
        Ok((version, used_memory))
    }

    /// The cluster's primaries; asks a node first when no command has run yet.
    pub(super) async fn primaries(
        &self,
        cluster: &Cluster,
    ) -> Result<Vec<redis::cluster::NodeAddress>> {
        if let Some(primaries) = cluster.topology.primaries() {
            return Ok(primaries);
        }
        let ping = redis::cmd("PING");
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        self.bounded(
            "CLUSTER TOPOLOGY",
            "",
            cluster.connection.clone().route_command(ping, routing),
        )
        .await?;
        cluster.topology.primaries().ok_or_else(|| Error::Redis {
            operation: "CLUSTER TOPOLOGY",
            source: RedisError::from((
                redis::ErrorKind::ClusterConnectionNotFound,
                "the cluster's slot map is not known yet",
            )),
        })
    }

    /// Runs `command key..` once per hash slot of `keys` (one pipeline per primary) and
    /// returns each slot's reply with the indices of its keys.
    pub(super) async fn per_slot<K: AsRef<[u8]>>(
        &self,
        command: &'static str,
        cluster: &Cluster,
        keys: &[K],
    ) -> Result<Vec<(Vec<usize>, Value)>> {
        let groups = cluster::by_slot(keys);
        let commands: Vec<(u16, redis::Cmd)> = groups
            .iter()
            .map(|(slot, indices)| {
                let mut cmd = redis::cmd(command);
                for &index in indices {
                    cmd.arg(keys[index].as_ref());
                }
                (*slot, cmd)
            })
            .collect();
        let first = keys
            .first()
            .and_then(|key| std::str::from_utf8(key.as_ref()).ok())
            .unwrap_or("");
        let replies = self
            .bounded(command, first, cluster.scatter(&commands))
            .await?;
        Ok(groups
            .into_iter()
            .map(|(_, indices)| indices)
            .zip(replies)
            .collect())
    }

    /// `UNLINK`s keys anywhere in the cluster: one command per slot, one pipeline per primary.
    pub(super) async fn unlink_on(
        &self,
        cluster: &Cluster,
        keys: &[impl AsRef<[u8]>],
    ) -> Result<u64> {
        let replies = self.per_slot("UNLINK", cluster, keys).await?;
        replies.into_iter().try_fold(0, |total, (_, reply)| {
            let removed =
                u64::from_redis_value(reply).map_err(|err| Error::redis("UNLINK")(err.into()))?;
            Ok(total + removed)
        })
    }

    /// Fences `keys` ([`Store::fence`]; see `fence.rs`): one script for all keys on one
    /// server; on a cluster one per hash slot, pipelined per primary, by hash once the script
    /// is loaded on every primary.
    pub(super) async fn fence_keys<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        marker: &[u8],
        window: Duration,
    ) -> Result<u64> {
        let Some(first) = keys.first() else {
            return Ok(0);
        };
        let name = String::from_utf8_lossy(first.as_ref()).into_owned();
        let Link::Cluster(cluster) = &self.connection.0 else {
            let mut invocation = FENCE.prepare_invoke();
            for key in keys {
                invocation.key(key.as_ref());
            }
            invocation
                .arg(marker)
                .arg(ttl_millis(window))
                .arg(FENCE_PREFIX);
            return self.invoke("EVALSHA", &name, &invocation).await;
        };
        let commands: Vec<(u16, redis::Cmd)> = cluster::by_slot(keys)
            .into_iter()
            .map(|(slot, indices)| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(FENCE.get_hash()).arg(indices.len());
                for index in indices {
                    cmd.arg(keys[index].as_ref());
                }
                cmd.arg(marker).arg(ttl_millis(window)).arg(FENCE_PREFIX);
                (slot, cmd)
            })
            .collect();
        let mut reloaded = false;
        loop {
            if !self.monitor.fence_loaded.swap(true, Ordering::AcqRel) {
                self.load_everywhere(cluster, FENCE_LUA).await;
            }
            let held = self
                .bounded("EVALSHA", &name, cluster.scatter(&commands))
                .await
                .and_then(|replies| {
                    replies.into_iter().try_fold(0, |total, reply| {
                        // a script's error (`NOSCRIPT`) is a reply of the pipeline: kept as
                        // the server's error, not as a failed conversion, so that it is
                        // recognised below
                        let held = match reply {
                            redis::Value::ServerError(err) => Err(redis::RedisError::from(err)),
                            reply => u64::from_redis_value(reply).map_err(Into::into),
                        }
                        .map_err(Error::redis("EVALSHA"))?;
                        Ok(total + held)
                    })
                });
            match held {
                // A node lost its script cache (a restart, a failover): load it again and
                // send once more. Keys the first attempt fenced then count as not held.
                Err(Error::Redis { source, .. })
                    if !reloaded && source.code() == Some("NOSCRIPT") =>
                {
                    self.monitor.fence_loaded.store(false, Ordering::Release);
                    reloaded = true;
                }
                held => return held,
            }
        }
    }

    /// Loads a script into the script cache of every primary of the cluster that answers
    /// (one that does not fails the script's own call later, with its own error).
    async fn load_everywhere(&self, cluster: &Cluster, source: &str) {
        let Ok(primaries) = self.primaries(cluster).await else {
            return;
        };
        let loads = primaries.iter().map(|node| {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(source).to_owned();
            self.bounded("SCRIPT LOAD", "", cluster.on_node(node, load))
        });
        for load in join_all(loads).await {
            if let Err(err) = load {
                tracing::debug!(error = %err, "a cluster node did not load a script");
            }
        }
    }

    /// Removes (given a marker and window: fences) every key matching `pattern`, on every
    /// primary of a cluster at once.
    pub(super) async fn sweep_all(
        &self,
        pattern: &str,
        fence: Option<(&[u8], Duration)>,
    ) -> Result<u64> {
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self.sweep(pattern, None, fence).await;
        };
        let primaries = self.primaries(cluster).await?;
        let sweeps = primaries
            .iter()
            .map(|node| self.sweep(pattern, Some((cluster, node)), fence));
        let mut removed = 0;
        let mut failure = None;
        for sweep in join_all(sweeps).await {
            match sweep {
                Ok(count) => removed += count,
                Err(err) => failure = failure.or(Some(err)),
            }
        }
        failure.map_or(Ok(removed), Err)
    }

    /// Scans one server (on a cluster: one primary) for `pattern` and removes (or fences)
    /// what it finds, with the tag records of what it finds.
    async fn sweep(
        &self,
        pattern: &str,
        primary: Option<(&Cluster, &redis::cluster::NodeAddress)>,
        fence: Option<(&[u8], Duration)>,
    ) -> Result<u64> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .to_owned();
            let (next, mut keys): (u64, Vec<Vec<u8>>) = match primary {
                None => self.query("SCAN", pattern, &scan).await?,
                Some((cluster, node)) => {
                    let reply = self
                        .bounded("SCAN", pattern, cluster.on_node(node, scan))
                        .await?;
                    FromRedisValue::from_redis_value(reply)
                        .map_err(|err| Error::redis("SCAN")(err.into()))?
                }
            };
            keys.retain(|key| !crate::key::is_internal(key));
            if !keys.is_empty() {
                let records: Vec<Vec<u8>> = keys
                    .iter()
                    .map(|key| crate::key::tags_record(key))
                    .collect();
                removed += match (primary, fence) {
                    (_, Some((marker, window))) => {
                        let (held, records) = futures_util::future::join(
                            self.fence_keys(&keys, marker, window),
                            self.remove_records(primary.map(|(cluster, _)| cluster), &records),
                        )
                        .await;
                        if let Err(err) = records {
                            tracing::debug!(error = %err, "sweep: tag records not removed");
                        }
                        held?
                    }
                    (None, None) => {
                        let unlink = redis::pipe()
                            .cmd("UNLINK")
                            .arg(&keys)
                            .cmd("UNLINK")
                            .arg(&records)
                            .to_owned();
                        let (keys, _records): (u64, u64) =
                            self.query_pipe("UNLINK", pattern, &unlink).await?;
                        keys
                    }
                    (Some((cluster, _)), None) => {
                        let (keys, records) = futures_util::future::join(
                            self.unlink_on(cluster, &keys),
                            self.unlink_on(cluster, &records),
                        )
                        .await;
                        // A record lives in its own slot, maybe on a node that is down: the
                        // sweep of this primary does not fail for it (it expires with its key).
                        if let Err(err) = records {
                            tracing::debug!(error = %err, "sweep: tag records not removed");
                        }
                        keys?
                    }
                };
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Removes tag records: one `UNLINK`, or one per slot on a cluster.
    async fn remove_records(&self, cluster: Option<&Cluster>, records: &[Vec<u8>]) -> Result<u64> {
        match cluster {
            Some(cluster) => self.unlink_on(cluster, records).await,
            None => {
                self.query("UNLINK", "", redis::cmd("UNLINK").arg(records))
                    .await
            }
        }
    }
}
