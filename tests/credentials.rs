//! Redis ACL users: a user and password in `REDIS_URL` work for the cache, its local tier's
//! pub/sub and sessions; a wrong password is a configuration error naming `REDIS_URL`; no
//! password appears in errors or `Debug` output.

mod common;

use cache_testing::RedisServer;
use cachemere::{Cache, Config, Error, RedisStore, Ttl};

const PASSWORD: &str = "s3cret-Pa55word";

/// Adds the ACL user `app` (every key, channel and command) on the server behind `connection`.
async fn add_user(connection: &mut impl redis::aio::ConnectionLike) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(format!(">{PASSWORD}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(connection)
        .await
        .expect("ACL SETUSER");
}

/// A private server with an ACL user `app` (the default user stays on for the harness).
async fn server_with_user() -> (RedisServer, u16) {
    let server = RedisServer::start_private().expect("start redis-server");
    let admin = RedisStore::connect(&server.config())
        .await
        .expect("connect as the default user");
    add_user(&mut admin.connection()).await;
    let port = server.port().expect("a private server has a port");
    (server, port)
}

fn config_for(server: &RedisServer, url: String) -> Config {
    let mut config = server.config();
    config.redis_url = Some(url);
    config
}

#[tokio::test]
async fn an_acl_user_works_for_the_cache_its_local_tier_and_sessions() {
    let (server, port) = server_with_user().await;
    let config = config_for(
        &server,
        format!("redis://app:{PASSWORD}@127.0.0.1:{port}/0"),
    );
    let store = RedisStore::connect(&config).await.expect("connect as app");
    let whoami: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut store.connection())
        .await
        .expect("ACL WHOAMI");
    assert_eq!(whoami, "app");

    common::cache_local_tier_and_sessions_work(store).await;
}

#[tokio::test]
async fn a_wrong_password_is_a_configuration_error_without_the_password() {
    let (server, port) = server_with_user().await;
    for (url, secret) in [
        (
            format!("redis://app:wrong-Pa55@127.0.0.1:{port}/0"),
            "wrong-Pa55",
        ),
        (
            format!("redis://nobody:n0b0dy-pw@127.0.0.1:{port}/0"),
            "n0b0dy-pw",
        ),
    ] {
        let config = config_for(&server, url);
        let err = RedisStore::connect(&config).await.expect_err("refused");
        assert!(
            matches!(
                err,
                Error::Config {
                    name: "REDIS_URL",
                    ..
                }
            ),
            "{err:?}"
        );
        let shown = format!("{err} / {err:?} / {config:?}");
        assert!(shown.contains("credentials"), "{shown}");
        assert!(!shown.contains(secret), "the password shows: {shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}

#[test]
fn malformed_urls_with_passwords_do_not_show_them() {
    for url in [
        "redis://app:hidden-pw-1@127.0.0.1:notaport/0",
        "app:hidden-pw-1@127.0.0.1:6379",
        "redis://app:hidden-pw-1@10.0.0.1:7000,redis://app:hidden-pw-1@:bad",
    ] {
        let err = Config::from_lookup(|name| (name == "REDIS_URL").then(|| url.to_owned()))
            .expect_err("a malformed REDIS_URL");
        let shown = format!("{err} / {err:?}");
        assert!(shown.contains("REDIS_URL"), "{shown}");
        assert!(
            !shown.contains("hidden-pw-1"),
            "the password shows: {shown}"
        );
    }
}

#[tokio::test]
async fn an_acl_user_works_on_a_cluster() {
    let cluster = cache_testing::RedisCluster::lease().expect("a test cluster");
    let ports = cluster.ports();
    for port in &ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut node = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a node");
        add_user(&mut node).await;
    }
    let seeds = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut config = cluster.config();
    config.redis_url = Some(format!("redis+cluster://app:{PASSWORD}@{seeds}"));
    let store = RedisStore::connect(&config).await.expect("connect as app");
    let cache = Cache::builder(store).build();
    let items: Vec<(String, u32)> = (0..30).map(|i| (format!("acl:{i}"), i)).collect();
    cache
        .set_multi(&items, Ttl::Long)
        .await
        .expect("set_multi over every node");
    let keys: Vec<&str> = items.iter().map(|(key, _)| key.as_str()).collect();
    let found = cache.get_multi::<u32, _>(&keys).await.expect("get_multi");
    assert_eq!(found, (0..30).map(Some).collect::<Vec<_>>());
    assert_eq!(
        cache
            .invalidate_pattern("acl:*")
            .await
            .expect("sweep every primary"),
        30
    );

    config.redis_url = Some(format!("redis+cluster://app:wrong-Pa55@{seeds}"));
    let err = RedisStore::connect(&config).await.expect_err("refused");
    assert!(
        matches!(
            err,
            Error::Config {
                name: "REDIS_URL",
                ..
            }
        ),
        "{err:?}"
    );
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("credentials"), "{shown}");
    assert!(!shown.contains("wrong-Pa55"), "the password shows: {shown}");
}
