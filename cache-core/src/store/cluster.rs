//! Redis Cluster support for [`RedisStore`](super::RedisStore): which URLs name a cluster,
//! where a key lives, and multi-key work split into one pipeline per primary.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster::NodeAddress;
use redis::cluster_async::ClusterConnection;
use redis::cluster_read_routing::{
    ClusterTopology, ReadCandidates, ReadRoutingStrategy, ReadRoutingStrategyFactory,
};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisFuture, RedisResult, Value};

use super::endpoint::address_like;

pub(crate) use crate::key::hash_slot as slot;

/// The cluster's slot map as the client last saw it, shared by every connection of a store.
///
/// redis-rs hands its topology to a read-routing strategy after each refresh (at connect, and
/// after `MOVED` or a lost node); this one keeps it and routes every read to the primary, as
/// the default routing does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Topology {
    latest: Arc<RwLock<Option<Arc<ClusterTopology>>>>,
}

impl Topology {
    fn current(&self) -> Option<Arc<ClusterTopology>> {
        self.latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The primary serving `slot`, once the topology is known.
    pub(crate) fn primary_of(&self, slot: u16) -> Option<NodeAddress> {
        let topology = self.current()?;
        topology
            .shard_for_slot(slot)
            .map(|shard| shard.primary().clone())
    }

    /// [`Store::locate`](crate::Store::locate) on this topology: `keys` grouped by the
    /// primary serving their slot; `None` until the topology is known, or if a key's slot is
    /// served by no one.
    pub(crate) fn locate(&self, keys: &[&str]) -> Option<Vec<(String, Vec<usize>)>> {
        let topology = self.current()?;
        let mut groups: Vec<(&NodeAddress, Vec<usize>)> = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let primary = topology.shard_for_slot(slot(key.as_bytes()))?.primary();
            match groups.iter_mut().find(|(node, _)| *node == primary) {
                Some((_, indices)) => indices.push(index),
                None => groups.push((primary, vec![index])),
            }
        }
        Some(
            groups
                .into_iter()
                .map(|(node, indices)| (node.to_string(), indices))
                .collect(),
        )
    }

    /// A key whose slot `node` (as [`locate`](Topology::locate) names it) serves as
    /// primary, for probing it: `None` until the topology is known, `Some(None)` when it
    /// serves no slot.
    pub(crate) fn key_on(&self, node: &str) -> Option<Option<String>> {
        let topology = self.current()?;
        if !topology.shards().any(|shard| *shard.primary() == node) {
            return Some(None);
        }
        // about one key in three lands on a node of three
        Some((0u32..1 << 20).map(probe_key).find(|key| {
            topology
                .shard_for_slot(slot(key.as_bytes()))
                .is_some_and(|shard| *shard.primary() == node)
        }))
    }

    /// Every primary, once the topology is known.
    pub(crate) fn primaries(&self) -> Option<Vec<NodeAddress>> {
        let topology = self.current()?;
        let mut primaries: Vec<NodeAddress> = topology
            .shards()
            .map(|shard| shard.primary().clone())
            .collect();
        primaries.sort();
        primaries.dedup();
        Some(primaries)
    }
}

impl ReadRoutingStrategyFactory for Topology {
    fn create_strategy(&self) -> Box<dyn ReadRoutingStrategy> {
        Box::new(PrimaryReads(self.clone()))
    }
}

struct PrimaryReads(Topology);

impl ReadRoutingStrategy for PrimaryReads {
    fn on_topology_changed(&self, topology: ClusterTopology) {
        *self
            .0
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(topology));
    }

    fn route_read<'a>(&self, candidates: &ReadCandidates<'a>) -> &'a NodeAddress {
        match candidates {
            ReadCandidates::AnyNode(any) => any.primary(),
            ReadCandidates::ReplicasOnly(replicas) => replicas.replicas().first(),
        }
    }
}

/// Indices of `keys` grouped by hash slot, each group in the keys' order.
pub(crate) fn by_slot<K: AsRef<[u8]>>(keys: &[K]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: HashMap<u16, Vec<usize>> = HashMap::new();
    for (index, key) in keys.iter().enumerate() {
        groups.entry(slot(key.as_ref())).or_default().push(index);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by_key(|(_, indices)| indices[0]);
    groups
}

/// A cluster connection and the topology it reports.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) connection: ClusterConnection,
    pub(crate) topology: Topology,
}

