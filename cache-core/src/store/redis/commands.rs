//! The store's commands: [`Store`] on [`RedisStore`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::bus::Bus;
use super::scripts::{
    DELETE_IF_EQUALS, REPLACE_IF_EQUALS, REPLACE_IF_EQUALS_LUA, TAG, TAKE_TAGGED,
};
use super::subscription::BUS_PING;
use super::{Link, RedisStore};
use crate::error::Result;
use crate::health::HealthReport;
use crate::store::{BusEvent, Expected, KeyTtl, Store};

/// A `PTTL` reply.
pub(super) fn key_ttl(millis: i64) -> KeyTtl {
    match millis {
        -2 => KeyTtl::Missing,
        ms if ms < 0 => KeyTtl::Persistent,
        ms => KeyTtl::ExpiresIn(Duration::from_millis(ms.unsigned_abs())),
    }
}

pub(super) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    /// On one server: a handle whose command timeout is `deadline` at most. A cluster
    /// connection applies its timeout per attempt, so a cluster has no such handle.
    fn with_deadline(&self, deadline: Duration) -> Option<std::sync::Arc<dyn Store>> {
        match self.is_cluster() {
            true => None,
            false => Some(std::sync::Arc::new(self.bounded_by(deadline))),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_value(key).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl))
            .to_owned();
        self.query("SET", key, &cmd).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let removed: u64 = self
            .query("UNLINK", key, redis::cmd("UNLINK").arg(key))
            .await?;
        Ok(removed > 0)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.query("EXISTS", key, redis::cmd("EXISTS").arg(key))
            .await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let cmd = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(ttl_millis(ttl))
            .to_owned();
        self.query("PEXPIRE", key, &cmd).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let millis: i64 = self.query("PTTL", key, redis::cmd("PTTL").arg(key)).await?;
        Ok(key_ttl(millis))
    }

    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.mget_values(keys).await
    }

    async fn mset(&self, items: &[(String, Vec<u8>, Duration)]) -> Result<()> {
        let Some((first, _, _)) = items.first() else {
            return Ok(());
        };
        let set = |key: &str, value: &[u8], ttl: Duration| {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_millis(ttl))
                .to_owned()
        };
        let Link::Cluster(_) = &self.connection.0 else {
            let mut pipe = redis::pipe();
            for (key, value, ttl) in items {
                pipe.add_command(set(key, value, *ttl)).ignore();
            }
            return self.query_pipe("MSET", first, &pipe).await;
        };
        let commands: Vec<(&str, redis::Cmd)> = items
            .iter()
            .map(|(key, value, ttl)| (key.as_str(), set(key, value, *ttl)))
            .collect();
        self.pipeline_by_key::<_, ()>("MSET", &commands).await?;
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self
                .query("UNLINK", &keys[0], redis::cmd("UNLINK").arg(keys))
                .await;
        };
        self.unlink_on(cluster, keys).await
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64> {
        self.sweep_all(pattern, None).await
    }

    async fn hset(&self, key: &str, field: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let added: u64 = self
            .write_with_ttl("HSET", key, &[field.as_bytes(), value], ttl)
            .await?;
        Ok(added > 0)
    }

    async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>> {
        self.query("HGET", key, redis::cmd("HGET").arg(key).arg(field))
            .await
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let map: HashMap<String, Vec<u8>> = self
            .query("HGETALL", key, redis::cmd("HGETALL").arg(key))
            .await?;
        Ok(map.into_iter().collect())
    }

    async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        let removed: u64 = self
            .query("HDEL", key, redis::cmd("HDEL").arg(key).arg(field))
            .await?;
        Ok(removed > 0)
    }

    async fn lpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if values.is_empty() {
            return self.query("LLEN", key, redis::cmd("LLEN").arg(key)).await;
        }
        let args: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        self.write_with_ttl("LPUSH", key, &args, ttl).await
    }

    async fn rpush(&self, key: &str, values: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if values.is_empty() {
            return self.query("LLEN", key, redis::cmd("LLEN").arg(key)).await;
        }
        let args: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        self.write_with_ttl("RPUSH", key, &args, ttl).await
    }

    async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        let cmd = redis::cmd("LRANGE")
            .arg(key)
            .arg(start)
            .arg(stop)
            .to_owned();
        self.query("LRANGE", key, &cmd).await
    }

    async fn sadd(&self, key: &str, members: &[Vec<u8>], ttl: Duration) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let args: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
        self.write_with_ttl("SADD", key, &args, ttl).await
    }

    async fn srem(&self, key: &str, members: &[Vec<u8>]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query("SREM", key, redis::cmd("SREM").arg(key).arg(members))
            .await
    }

    async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>> {
        self.query("SMEMBERS", key, redis::cmd("SMEMBERS").arg(key))
            .await
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl))
            .to_owned();
        let reply: Option<String> = self.query("SET", key, &cmd).await?;
        Ok(reply.is_some())
    }

    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool> {
        let mut invocation = DELETE_IF_EQUALS.key(key);
        invocation.arg(expected);
        let removed: u64 = self.invoke("DELETE IF EQUALS", key, &invocation).await?;
        Ok(removed > 0)
    }

    async fn replace_if_equals(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let mut invocation = REPLACE_IF_EQUALS.key(key);
        invocation.arg(expected).arg(value).arg(ttl_millis(ttl));
        let replaced: u64 = self.invoke("REPLACE IF EQUALS", key, &invocation).await?;
        Ok(replaced > 0)
    }

    /// One script for all keys on a single server; on a cluster one per hash slot,
    /// pipelined per primary.
    async fn fence(&self, keys: &[String], marker: &[u8], window: Duration) -> Result<u64> {
        self.fence_keys(keys, marker, window).await
    }

    async fn fence_matching(&self, pattern: &str, marker: &[u8], window: Duration) -> Result<u64> {
        self.sweep_all(pattern, Some((marker, window))).await
    }

    /// `SET`, `SET NX` and the compare-and-set script (as `EVAL`) in one pipeline, one per
    /// primary on a cluster.
    async fn set_many_if(
        &self,
        writes: &[(&str, &[u8], Duration, Expected<'_>)],
    ) -> Result<Vec<bool>> {
        let commands: Vec<(&str, redis::Cmd)> = writes
            .iter()
            .map(|&(key, value, ttl, expected)| {
                let cmd = match expected {
                    Expected::Anything | Expected::Nothing => {
                        let mut cmd = redis::cmd("SET");
                        cmd.arg(key).arg(value).arg("PX").arg(ttl_millis(ttl));
                        if expected == Expected::Nothing {
                            cmd.arg("NX");
                        }
                        cmd
                    }
                    Expected::Bytes(current) => redis::cmd("EVAL")
                        .arg(REPLACE_IF_EQUALS_LUA)
                        .arg(1)
                        .arg(key)
                        .arg(current)
                        .arg(value)
                        .arg(ttl_millis(ttl))
                        .to_owned(),
                };
                (key, cmd)
            })
            .collect();
        let replies: Vec<redis::Value> = self.pipeline_by_key("SET", &commands).await?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                redis::Value::Okay => true,
                redis::Value::Int(written) => written > 0,
                _ => false,
            })
            .collect())
    }

    async fn tag(&self, tag_key: &str, members: &[String], ttl: Duration) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut invocation = TAG.key(tag_key);
        invocation.arg(ttl_millis(ttl)).arg(members);
        self.invoke("TAG", tag_key, &invocation).await
    }

    async fn take_tagged(&self, tag_key: &str) -> Result<Vec<String>> {
        self.invoke("TAKE TAGGED", tag_key, &TAKE_TAGGED.key(tag_key))
            .await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, KeyTtl)>> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (bytes, millis): (Option<Vec<u8>>, i64) = self.query_pipe("GET", key, &pipe).await?;
        Ok(bytes.map(|bytes| (bytes, key_ttl(millis))))
    }

    async fn mget_with_ttl(&self, keys: &[&str]) -> Result<Vec<Option<(Vec<u8>, KeyTtl)>>> {
        self.mget_with_ttl_values(keys).await
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        self.query(
            "PUBLISH",
            channel,
            redis::cmd("PUBLISH").arg(channel).arg(message),
        )
        .await
    }

    fn subscribe(&self, channel: &str) -> Option<mpsc::UnboundedReceiver<BusEvent>> {
        self.listen(channel, None)
    }

    fn watch(&self, channel: &str, prefix: &str) -> Option<mpsc::UnboundedReceiver<BusEvent>> {
        self.listen(channel, Some(prefix))
    }

    async fn answers(&self) -> bool {
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self.ping().await.is_ok();
        };
        self.ping_primaries(cluster)
            .await
            .is_ok_and(|pings| pings.iter().any(|(_, ping)| ping.is_ok()))
    }

    fn locate(&self, keys: &[&str]) -> Option<Vec<(String, Vec<usize>)>> {
        match &self.connection.0 {
            Link::Cluster(cluster) => cluster.topology.locate(keys),
            _ => None,
        }
    }

    async fn answers_for(&self, server: &str) -> bool {
        let Link::Cluster(cluster) = &self.connection.0 else {
            return self.answers().await;
        };
        match cluster.topology.key_on(server) {
            None => self.answers().await,
            // its slots are served by another primary now
            Some(None) => true,
            Some(Some(key)) => cluster.key_answers(&key, self.command_timeout).await,
        }
    }

    async fn health_check(&self) -> HealthReport {
        let started = Instant::now();
        if let Err(report) = self.ping().await {
            return report;
        }
        let latency = started.elapsed();
        let (server_version, used_memory_bytes) = self.server_facts().await.unwrap_or_default();
        HealthReport {
            backend: self.backend(),
            healthy: true,
            latency: Some(latency),
            server_version,
            used_memory_bytes,
            error: None,
            circuit_open: false,
            open_circuits: Vec::new(),
        }
    }
}

impl RedisStore {
    /// A subscription to `channel`, tracking the keys under `tracked` where the server can.
    fn listen(
        &self,
        channel: &str,
        tracked: Option<&str>,
    ) -> Option<mpsc::UnboundedReceiver<BusEvent>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (topology, primary) = match &self.connection.0 {
            Link::Node(_) => (None, None),
            Link::Cluster(cluster) => (Some(cluster.topology.clone()), None),
            Link::Sentinel(primary) => (None, Some(primary.clone())),
        };
        let bus = Bus {
            seeds: Arc::clone(&self.subscribers),
            topology,
            primary,
            channel: channel.to_owned(),
            patience: self.command_timeout.min(BUS_PING),
            tracked: tracked.map(str::to_owned),
        };
        tokio::runtime::Handle::try_current()
            .ok()?
            .spawn(bus.listen(sender));
        Some(receiver)
    }
}
