//! What `REDIS_URL` names: one server, the seed nodes of a cluster, or a Sentinel-managed
//! primary; and the URL with its passwords hidden, for logs.

use redis::cluster::NodeAddress;
use redis::{ConnectionInfo, IntoConnectionInfo};

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
        let shown = redacted_url(url);
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
                redacted_url(first)
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
            .map_err(|err| format!("`{}`: {err}", redacted_url(first)))?;
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
            .map_err(|err| format!("`{}`: {err}", redacted_url(part)));
    }
    let (host, port) = part
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("`{part}` is neither a URL nor host:port"))?;
    let node = NodeAddress::new(host.trim_start_matches('[').trim_end_matches(']'), port);
    address_like(first, &node).ok_or_else(|| format!("`{part}`: the first node is not on TCP"))
}

/// `info` (credentials, TLS, settings) for another node of its cluster.
pub(crate) fn address_like(info: &ConnectionInfo, node: &NodeAddress) -> Option<ConnectionInfo> {
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

/// `REDIS_URL` (one URL, or several separated by commas) with every password replaced by
/// `***`, fit for logs and start-up lines. User names, hosts and databases are kept.
///
/// ```
/// use cache_core::config::redacted_url;
///
/// assert_eq!(redacted_url("redis://app:s3cr3t@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(redacted_url("rediss://:p@ss@h1,redis://h2"), "rediss://:***@h1,redis://h2");
/// assert_eq!(redacted_url("redis://127.0.0.1/"), "redis://127.0.0.1/");
/// ```
pub fn redacted_url(url: &str) -> String {
    url.split(',')
        .map(|part| {
            let (scheme, rest) = match part.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), part),
            };
            match rest.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}{user}:***@{host}"),
                    None => format!("{scheme}{userinfo}@{host}"),
                },
                None => format!("{scheme}{rest}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
