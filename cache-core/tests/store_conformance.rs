//! One suite of store behaviour, run against `RedisStore` (on a private `redis-server`, on one
//! over TLS with feature `tls`, and on a private three-primary Redis Cluster) and
//! `MemoryStore`. Test names show the backend:
//! `redis::ttl_expiry`, `cluster::ttl_expiry`, `memory::ttl_expiry`.

use std::sync::Arc;
use std::time::Duration;

use cache_core::key::escape_glob;
use cache_core::store::{Expected, FENCE_PREFIX};
use cache_core::{Error, KeyTtl, MemoryStore, RedisStore, Store};

const MINUTE: Duration = Duration::from_secs(60);

struct Fixture {
    store: Arc<dyn Store>,
    _server: Option<Box<dyn std::any::Any + Send>>,
}

async fn redis_fixture() -> Fixture {
    let server = cache_testing::RedisServer::start().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect to the test server");
    Fixture {
        store: Arc::new(store),
        _server: Some(Box::new(server)),
    }
}

#[cfg(feature = "tls")]
async fn tls_fixture() -> Fixture {
    let server = cache_testing::RedisServer::start_tls().expect("start a TLS redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect to the test server over TLS");
    Fixture {
        store: Arc::new(store),
        _server: Some(Box::new(server)),
    }
}

async fn cluster_fixture() -> Fixture {
    let cluster = cache_testing::RedisCluster::lease().expect("start a redis cluster");
    let store = RedisStore::connect(&cluster.config())
        .await
        .expect("connect to the test cluster");
    assert!(store.is_cluster());
    Fixture {
        store: Arc::new(store),
        _server: Some(Box::new(cluster)),
    }
}

async fn memory_fixture() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        _server: None,
    }
}

fn bytes(values: &[&str]) -> Vec<Vec<u8>> {
    values.iter().map(|v| v.as_bytes().to_vec()).collect()
}

fn sorted(mut values: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    values.sort();
    values
}

