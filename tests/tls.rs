//! `rediss://`: the cache, its local tier and sessions over TLS on a private `redis-server`
//! with certificates made at test time; an untrusted server certificate, a missing client
//! certificate and misconfigured TLS settings are clear configuration errors.

mod common;

use cache_testing::{RedisCluster, RedisServer, TlsFiles};
use cachemere::{Cache, Config, Error, RedisStore, Ttl};

/// The variable a configuration error names.
fn named(err: &Error) -> Option<&'static str> {
    match err {
        Error::Config { name, .. } => Some(name),
        _ => None,
    }
}

async fn cache_and_sessions_work(config: &Config) {
    let store = RedisStore::connect(config).await.expect("connect over TLS");
    common::cache_local_tier_and_sessions_work(store).await;
}

#[tokio::test]
async fn the_cache_its_local_tier_and_sessions_work_over_tls() {
    let server = RedisServer::start_tls().expect("start a TLS redis-server");
    let config = server.config();
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    cache_and_sessions_work(&config).await;
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let server = RedisServer::start_mutual_tls().expect("start a mutual-TLS redis-server");
    cache_and_sessions_work(&server.config()).await;

    let mut anonymous = server.config();
    anonymous.tls_cert_file = None;
    anonymous.tls_key_file = None;
    let err = RedisStore::connect(&anonymous)
        .await
        .expect_err("the server requires a client certificate");
    println!("no client certificate: {err}");
    assert_eq!(named(&err), Some("REDIS_TLS_CERT_FILE"), "{err:?}");

    let stranger = TlsFiles::generate().expect("another authority");
    let mut unknown = server.config();
    unknown.tls_cert_file = Some(stranger.client_cert_file());
    unknown.tls_key_file = Some(stranger.client_key_file());
    let err = RedisStore::connect(&unknown)
        .await
        .expect_err("the server does not trust the client certificate");
    println!("unknown client certificate: {err}");
    assert_eq!(named(&err), Some("REDIS_TLS_CERT_FILE"), "{err:?}");
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_a_clear_error() {
    let server = RedisServer::start_tls().expect("start a TLS redis-server");
    let stranger = TlsFiles::generate().expect("another authority");
    let mut other_authority = server.config();
    other_authority.tls_ca_file = Some(stranger.ca_file());
    let mut system_roots = server.config();
    system_roots.tls_ca_file = None;
    for config in [other_authority, system_roots] {
        let err = RedisStore::connect(&config)
            .await
            .expect_err("the certificate is not trusted");
        println!("untrusted: {err}");
        assert_eq!(named(&err), Some("REDIS_TLS_CA_FILE"), "{err:?}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}

#[tokio::test]
async fn skipping_verification_takes_the_loudly_named_setting() {
    let server = RedisServer::start_tls().expect("start a TLS redis-server");
    let mut config = server.config();
    config.tls_ca_file = None;
    config.tls_insecure_skip_verify = true;
    cache_and_sessions_work(&config).await;

    let mut fragment = server.config();
    fragment.tls_ca_file = None;
    fragment.redis_url = Some(format!("{}#insecure", server.url()));
    let err = RedisStore::connect(&fragment)
        .await
        .expect_err("the #insecure fragment is refused");
    assert_eq!(named(&err), Some("REDIS_URL"), "{err:?}");
    assert!(
        err.to_string().contains("REDIS_TLS_INSECURE_SKIP_VERIFY"),
        "{err}"
    );
}

#[test]
fn tls_settings_are_checked_when_read() {
    let files = TlsFiles::generate().expect("certificates");
    let ca = files.ca_file().display().to_string();
    let cert = files.client_cert_file().display().to_string();
    let key = files.client_key_file().display().to_string();
    let garbage = files.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let garbage = garbage.display().to_string();
    let read = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    let tls_url = "rediss://app:tls-pw-2@127.0.0.1:6380/0";

    let config = read(&[
        ("REDIS_URL", tls_url),
        ("REDIS_TLS_CA_FILE", &ca),
        ("REDIS_TLS_CERT_FILE", &cert),
        ("REDIS_TLS_KEY_FILE", &key),
    ])
    .expect("a full TLS configuration");
    assert_eq!(config.tls_ca_file, Some(files.ca_file()));
    assert!(!config.tls_insecure_skip_verify);
    assert!(!format!("{config:?}").contains("tls-pw-2"));

    for (pairs, variable) in [
        // A forgotten `s` must not mean plaintext.
        (
            vec![
                ("REDIS_URL", "redis://127.0.0.1:6379/0"),
                ("REDIS_TLS_CA_FILE", &ca),
            ],
            "REDIS_TLS_CA_FILE",
        ),
        (
            vec![
                ("REDIS_URL", "redis://127.0.0.1:6379/0"),
                ("REDIS_TLS_INSECURE_SKIP_VERIFY", "true"),
            ],
            "REDIS_TLS_INSECURE_SKIP_VERIFY",
        ),
        (
            vec![("REDIS_URL", tls_url), ("REDIS_TLS_CERT_FILE", &cert)],
            "REDIS_TLS_KEY_FILE",
        ),
        (
            vec![("REDIS_URL", tls_url), ("REDIS_TLS_KEY_FILE", &key)],
            "REDIS_TLS_CERT_FILE",
        ),
        (
            vec![
                ("REDIS_URL", tls_url),
                ("REDIS_TLS_INSECURE_SKIP_VERIFY", "maybe"),
            ],
            "REDIS_TLS_INSECURE_SKIP_VERIFY",
        ),
        (
            vec![(
                "REDIS_URL",
                "rediss://app:tls-pw-2@127.0.0.1:6380/0#insecure",
            )],
            "REDIS_URL",
        ),
    ] {
        let err = read(&pairs).expect_err("refused");
        assert_eq!(named(&err), Some(variable), "{pairs:?}: {err:?}");
        assert!(!err.to_string().contains("tls-pw-2"), "{err}");
    }

    // Files are read when the store is made: a missing or unreadable file names its variable.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (field, path, variable) in [
        ("ca", garbage.as_str(), "REDIS_TLS_CA_FILE"),
        ("ca", "/nonexistent/ca.pem", "REDIS_TLS_CA_FILE"),
        ("cert", garbage.as_str(), "REDIS_TLS_CERT_FILE"),
        ("key", garbage.as_str(), "REDIS_TLS_KEY_FILE"),
        ("key", ca.as_str(), "REDIS_TLS_KEY_FILE"),
    ] {
        let mut config = read(&[
            ("REDIS_URL", tls_url),
            ("REDIS_TLS_CA_FILE", &ca),
            ("REDIS_TLS_CERT_FILE", &cert),
            ("REDIS_TLS_KEY_FILE", &key),
        ])
        .expect("config");
        let path = Some(std::path::PathBuf::from(path));
        match field {
            "ca" => config.tls_ca_file = path,
            "cert" => config.tls_cert_file = path,
            _ => config.tls_key_file = path,
        }
        let err = runtime
            .block_on(async { RedisStore::connect_lazy(&config) })
            .expect_err("a bad file");
        println!("{field}: {err}");
        assert_eq!(named(&err), Some(variable), "{err:?}");
    }
}

#[tokio::test]
async fn a_cluster_works_over_tls() {
    let cluster = RedisCluster::start_tls().expect("start a TLS redis cluster");
    let config = cluster.config();
    assert!(
        config
            .redis_url
            .as_deref()
            .is_some_and(|url| url.starts_with("rediss://"))
    );
    let store = RedisStore::connect(&config)
        .await
        .expect("connect over TLS");
    assert!(store.is_cluster());
    // Keys on every node, one multi-key call over all of them.
    let keys: Vec<String> = (0..30).map(|i| format!("user:{i}")).collect();
    let nodes: std::collections::HashSet<usize> =
        keys.iter().map(|key| cluster.node_of(key)).collect();
    assert_eq!(nodes.len(), 3, "the keys span every node");
    let cache = Cache::builder(store.clone()).build();
    let items: Vec<(String, u32)> = (0..30u32).map(|i| (format!("user:{i}"), i)).collect();
    cache.set_multi(&items, Ttl::Long).await.expect("set_multi");
    let values = cache.get_multi::<u32, _>(&keys).await.expect("get_multi");
    assert_eq!(values, (0..30u32).map(Some).collect::<Vec<_>>());
    cache_and_sessions_work(&config).await;

    let stranger = TlsFiles::generate().expect("another authority");
    let mut untrusted = config.clone();
    untrusted.tls_ca_file = Some(stranger.ca_file());
    let err = RedisStore::connect(&untrusted)
        .await
        .expect_err("the nodes' certificates are not trusted");
    println!("untrusted cluster: {err}");
    assert_eq!(named(&err), Some("REDIS_TLS_CA_FILE"), "{err:?}");
}