impl Cluster {
    /// Runs commands that each touch one hash slot (given with it) and returns their replies in
    /// order: one pipeline per primary, sent to all primaries at once. A command whose slot
    /// moved since the topology was read is re-sent on its own, following the redirect.
    pub(crate) async fn scatter<C: Borrow<Cmd>>(
        &self,
        commands: &[(u16, C)],
    ) -> RedisResult<Vec<Value>> {
        let topology = self.topology.current();
        let mut by_node: HashMap<Option<NodeAddress>, Vec<usize>> = HashMap::new();
        for (index, (slot, _)) in commands.iter().enumerate() {
            let node = topology
                .as_ref()
                .and_then(|t| t.shard_for_slot(*slot))
                .map(|shard| shard.primary().clone());
            by_node.entry(node).or_default().push(index);
        }
        let batches = by_node
            .into_iter()
            .map(|(node, indices)| self.run_batch(node, indices, commands));
        let mut replies = vec![Value::Nil; commands.len()];
        for batch in join_all(batches).await {
            for (index, reply) in batch? {
                replies[index] = reply;
            }
        }
        Ok(replies)
    }

    async fn run_batch<C: Borrow<Cmd>>(
        &self,
        node: Option<NodeAddress>,
        indices: Vec<usize>,
        commands: &[(u16, C)],
    ) -> RedisResult<Vec<(usize, Value)>> {
        let Some(node) = node else {
            return self.one_by_one(indices, commands).await;
        };
        let mut pipe = redis::pipe();
        for &index in &indices {
            pipe.add_command(commands[index].1.borrow().clone());
        }
        let mut connection = self.connection.clone();
        let values = match connection
            .route_pipeline(pipe, 0, indices.len(), by_address(&node))
            .await
        {
            Ok(values) => values,
            Err(err)
                if err.is_cluster_error()
                    || err.kind() == redis::ErrorKind::ClusterConnectionNotFound =>
            {
                return self.one_by_one(indices, commands).await;
            }
            Err(err) => return Err(err),
        };
        let (redo, mut replies): (Vec<_>, Vec<_>) = indices
            .into_iter()
            .zip(values)
            .partition(|(_, value)| is_redirect(value));
        let redo = redo.into_iter().map(|(index, _)| index).collect();
        replies.extend(self.one_by_one(redo, commands).await?);
        Ok(replies)
    }

    /// Sends each command on its own, routed by its slot (following redirects), all at once.
    async fn one_by_one<C: Borrow<Cmd>>(
        &self,
        indices: Vec<usize>,
        commands: &[(u16, C)],
    ) -> RedisResult<Vec<(usize, Value)>> {
        let sends = indices.into_iter().map(|index| {
            let (slot, cmd) = &commands[index];
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                *slot,
                SlotAddr::Master,
            )));
            let mut connection = self.connection.clone();
            async move {
                let value = connection
                    .route_command(cmd.borrow().clone(), routing)
                    .await?;
                Ok((index, value))
            }
        });
        join_all(sends).await.into_iter().collect()
    }

    /// The replies of a pipeline's commands, each sent on its own to its key's node, all at
    /// once.
    pub(crate) async fn each_on_its_node(
        &self,
        pipeline: &redis::Pipeline,
    ) -> RedisResult<Vec<Value>> {
        let sends = pipeline.cmd_iter().map(|cmd| self.command(cmd));
        join_all(sends).await.into_iter().collect()
    }

    /// Sends a command, routed by its key. While a slot moves, the nodes' views of it differ
    /// for a few milliseconds, and `MOVED` redirects can send a command back and forth until
    /// the client's retries (which follow redirects at once) run out: such a failure is
    /// retried after a pause, a few times ([`REDIRECT_PAUSES`]). A redirected command did
    /// not run.
    pub(crate) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        self.through_migrations(
            |mut connection| async move { connection.req_packed_command(cmd).await },
        )
        .await
    }

    /// Sends a pipeline to the node of its keys, as [`command`](Cluster::command) sends a
    /// command; one that spans slots, or that redirects still send back and forth, is sent
    /// again command by command, each routed by its key (as the client's own retries of the
    /// whole pipeline, a command that had run may run again: keep such pipelines
    /// idempotent). A transaction is sent as it is.
    pub(crate) async fn pipeline(
        &self,
        pipeline: &redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let together = self
            .through_migrations(|mut connection| async move {
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            })
            .await;
        match together {
            Err(err)
                if (is_cross_slot(&err) || is_redirect_error(&err))
                    && !pipeline.is_transaction() =>
            {
                self.each_on_its_node(pipeline).await
            }
            other => other,
        }
    }

    async fn through_migrations<T, F>(
        &self,
        mut request: impl FnMut(ClusterConnection) -> F,
    ) -> RedisResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let mut pauses = REDIRECT_PAUSES.iter();
        loop {
            match request(self.connection.clone()).await {
                Err(err) if is_redirect_error(&err) => match pauses.next() {
                    Some(&pause) => tokio::time::sleep(pause).await,
                    None => return Err(err),
                },
                other => return other,
            }
        }
    }

    /// Whether the primary of `key`'s slot answers an `EXISTS` of it within `patience`. A
    /// keyed read, not a `PING`: a `PING` finding no connection to the node is sent to
    /// another one, which answers. If the primary is lost, the client's retries and the
    /// other nodes' `MOVED` refresh the slot map, and a replica that took the slot over
    /// answers.
    pub(crate) async fn key_answers(&self, key: &str, patience: std::time::Duration) -> bool {
        let mut connection = self.connection.clone();
        let mut exists = redis::cmd("EXISTS");
        exists.arg(key);
        let read = connection.req_packed_command(&exists);
        matches!(
            tokio::time::timeout(patience, read).await,
            Ok(Ok(reply)) if !matches!(reply, Value::ServerError(_))
        )
    }

    /// Sends a command to one node.
    pub(crate) async fn on_node(&self, node: &NodeAddress, cmd: Cmd) -> RedisResult<Value> {
        let routing = RoutingInfo::SingleNode(by_address(node));
        self.connection.clone().route_command(cmd, routing).await
    }

    /// A connection for running a script on the keys of `slot`: besides the script's own
    /// `EVALSHA`, which the client routes by key, its `SCRIPT LOAD` goes to that slot's primary
    /// only, so a script runs wherever its keys are reachable even while another node is down.
    pub(crate) fn for_script(&self, slot: u16) -> ScriptConnection {
        ScriptConnection {
            connection: self.connection.clone(),
            slot,
        }
    }
}

