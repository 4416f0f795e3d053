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
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, RedisFuture, RedisResult, Value};

pub(crate) use crate::key::hash_slot as slot;

/// What `REDIS_URL` names: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    /// `redis://host:port/db`.
    Node(Box<ConnectionInfo>),
    /// Several comma-separated URLs, or one `redis+cluster://` URL.
    Cluster(Vec<ConnectionInfo>),
    /// `redis+sentinel://host:26379,host:26379/service[/db]`.
    Sentinel(SentinelEndpoint),
}

/// What a `redis+sentinel://` URL names: the Sentinels, the service they watch, and how to log
/// in to its primary (the URL's user, password and database).
#[derive(Debug, Clone)]
pub(crate) struct SentinelEndpoint {
    pub(crate) sentinels: Vec<redis::ConnectionAddr>,
    pub(crate) service: String,
    pub(crate) redis: redis::RedisConnectionInfo,
}

/// The default port of a Sentinel.
const SENTINEL_PORT: u16 = 26379;

impl SentinelEndpoint {
    /// Reads `[user:password@]host[:port],host[:port]/service[/db]` (after the scheme).
    fn parse(address: &str, url: &str) -> Result<SentinelEndpoint, String> {
        let shown = crate::config::redacted_url(url);
        let (authority, path) = address.split_once('/').ok_or_else(|| {
            format!("`{shown}` names no service: redis+sentinel://host:26379/mymaster")
        })?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let mut segments = path.trim_end_matches('/').split('/');
        let service = segments
            .next()
            .filter(|service| !service.is_empty())
            .ok_or_else(|| {
                format!("`{shown}` names no service: redis+sentinel://host:26379/mymaster")
            })?
            .to_owned();
        let db = segments.next().unwrap_or("0");
        if segments.next().is_some() || db.parse::<u32>().is_err() {
            return Err(format!(
                "`{shown}`: after the service comes only a database number \
                 (redis+sentinel://host:26379/mymaster/0)"
            ));
        }
        // The user and password through redis-rs's own URL reading (percent-decoding).
        let login = match userinfo {
            Some(userinfo) => format!("redis://{userinfo}@localhost/{db}"),
            None => format!("redis://localhost/{db}"),
        };
        let redis = login
            .as_str()
            .into_connection_info()
            .map_err(|err| format!("`{shown}`: {err}"))?
            .redis_settings()
            .clone();
        let sentinels = hosts
            .split(',')
            .map(|host| {
                let host = host.trim();
                let (name, port) = match host.rsplit_once(':') {
                    Some((name, port)) if !name.ends_with(':') => (
                        name,
                        port.parse::<u16>()
                            .map_err(|_| format!("`{shown}`: `{host}` has no valid port"))?,
                    ),
                    _ => (host, SENTINEL_PORT),
                };
                let name = name.trim_start_matches('[').trim_end_matches(']');
                if name.is_empty() {
                    return Err(format!("`{shown}`: an empty Sentinel address"));
                }
                Ok(redis::ConnectionAddr::Tcp(name.to_owned(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(SentinelEndpoint {
            sentinels,
            service,
            redis,
        })
    }
}

impl Endpoint {
    /// Reads a `REDIS_URL`; the error is the reason, for a config error.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, String> {
        match url.trim().split_once("://") {
            Some(("redis+sentinel", address)) => {
                return SentinelEndpoint::parse(address, url).map(Endpoint::Sentinel);
            }
            Some(("rediss+sentinel", _)) => {
                return Err(
                    "TLS to a Sentinel-managed primary (rediss+sentinel://) is not supported \
                     yet: use redis+sentinel:// on a trusted network"
                        .into(),
                );
            }
            _ => {}
        }
        let parts: Vec<&str> = url.split(',').map(str::trim).collect();
        let (first, rest) = parts.split_first().unwrap_or((&"", &[]));
        let Some((scheme, address)) = first.split_once("://") else {
            return Err(format!(
                "`{}` has no scheme (redis://)",
                crate::config::redacted_url(first)
            ));
        };
        if scheme.starts_with("rediss") && cfg!(not(feature = "tls")) {
            return Err(
                "TLS (rediss://) is built with the `tls` feature of cachemere (or cache-core), \
                 which is off"
                    .into(),
            );
        }
        let (first_url, marked) = match scheme.strip_suffix("+cluster") {
            Some(plain) => (format!("{plain}://{address}"), true),
            None => ((*first).to_owned(), false),
        };
        let first = first_url
            .as_str()
            .into_connection_info()
            .map_err(|err| format!("`{}`: {err}", crate::config::redacted_url(first)))?;
        refuse_insecure_fragment(&first)?;
        if rest.is_empty() && !marked {
            return Ok(Endpoint::Node(Box::new(first)));
        }
        let mut nodes = vec![first];
        for part in rest {
            let node = seed(&nodes[0], part)?;
            refuse_insecure_fragment(&node)?;
            nodes.push(node);
        }
        if let Some(node) = nodes.iter().find(|node| node.redis_settings().db() != 0) {
            return Err(format!(
                "a Redis Cluster has only database 0, but {} asks for database {}",
                node.addr(),
                node.redis_settings().db()
            ));
        }
        Ok(Endpoint::Cluster(nodes))
    }
}

/// redis-rs reads `rediss://host/#insecure` as "verify nothing"; a fragment at the end of a
/// URL is too quiet a way to turn TLS's protection off, so the setting has a loud name.
fn refuse_insecure_fragment(node: &ConnectionInfo) -> Result<(), String> {
    match node.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => Err(format!(
            "the #insecure fragment of `{}` is not accepted: set \
             REDIS_TLS_INSECURE_SKIP_VERIFY=true to accept any server certificate (tests only)",
            node.addr()
        )),
        _ => Ok(()),
    }
}

/// A seed after the first: a URL of its own, or a bare `host:port` that takes the first node's
/// scheme, credentials and settings.
fn seed(first: &ConnectionInfo, part: &str) -> Result<ConnectionInfo, String> {
    if part.is_empty() {
        return Err("empty node address between commas".into());
    }
    if part.contains("://") {
        let url = match part.split_once("+cluster://") {
            Some((plain, rest)) => format!("{plain}://{rest}"),
            None => part.to_owned(),
        };
        return url
            .as_str()
            .into_connection_info()
            .map_err(|err| format!("`{}`: {err}", crate::config::redacted_url(part)));
    }
    let (host, port) = part
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("`{part}` is neither a URL nor host:port"))?;
    let node = NodeAddress::new(host.trim_start_matches('[').trim_end_matches(']'), port);
    address_like(first, &node).ok_or_else(|| format!("`{part}`: the first node is not on TCP"))
}

/// `info` (credentials, TLS, settings) for another node of its cluster.
fn address_like(info: &ConnectionInfo, node: &NodeAddress) -> Option<ConnectionInfo> {
    use redis::ConnectionAddr;
    let addr = match info.addr() {
        ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(node.host().to_owned(), node.port()),
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: node.host().to_owned(),
            port: node.port(),
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => return None,
    };
    Some(info.clone().set_addr(addr))
}

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
        let sends = pipeline.cmd_iter().map(|cmd| {
            let mut connection = self.connection.clone();
            async move { connection.req_packed_command(cmd).await }
        });
        join_all(sends).await.into_iter().collect()
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
    fn urls_name_a_node_or_a_cluster() {
        assert!(matches!(
            Endpoint::parse("redis://127.0.0.1:6379/2"),
            Ok(Endpoint::Node(_))
        ));
        let Ok(Endpoint::Cluster(nodes)) =
            Endpoint::parse("redis://10.0.0.1:7000, 10.0.0.2:7001,redis://10.0.0.3:7002")
        else {
            panic!("three URLs are a cluster");
        };
        let addresses: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        assert_eq!(
            addresses,
            ["10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:7002"]
        );
        assert!(matches!(
            Endpoint::parse("redis+cluster://10.0.0.1:7000"),
            Ok(Endpoint::Cluster(nodes)) if nodes.len() == 1
        ));
        let Ok(Endpoint::Cluster(nodes)) = Endpoint::parse("redis://ops:secret@a:7000,b:7001")
        else {
            panic!("a cluster");
        };
        assert_eq!(nodes[1].addr().to_string(), "b:7001");
        assert_eq!(nodes[1].redis_settings().password(), Some("secret"));
        assert_eq!(nodes[1].redis_settings().username(), Some("ops"));
        let err = Endpoint::parse("redis://a:7000,redis://b:7000/3").unwrap_err();
        assert!(err.contains("database 3"), "{err}");
        let err = Endpoint::parse("redis://a:7000,,redis://b:7000").unwrap_err();
        assert!(err.contains("empty"), "{err}");
        assert!(Endpoint::parse("redis://a:7000,http://b").is_err());
        assert!(Endpoint::parse("localhost:6379").is_err());
        assert!(Endpoint::parse("redis://a:7000,b").is_err());
        assert!(Endpoint::parse("redis://a:7000,b:99999").is_err());
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_service_database_and_login() {
        let Ok(Endpoint::Sentinel(endpoint)) =
            Endpoint::parse("redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2/primary/3")
        else {
            panic!("a sentinel URL");
        };
        let sentinels: Vec<String> = endpoint.sentinels.iter().map(|a| a.to_string()).collect();
        assert_eq!(sentinels, ["10.0.0.1:26380", "10.0.0.2:26379"]);
        assert_eq!(endpoint.service, "primary");
        assert_eq!(endpoint.redis.db(), 3);
        assert_eq!(endpoint.redis.username(), Some("app"));
        assert_eq!(endpoint.redis.password(), Some("p@ss"));
        for bad in [
            "redis+sentinel://10.0.0.1:26379",
            "redis+sentinel://10.0.0.1:26379/",
            "redis+sentinel://10.0.0.1:26379/primary/x",
            "redis+sentinel://10.0.0.1:26379/primary/0/extra",
            "redis+sentinel://10.0.0.1:99999/primary",
            "redis+sentinel://10.0.0.1:26379,,10.0.0.2/primary",
            "redis+sentinel://u:hunter2@10.0.0.1:bad/primary",
            "rediss+sentinel://10.0.0.1:26379/primary",
        ] {
            let err = Endpoint::parse(bad).expect_err(bad);
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_sentinel_url_parses_or_is_an_error_without_the_password(
            address in "\\PC{0,40}",
            password in "[A-Za-z0-9]{6,12}",
        ) {
            let url = format!("redis+sentinel://u:{password}@{address}");
            if let Err(err) = Endpoint::parse(&url) {
                proptest::prop_assert!(!err.contains(&format!(":{password}@")), "{}", err);
            }
        }
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