macro_rules! store_conformance {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            async fn store() -> Fixture {
                $fixture().await
            }

            #[tokio::test]
            async fn get_missing_is_none() {
                let f = store().await;
                assert_eq!(f.store.get("absent").await.unwrap(), None);
            }

            #[tokio::test]
            async fn set_then_get_and_overwrite() {
                let f = store().await;
                f.store.set("k", b"one", MINUTE).await.unwrap();
                assert_eq!(f.store.get("k").await.unwrap(), Some(b"one".to_vec()));
                f.store.set("k", b"two", MINUTE).await.unwrap();
                assert_eq!(f.store.get("k").await.unwrap(), Some(b"two".to_vec()));
            }

            #[tokio::test]
            async fn binary_and_empty_values_round_trip() {
                let f = store().await;
                let binary: Vec<u8> = (0..=255).collect();
                f.store.set("binary", &binary, MINUTE).await.unwrap();
                f.store.set("empty", b"", MINUTE).await.unwrap();
                assert_eq!(f.store.get("binary").await.unwrap(), Some(binary));
                assert_eq!(f.store.get("empty").await.unwrap(), Some(Vec::new()));
                assert!(f.store.exists("empty").await.unwrap());
            }

            #[tokio::test]
            async fn large_value_of_10_mib_round_trips() {
                let f = store().await;
                let large: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
                f.store.set("large", &large, MINUTE).await.unwrap();
                assert_eq!(f.store.get("large").await.unwrap(), Some(large));
            }

            #[tokio::test]
            async fn ttl_expiry() {
                let f = store().await;
                f.store.set("short", b"v", Duration::from_millis(150)).await.unwrap();
                match f.store.ttl("short").await.unwrap() {
                    KeyTtl::ExpiresIn(left) => assert!(left <= Duration::from_millis(150)),
                    other => panic!("expected a ttl, got {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
                assert_eq!(f.store.get("short").await.unwrap(), None);
                assert!(!f.store.exists("short").await.unwrap());
                assert_eq!(f.store.ttl("short").await.unwrap(), KeyTtl::Missing);
            }

            #[tokio::test]
            async fn replace_if_equals_writes_only_over_the_expected_bytes() {
                let f = store().await;
                f.store.set("r", b"old\x00\xff", MINUTE).await.unwrap();
                let short = Duration::from_millis(300);
                assert!(!f.store.replace_if_equals("r", b"other", b"new", short).await.unwrap());
                assert_eq!(f.store.get("r").await.unwrap(), Some(b"old\x00\xff".to_vec()));
                assert!(f.store.replace_if_equals("r", b"old\x00\xff", b"new", short).await.unwrap());
                assert_eq!(f.store.get("r").await.unwrap(), Some(b"new".to_vec()));
                match f.store.ttl("r").await.unwrap() {
                    KeyTtl::ExpiresIn(left) => assert!(left <= short, "{left:?}"),
                    other => panic!("the new ttl applies: {other:?}"),
                }
                assert!(!f.store.replace_if_equals("absent", b"", b"new", MINUTE).await.unwrap());
                assert_eq!(f.store.get("absent").await.unwrap(), None, "a missing key stays missing");
                tokio::time::sleep(Duration::from_millis(450)).await;
                assert!(!f.store.replace_if_equals("r", b"new", b"newer", MINUTE).await.unwrap());
                assert_eq!(f.store.get("r").await.unwrap(), None, "an expired key is not revived");
            }

            #[tokio::test]
            async fn fence_marks_values_and_empty_keys_and_removes_collections() {
                let f = store().await;
                let keys: Vec<String> = ["fence:value", "fence:absent", "fence:list", "fence:ünï"]
                    .map(String::from)
                    .to_vec();
                f.store.set("fence:value", b"v", MINUTE).await.unwrap();
                f.store.rpush("fence:list", &bytes(&["a"]), MINUTE).await.unwrap();
                f.store.set("fence:ünï", b"\x00\xff", MINUTE).await.unwrap();
                let marker = [FENCE_PREFIX, b"one"].concat();
                let short = Duration::from_millis(300);
                assert_eq!(f.store.fence(&keys, &marker, short).await.unwrap(), 3, "held a value");
                for key in ["fence:value", "fence:absent", "fence:ünï"] {
                    assert_eq!(f.store.get(key).await.unwrap(), Some(marker.clone()), "{key}");
                }
                assert!(!f.store.exists("fence:list").await.unwrap(), "a collection is removed");
                let again = [FENCE_PREFIX, b"two"].concat();
                assert_eq!(
                    f.store.fence(&keys, &again, short).await.unwrap(),
                    0,
                    "markers are not values"
                );
                assert_eq!(f.store.get("fence:value").await.unwrap(), Some(again));
                tokio::time::sleep(Duration::from_millis(450)).await;
                assert_eq!(f.store.get("fence:value").await.unwrap(), None, "a marker expires");
                assert_eq!(f.store.fence(&[], &marker, short).await.unwrap(), 0);
            }

            #[tokio::test]
            async fn set_many_if_writes_only_over_what_each_write_expects() {
                let f = store().await;
                f.store.set("if:old", b"old", MINUTE).await.unwrap();
                f.store.set("if:taken", b"x", MINUTE).await.unwrap();
                f.store.set("if:marked", &[FENCE_PREFIX, b"m"].concat(), MINUTE).await.unwrap();
                f.store.set("if:any", b"x", MINUTE).await.unwrap();
                let writes: Vec<(&str, &[u8], Duration, Expected<'_>)> = vec![
                    ("if:old", b"new", MINUTE, Expected::Bytes(b"old")),
                    ("if:free", b"new", MINUTE, Expected::Nothing),
                    ("if:marked", b"new", MINUTE, Expected::Bytes(b"other")),
                    ("if:taken", b"new", MINUTE, Expected::Nothing),
                    ("if:any", b"new", MINUTE, Expected::Anything),
                    ("if:gone", b"new", MINUTE, Expected::Bytes(b"old")),
                ];
                let written = f.store.set_many_if(&writes).await.unwrap();
                assert_eq!(written, vec![true, true, false, false, true, false]);
                for (key, expected) in [
                    ("if:old", Some(&b"new"[..])),
                    ("if:free", Some(b"new")),
                    ("if:taken", Some(b"x")),
                    ("if:any", Some(b"new")),
                    ("if:gone", None),
                ] {
                    assert_eq!(f.store.get(key).await.unwrap().as_deref(), expected, "{key}");
                }
                assert!(f.store.set_many_if(&[]).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn expire_changes_the_ttl_of_existing_keys_only() {
                let f = store().await;
                f.store.set("k", b"v", MINUTE).await.unwrap();
                assert!(f.store.expire("k", Duration::from_millis(100)).await.unwrap());
                assert!(!f.store.expire("absent", MINUTE).await.unwrap());
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(f.store.get("k").await.unwrap(), None);
            }

            #[tokio::test]
            async fn delete_reports_existence() {
                let f = store().await;
                f.store.set("k", b"v", MINUTE).await.unwrap();
                assert!(f.store.delete("k").await.unwrap());
                assert!(!f.store.delete("k").await.unwrap());
                assert_eq!(f.store.get("k").await.unwrap(), None);
            }

            #[tokio::test]
            async fn mget_keeps_order_and_gaps() {
                let f = store().await;
                let items = vec![
                    ("a".to_owned(), b"1".to_vec(), MINUTE),
                    ("c".to_owned(), b"3".to_vec(), MINUTE),
                ];
                f.store.mset(&items).await.unwrap();
                assert_eq!(
                    f.store.mget(&["a", "b", "c", "d"]).await.unwrap(),
                    vec![Some(b"1".to_vec()), None, Some(b"3".to_vec()), None]
                );
                assert_eq!(f.store.mget(&[]).await.unwrap(), Vec::<Option<Vec<u8>>>::new());
            }

            #[tokio::test]
            async fn mget_with_ttl_keeps_order_gaps_and_each_ttl() {
                let f = store().await;
                let items = vec![
                    ("{a}1".to_owned(), b"1".to_vec(), Duration::from_secs(5)),
                    ("b2".to_owned(), b"2".to_vec(), MINUTE),
                    ("{a}3".to_owned(), Vec::new(), MINUTE),
                ];
                f.store.mset(&items).await.unwrap();
                let found = f
                    .store
                    .mget_with_ttl(&["{a}1", "gap", "b2", "{a}3", "c-\u{e9}\u{1F600}"])
                    .await
                    .unwrap();
                let within = |ttl: &KeyTtl, most: Duration| {
                    matches!(ttl, KeyTtl::ExpiresIn(left)
                        if *left <= most && *left > most - Duration::from_secs(2))
                };
                assert_eq!(found.len(), 5);
                let (value, ttl) = found[0].as_ref().expect("{a}1");
                assert!(value == b"1" && within(ttl, Duration::from_secs(5)), "{ttl:?}");
                assert!(found[1].is_none());
                let (value, ttl) = found[2].as_ref().expect("b2");
                assert!(value == b"2" && within(ttl, MINUTE), "{ttl:?}");
                let (value, ttl) = found[3].as_ref().expect("{a}3");
                assert!(value.is_empty() && within(ttl, MINUTE), "{ttl:?}");
                assert!(found[4].is_none());
                assert!(f.store.mget_with_ttl(&[]).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn mset_applies_each_ttl() {
                let f = store().await;
                let items = vec![
                    ("x".to_owned(), b"1".to_vec(), Duration::from_millis(100)),
                    ("y".to_owned(), b"2".to_vec(), MINUTE),
                ];
                f.store.mset(&items).await.unwrap();
                assert!(matches!(f.store.ttl("x").await.unwrap(), KeyTtl::ExpiresIn(_)));
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(f.store.get("x").await.unwrap(), None);
                assert_eq!(f.store.get("y").await.unwrap(), Some(b"2".to_vec()));
            }

            #[tokio::test]
            async fn delete_many_counts_existing_keys() {
                let f = store().await;
                for key in ["a", "b"] {
                    f.store.set(key, b"v", MINUTE).await.unwrap();
                }
                let keys = ["a", "b", "c"].map(String::from);
                assert_eq!(f.store.delete_many(&keys).await.unwrap(), 2);
                assert_eq!(f.store.delete_many(&[]).await.unwrap(), 0);
                assert!(!f.store.exists("a").await.unwrap());
            }

            #[tokio::test]
            async fn delete_matching_with_escaped_patterns() {
                let f = store().await;
                let ids = ["1", "2", "*", "[a]", "a", "?"];
                for id in ids {
                    f.store.set(&format!("user:{id}:profile"), b"v", MINUTE).await.unwrap();
                }
                f.store.set("class:1:profile", b"v", MINUTE).await.unwrap();

                let star = format!("user:{}:*", escape_glob("*"));
                assert_eq!(f.store.delete_matching(&star).await.unwrap(), 1);
                assert!(!f.store.exists("user:*:profile").await.unwrap());
                assert!(f.store.exists("user:1:profile").await.unwrap());

                let class = format!("user:{}:*", escape_glob("[a]"));
                assert_eq!(f.store.delete_matching(&class).await.unwrap(), 1);
                assert!(f.store.exists("user:a:profile").await.unwrap());

                assert_eq!(f.store.delete_matching("user:*").await.unwrap(), 4);
                assert!(f.store.exists("class:1:profile").await.unwrap());
            }

            #[tokio::test]
            async fn delete_matching_takes_the_tag_records_of_what_it_removes() {
                let f = store().await;
                let record = |key: &str| String::from_utf8(cache_core::key::tags_record(key.as_bytes())).unwrap();
                for key in ["swept:1", "kept:1"] {
                    f.store.set(key, b"v", MINUTE).await.unwrap();
                    f.store.sadd(&record(key), &[b"t".to_vec()], MINUTE).await.unwrap();
                }
                assert_eq!(f.store.delete_matching("swept:*").await.unwrap(), 1, "records are not counted");
                assert!(!f.store.exists(&record("swept:1")).await.unwrap());
                assert!(f.store.exists(&record("kept:1")).await.unwrap());
                assert!(f.store.exists("kept:1").await.unwrap());
            }

            #[tokio::test]
            async fn delete_matching_crosses_scan_batches() {
                let f = store().await;
                let items: Vec<(String, Vec<u8>, Duration)> = (0..2500)
                    .map(|i| (format!("bulk:{i}"), b"v".to_vec(), MINUTE))
                    .collect();
                f.store.mset(&items).await.unwrap();
                f.store.set("other", b"v", MINUTE).await.unwrap();
                assert_eq!(f.store.delete_matching("bulk:*").await.unwrap(), 2500);
                assert!(f.store.exists("other").await.unwrap());
            }

            #[tokio::test]
            async fn hash_operations() {
                let f = store().await;
                assert!(f.store.hset("h", "a", b"1", MINUTE).await.unwrap());
                assert!(!f.store.hset("h", "a", b"2", MINUTE).await.unwrap());
                assert!(f.store.hset("h", "b", b"3", MINUTE).await.unwrap());
                assert_eq!(f.store.hget("h", "a").await.unwrap(), Some(b"2".to_vec()));
                assert_eq!(f.store.hget("h", "z").await.unwrap(), None);
                let mut all = f.store.hgetall("h").await.unwrap();
                all.sort();
                assert_eq!(all, vec![("a".into(), b"2".to_vec()), ("b".into(), b"3".to_vec())]);
                assert!(matches!(f.store.ttl("h").await.unwrap(), KeyTtl::ExpiresIn(_)));
                assert!(f.store.hdel("h", "a").await.unwrap());
                assert!(!f.store.hdel("h", "a").await.unwrap());
                assert!(f.store.hdel("h", "b").await.unwrap());
                assert!(!f.store.exists("h").await.unwrap());
                assert!(f.store.hgetall("h").await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn list_operations() {
                let f = store().await;
                assert_eq!(f.store.rpush("l", &bytes(&["b", "c"]), MINUTE).await.unwrap(), 2);
                assert_eq!(f.store.lpush("l", &bytes(&["a0", "a"]), MINUTE).await.unwrap(), 4);
                assert_eq!(f.store.lrange("l", 0, -1).await.unwrap(), bytes(&["a", "a0", "b", "c"]));
                assert_eq!(f.store.lrange("l", 1, 2).await.unwrap(), bytes(&["a0", "b"]));
                assert_eq!(f.store.lrange("l", -2, -1).await.unwrap(), bytes(&["b", "c"]));
                assert_eq!(f.store.lrange("l", 5, 10).await.unwrap(), Vec::<Vec<u8>>::new());
                assert_eq!(f.store.lrange("l", -100, 0).await.unwrap(), bytes(&["a"]));
                assert_eq!(f.store.lrange("absent", 0, -1).await.unwrap(), Vec::<Vec<u8>>::new());
                assert!(matches!(f.store.ttl("l").await.unwrap(), KeyTtl::ExpiresIn(_)));
            }

            #[tokio::test]
            async fn set_operations() {
                let f = store().await;
                assert_eq!(f.store.sadd("s", &bytes(&["a", "b", "a"]), MINUTE).await.unwrap(), 2);
                assert_eq!(f.store.sadd("s", &bytes(&["b", "c"]), MINUTE).await.unwrap(), 1);
                assert_eq!(sorted(f.store.smembers("s").await.unwrap()), bytes(&["a", "b", "c"]));
                assert_eq!(f.store.srem("s", &bytes(&["a", "z"])).await.unwrap(), 1);
                assert_eq!(f.store.srem("s", &bytes(&["b", "c"])).await.unwrap(), 2);
                assert!(!f.store.exists("s").await.unwrap());
                assert!(f.store.smembers("s").await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn collection_writes_refresh_the_ttl() {
                let f = store().await;
                f.store.sadd("s", &bytes(&["a"]), Duration::from_millis(150)).await.unwrap();
                f.store.sadd("s", &bytes(&["b"]), MINUTE).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(f.store.smembers("s").await.unwrap().len(), 2);
            }

            #[tokio::test]
            async fn type_mismatch_is_a_wrong_type_error() {
                let f = store().await;
                f.store.set("plain", b"v", MINUTE).await.unwrap();
                let err = f.store.hset("plain", "f", b"v", MINUTE).await.unwrap_err();
                assert!(matches!(err, Error::WrongType { ref key, .. } if key == "plain"), "{err:?}");
                f.store.hset("hash", "f", b"v", MINUTE).await.unwrap();
                let err = f.store.get("hash").await.unwrap_err();
                assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
                assert_eq!(f.store.get("plain").await.unwrap(), Some(b"v".to_vec()));
                match f.store.ttl("plain").await.unwrap() {
                    KeyTtl::ExpiresIn(left) => assert!(left > Duration::from_secs(50), "{left:?}"),
                    other => panic!("the failed write touched the ttl: {other:?}"),
                }
            }

            #[tokio::test]
            async fn keys_with_unusual_characters() {
                let f = store().await;
                let long = "k".repeat(10_000);
                for key in ["with space", "new\nline", "ключ", "", "a*b?[c]", long.as_str()] {
                    f.store.set(key, key.as_bytes(), MINUTE).await.unwrap();
                    assert_eq!(f.store.get(key).await.unwrap(), Some(key.as_bytes().to_vec()));
                }
            }

            #[tokio::test]
            async fn health_check_reports_healthy() {
                let f = store().await;
                let report = f.store.health_check().await;
                assert!(report.healthy, "{report:?}");
                assert_eq!(report.backend, f.store.backend());
                assert!(report.latency.is_some());
                assert!(report.used_memory_bytes.is_some());
            }
        }
    };
}

store_conformance!(redis, redis_fixture);
store_conformance!(memory, memory_fixture);
store_conformance!(cluster, cluster_fixture);
#[cfg(feature = "tls")]
store_conformance!(tls, tls_fixture);