/// The `n`th key a breaker's probe may read (`EXISTS`): in cachemere's reserved space.
fn probe_key(n: u32) -> String {
    format!("{}probe:{n}", crate::key::RESERVED)
}

/// A client like `seed` (credentials, TLS, TCP settings) for another node of its cluster.
pub(crate) fn client_for(seed: &redis::Client, node: &NodeAddress) -> Option<redis::Client> {
    redis::Client::open(address_like(seed.get_connection_info(), node)?).ok()
}

fn by_address(node: &NodeAddress) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::ByAddress {
        host: node.host().to_owned(),
        port: node.port(),
    }
}

/// The pauses before sending again a request that redirects sent back and forth (see
/// [`Cluster::command`]): 150 ms in all, within the default operation deadline (0.5 s).
const REDIRECT_PAUSES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(10),
    std::time::Duration::from_millis(20),
    std::time::Duration::from_millis(40),
    std::time::Duration::from_millis(80),
];

/// Whether redis-rs refused a pipeline over several slots (before sending it).
fn is_cross_slot(err: &redis::RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
}

/// Whether a request failed as a whole on a redirect (`MOVED`, `ASK`, `TRYAGAIN`,
/// `CLUSTERDOWN`) that the client's retries did not get past: while a slot moves, nodes
/// disagree about it for a few milliseconds and send a request back and forth; and a
/// pipeline's `ASK` reaches the importing node without `ASKING`, which sends it back.
pub(crate) fn is_redirect_error(err: &redis::RedisError) -> bool {
    err.is_cluster_error()
}

fn is_redirect(value: &Value) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, Moved, TryAgain};
    matches!(value, Value::ServerError(err)
        if matches!(err.kind(), Some(Moved | Ask | TryAgain | ClusterDown)))
}

/// See [`Cluster::for_script`].
pub(crate) struct ScriptConnection {
    connection: ClusterConnection,
    slot: u16,
}

fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => bytes,
        _ => &[],
    });
    matches!(
        (args.next(), args.next()),
        (Some(name), Some(sub))
            if name.eq_ignore_ascii_case(b"SCRIPT") && sub.eq_ignore_ascii_case(b"LOAD")
    )
}

impl ConnectionLike for ScriptConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if is_script_load(cmd) {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                self.slot,
                SlotAddr::Master,
            )));
            Box::pin(self.connection.route_command(cmd.clone(), routing))
        } else {
            self.connection.req_packed_command(cmd)
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.connection.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn slots_agree_with_the_redis_client() {
        for key in [
            "",
            "a",
            "user:profile:42",
            "session:{ab}:s:1",
            "{}",
            "x{y",
            "é",
        ] {
            assert_eq!(
                Route::with_key(key, SlotAddr::Master),
                Route::new(slot(key.as_bytes()), SlotAddr::Master),
                "{key}"
            );
        }
    }

    #[test]
    fn groups_keep_key_order() {
        let keys = ["{a}1", "{b}1", "{a}2", "{b}2", "{c}"];
        let groups = by_slot(&keys);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0], (slot(b"a"), vec![0, 2]));
        assert_eq!(groups[1], (slot(b"b"), vec![1, 3]));
        assert_eq!(groups[2], (slot(b"c"), vec![4]));
    }

    #[test]
    fn script_loads_are_recognised() {
        let mut load = redis::cmd("script");
        load.arg("load").arg("return 1");
        assert!(is_script_load(&load));
        assert!(!is_script_load(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!is_script_load(&redis::cmd("SCRIPT")));
    }
}
