//! Encryption at rest (`CACHE_ENCRYPTION_KEY`) on a private `redis-server`: after the cache's
//! operations (values, the macros, hashes, lists, sets, multi-key writes, tags, the local
//! tier) no stored value holds plaintext; a value moved to another key, altered, written
//! unencrypted or sealed with an unknown key is a miss, deleted and counted; rotating keys
//! keeps old values readable and seals new ones with the new key; session data is sealed
//! too: a session whose data is altered under a key the manager has is unknown (and ended);
//! one sealed under a key it lacks, or read without a key, is an error and kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_testing::RedisServer;
use cachemere::encryption::EncryptionKeys;
use cachemere::{Cache, Config, Error, Json, RedisStore, Store, Ttl, cache_result};
use serde::{Deserialize, Serialize};

/// Every plaintext value written below contains this.
const SECRET: &str = "Grade-A-plus-for-Ada";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    note: String,
}

fn profile(id: u32) -> Profile {
    Profile {
        name: format!("student {id}"),
        note: SECRET.to_owned(),
    }
}

fn key(seed: u8) -> Option<EncryptionKeys> {
    EncryptionKeys::new([[seed; 32]])
}

#[cache_result("profile:{id}", cache = cache, tags = ["students"])]
async fn cached_profile(cache: &Cache, runs: &AtomicU64, id: u32) -> Profile {
    runs.fetch_add(1, Ordering::Relaxed);
    profile(id)
}

/// Every value Redis holds: strings, hash values, list items, set members (but not
/// cachemere's own records, `<key>.__cachemere:tags` and the tag indexes, which hold key
/// and tag names, as keys themselves are names).
async fn stored_values(store: &RedisStore) -> Vec<(String, Vec<u8>)> {
    let mut connection = store.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let mut values = Vec::new();
    for key in keys.into_iter().filter(|key| !key.contains("__cachemere:")) {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("TYPE");
        let found: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .expect("GET"),
            ],
            "hash" => redis::cmd("HVALS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("HVALS"),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut connection)
                .await
                .expect("LRANGE"),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("SMEMBERS"),
            // Tag indexes: their members are key names, not values.
            _ => Vec::new(),
        };
        values.extend(found.into_iter().map(|value| (key.clone(), value)));
    }
    values
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_plaintext_reaches_redis_and_everything_reads_back() {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let cache = Cache::builder(store.clone())
        .encryption(key(1))
        .local_cache(1 << 20, Duration::from_secs(60))
        .build();
    let started = Instant::now();
    while cache.local_cache_active() != Some(true) {
        assert!(started.elapsed() < Duration::from_secs(10), "local tier");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let runs = AtomicU64::new(0);
    for id in 0..3 {
        assert_eq!(cached_profile(&cache, &runs, id).await, profile(id));
        assert_eq!(cached_profile(&cache, &runs, id).await, profile(id));
    }
    assert_eq!(runs.load(Ordering::Relaxed), 3, "hits decrypt");
    cache.set("plain", &SECRET, Ttl::Long).await.expect("set");
    cache
        .set_multi(&[("m1", profile(1)), ("m2", profile(2))], Ttl::Long)
        .await
        .expect("set_multi");
    cache
        .hset("h", "f", &profile(4), Ttl::Long)
        .await
        .expect("hset");
    cache
        .rpush("l", &[profile(5), profile(6)], Ttl::Long)
        .await
        .expect("rpush");
    cache
        .sadd("s", &[SECRET, SECRET], Ttl::Long)
        .await
        .expect("sadd");
    // A big value is compressed before it is sealed.
    let big = SECRET.repeat(200);
    cache.set("big", &big, Ttl::Long).await.expect("set big");

    let values = stored_values(&store).await;
    assert!(values.len() >= 9, "{} values", values.len());
    for (key, value) in &values {
        assert!(!contains(value, SECRET), "{key} holds plaintext");
        assert!(!contains(value, "student"), "{key} holds plaintext");
    }

    assert_eq!(
        cache.get::<String>("plain").await.expect("get").as_deref(),
        Some(SECRET)
    );
    assert_eq!(cache.get::<String>("big").await.expect("get"), Some(big));
    let multi = cache
        .get_multi::<Profile, _>(&["m1", "m2"])
        .await
        .expect("get_multi");
    assert_eq!(multi, [Some(profile(1)), Some(profile(2))]);
    assert_eq!(
        cache.hget::<Profile>("h", "f").await.expect("hget"),
        Some(profile(4))
    );
    assert_eq!(
        cache.lrange::<Profile>("l", 0, -1).await.expect("lrange"),
        [profile(5), profile(6)]
    );
    // Equal members seal to equal bytes: one member, found again by SREM.
    assert_eq!(
        cache.smembers::<String>("s").await.expect("smembers"),
        [SECRET]
    );
    assert_eq!(cache.srem("s", &[SECRET]).await.expect("srem"), 1);
    cache.invalidate_tag("students").await.expect("tag");
    assert_eq!(cache.get::<Profile>("profile:1").await.expect("get"), None);
    assert_eq!(cache.stats().decode_failures, 0);
}

#[tokio::test]
async fn moved_altered_unencrypted_and_foreign_values_are_misses() {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let cache = Cache::builder(store.clone()).encryption(key(1)).build();
    cache.set("a", &SECRET, Ttl::Long).await.expect("set");
    let sealed = store.get("a").await.expect("get").expect("stored");

    // Copied under another key.
    store
        .set("b", &sealed, Duration::from_secs(60))
        .await
        .expect("copy");
    assert_eq!(
        cache
            .get::<String>("b")
            .await
            .expect("a miss, not an error"),
        None
    );
    assert_eq!(store.get("b").await.expect("get"), None, "deleted");
    // Altered.
    let mut altered = sealed.clone();
    altered[40] ^= 0x01;
    store
        .set("a", &altered, Duration::from_secs(60))
        .await
        .expect("alter");
    assert_eq!(cache.get::<String>("a").await.expect("a miss"), None);
    // Written by a cache without encryption.
    let plain = Cache::builder(store.clone()).build();
    plain.set("c", &SECRET, Ttl::Long).await.expect("plain set");
    assert_eq!(cache.get::<String>("c").await.expect("a miss"), None);
    // Sealed with a key this cache does not have.
    let other = Cache::builder(store.clone()).encryption(key(9)).build();
    other.set("d", &SECRET, Ttl::Long).await.expect("other key");
    assert_eq!(cache.get::<String>("d").await.expect("a miss"), None);
    assert_eq!(cache.stats().decode_failures, 4);
    // And the other way round: a cache without the key does not read sealed values.
    cache.set("e", &SECRET, Ttl::Long).await.expect("set");
    assert_eq!(plain.get::<String>("e").await.expect("a miss"), None);
}

#[tokio::test]
async fn rotating_keys_reads_old_values_and_seals_new_ones_with_the_new_key() {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let old = Cache::builder(store.clone()).encryption(key(1)).build();
    old.set("before", &"old", Ttl::Long).await.expect("set");

    let both = EncryptionKeys::new([[2u8; 32], [1u8; 32]]);
    let rotated = Cache::builder(store.clone()).encryption(both).build();
    assert_eq!(
        rotated
            .get::<String>("before")
            .await
            .expect("get")
            .as_deref(),
        Some("old")
    );
    rotated.set("after", &"new", Ttl::Long).await.expect("set");
    let only_new = Cache::builder(store.clone()).encryption(key(2)).build();
    assert_eq!(
        only_new
            .get::<String>("after")
            .await
            .expect("get")
            .as_deref(),
        Some("new")
    );
    assert_eq!(
        old.get::<String>("after").await.expect("a miss"),
        None,
        "sealed with the new key"
    );
}

#[tokio::test]
async fn sets_and_hashes_survive_a_key_rotation_and_hash_values_stay_in_their_field() {
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let old = Cache::builder(store.clone()).encryption(key(1)).build();
    assert_eq!(
        old.sadd("online", &["ada", "alan"], Ttl::Long)
            .await
            .expect("sadd"),
        2
    );
    old.hset("user:42", "name", &"Ada", Ttl::Long)
        .await
        .expect("hset");
    old.hset("user:42", "role", &"student", Ttl::Long)
        .await
        .expect("hset");

    let rotated = Cache::builder(store.clone())
        .encryption(EncryptionKeys::new([[2u8; 32], [1u8; 32]]))
        .build();
    assert_eq!(
        rotated
            .sadd("online", &["ada"], Ttl::Long)
            .await
            .expect("sadd"),
        0,
        "a member sealed under the old key is not new"
    );
    let mut members: Vec<String> = rotated.smembers("online").await.expect("smembers");
    members.sort();
    assert_eq!(members, ["ada", "alan"], "no duplicate");
    assert_eq!(
        rotated.srem("online", &["alan"]).await.expect("srem"),
        1,
        "a member sealed under the old key is removed"
    );
    assert_eq!(
        rotated
            .smembers::<String>("online")
            .await
            .expect("smembers"),
        ["ada"]
    );
    let mut connection = store.connection();
    let stored: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
        .arg("online")
        .query_async(&mut connection)
        .await
        .expect("SMEMBERS");
    assert_eq!(
        stored.len(),
        1,
        "the old form of the re-added member is gone"
    );

    assert_eq!(
        rotated
            .hget::<String>("user:42", "name")
            .await
            .expect("hget")
            .as_deref(),
        Some("Ada"),
        "a field sealed under the old key reads"
    );
    let role: Vec<u8> = redis::cmd("HGET")
        .arg("user:42")
        .arg("role")
        .query_async(&mut connection)
        .await
        .expect("HGET");
    let _: () = redis::cmd("HSET")
        .arg("user:42")
        .arg("name")
        .arg(role)
        .query_async(&mut connection)
        .await
        .expect("HSET");
    assert_eq!(
        rotated
            .hget::<String>("user:42", "name")
            .await
            .expect("a miss"),
        None,
        "sealed bytes moved from another field do not open"
    );
    assert_eq!(rotated.stats().decode_failures, 1);
    let all: Vec<(String, String)> = rotated.hgetall("user:42").await.expect("hgetall");
    assert_eq!(all, [("role".to_owned(), "student".to_owned())]);
}

/// `CACHE_ENCRYPTION_FORMAT=2` switched on in a rolling deploy: caches writing either
/// format on one Redis read each other's values, hash fields and set members, and a set
/// member written in both formats is one member, removed by either.
#[tokio::test]
async fn switching_the_format_loses_no_value_and_duplicates_no_member() {
    use cachemere::cache_core::encryption::{SealFormat, sealed_format};
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let cache = |format: SealFormat| {
        Cache::builder(store.clone())
            .encryption(key(1).map(|keys| keys.with_format(format)))
            .build()
    };
    let (v1, v2) = (cache(SealFormat::V1), cache(SealFormat::V2));
    let mut connection = store.connection();
    for (writer, reader, format, name) in [
        (&v1, &v2, SealFormat::V1, "one"),
        (&v2, &v1, SealFormat::V2, "two"),
    ] {
        writer.set(name, &SECRET, Ttl::Long).await.expect("set");
        let raw: Vec<u8> = redis::cmd("GET")
            .arg(name)
            .query_async(&mut connection)
            .await
            .expect("GET");
        assert_eq!(sealed_format(&raw), Some(format));
        assert_eq!(
            reader.get::<String>(name).await.expect("get").as_deref(),
            Some(SECRET)
        );
        writer
            .hset("user:42", name, &SECRET, Ttl::Long)
            .await
            .expect("hset");
        assert_eq!(
            reader
                .hget::<String>("user:42", name)
                .await
                .expect("hget")
                .as_deref(),
            Some(SECRET)
        );
    }
    assert_eq!(
        v1.sadd("online", &["ada", "alan"], Ttl::Long)
            .await
            .expect("sadd"),
        2
    );
    assert_eq!(
        v2.sadd("online", &["ada", "grace"], Ttl::Long)
            .await
            .expect("sadd"),
        1,
        "a member written in format 1 is not new"
    );
    for reader in [&v1, &v2] {
        let mut members: Vec<String> = reader.smembers("online").await.expect("smembers");
        members.sort();
        assert_eq!(members, ["ada", "alan", "grace"], "no duplicate");
    }
    assert_eq!(v1.srem("online", &["grace"]).await.expect("srem"), 1);
    assert_eq!(v2.srem("online", &["alan"]).await.expect("srem"), 1);
    assert_eq!(
        v1.smembers::<String>("online").await.expect("smembers"),
        ["ada"]
    );
    assert_eq!(v1.stats().decode_failures + v2.stats().decode_failures, 0);
}

#[tokio::test]
async fn json_with_encryption_is_refused_unless_asked_for() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let config =
        Config::from_lookup(|name| (name == "CACHE_ENCRYPTION_KEY").then(|| key.to_owned()))
            .expect("a key");
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let builder = || Cache::builder(store.clone()).config(&config).codec(Json);

    let refused = builder()
        .try_build()
        .expect_err("sealed bytes are not plain JSON");
    assert!(matches!(refused, Error::Config { .. }), "{refused}");
    assert!(refused.to_string().contains("encrypt_json"), "{refused}");

    let built = builder().build();
    let err = built
        .set("grade:1", &SECRET, Ttl::Short)
        .await
        .expect_err("no sealed JSON without opt-in");
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let computed = built
        .get_or_set("grade:2", Ttl::Short, || async { SECRET.to_owned() })
        .await
        .expect("returned, not cached");
    assert_eq!(computed, SECRET);
    assert_eq!(store.get("grade:1").await.expect("get"), None);
    assert_eq!(store.get("grade:2").await.expect("get"), None);

    let sealed = builder().encrypt_json(true).try_build().expect("opted in");
    sealed
        .set("grade:3", &SECRET, Ttl::Short)
        .await
        .expect("set");
    let stored = store.get("grade:3").await.expect("get").expect("stored");
    assert!(!contains(&stored, SECRET));
    assert!(serde_json::from_slice::<String>(&stored).is_err());
    assert_eq!(
        sealed
            .get::<String>("grade:3")
            .await
            .expect("get")
            .as_deref(),
        Some(SECRET)
    );
}

#[test]
fn the_key_comes_from_the_environment_and_is_never_shown() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let config =
        Config::from_lookup(|name| (name == "CACHE_ENCRYPTION_KEY").then(|| key.to_owned()))
            .expect("a key");
    assert_eq!(
        config.encryption_keys.as_ref().map(EncryptionKeys::len),
        Some(1)
    );
    assert!(!format!("{config:?}").contains("AAECAwQF"));
    let err = Config::from_lookup(|name| {
        (name == "CACHE_ENCRYPTION_KEY").then(|| "AAECAwQFBgcICQoLDA0ODw==".to_owned())
    })
    .expect_err("16 bytes");
    let shown = err.to_string();
    assert!(shown.contains("CACHE_ENCRYPTION_KEY"), "{shown}");
    assert!(!shown.contains("AAECAwQF"), "{shown}");
}

#[test]
fn the_format_comes_from_the_environment_and_needs_a_key() {
    use cachemere::cache_core::encryption::SealFormat;
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let with = |format: Option<&'static str>, key: Option<&'static str>| {
        Config::from_lookup(move |name| match name {
            "CACHE_ENCRYPTION_KEY" => key.map(str::to_owned),
            "CACHE_ENCRYPTION_FORMAT" => format.map(str::to_owned),
            _ => None,
        })
    };
    let format = |config: Config| config.encryption_keys.map(|keys| keys.format());
    assert_eq!(
        format(with(None, Some(key)).expect("v1")),
        Some(SealFormat::V1)
    );
    assert_eq!(
        format(with(Some("2"), Some(key)).expect("v2")),
        Some(SealFormat::V2)
    );
    assert_eq!(
        format(with(Some("1"), Some(key)).expect("v1")),
        Some(SealFormat::V1)
    );
    for bad in ["3", "two", "v2"] {
        let err = with(Some(bad), Some(key)).expect_err(bad).to_string();
        assert!(err.contains("CACHE_ENCRYPTION_FORMAT"), "{err}");
    }
    let err = with(Some("2"), None)
        .expect_err("a format without a key")
        .to_string();
    assert!(err.contains("CACHE_ENCRYPTION_KEY"), "{err}");
}

#[tokio::test]
async fn session_data_is_stored_encrypted_and_fails_closed_when_it_does_not_open() {
    use cachemere::cache_session::{SessionConfig, SessionData, SessionManager, SessionPatch};
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let config = SessionConfig::default().secret("encryption test");
    let sessions = SessionManager::new(store.clone(), config.clone().encryption(key(1)));
    let mut data = SessionData::new();
    data.insert("grade", SECRET).expect("insert");
    let token = sessions
        .create_session("ada", data, None)
        .await
        .expect("create");
    assert!(
        sessions
            .update_session(
                &token,
                SessionPatch::new().set("note", SECRET).expect("patch")
            )
            .await
            .expect("update")
    );
    let rotated = sessions
        .rotate_session(&token)
        .await
        .expect("rotate")
        .expect("a live session");
    let session = sessions
        .get_session(&rotated)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(
        session
            .data
            .get::<String>("grade")
            .expect("grade")
            .as_deref(),
        Some(SECRET)
    );
    assert_eq!(
        session.data.get::<String>("note").expect("note").as_deref(),
        Some(SECRET)
    );
    for (key, value) in stored_values(&store).await {
        assert!(!contains(&value, SECRET), "{key} holds plaintext");
    }

    // A sealed field moved into another user's session does not open there.
    let mut connection = store.connection();
    let other = sessions
        .create_session("bob", SessionData::new(), None)
        .await
        .expect("create");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:s:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let mut fields = Vec::new();
    for key in &keys {
        let grade: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(key)
            .arg("d:grade")
            .query_async(&mut connection)
            .await
            .expect("HGET");
        fields.push((key.clone(), grade));
    }
    let sealed = fields
        .iter()
        .find_map(|(_, grade)| grade.clone())
        .expect("ada's sealed grade");
    for (key, grade) in &fields {
        if grade.is_none() {
            let _: () = redis::cmd("HSET")
                .arg(key)
                .arg("d:grade")
                .arg(&sealed)
                .query_async(&mut connection)
                .await
                .expect("HSET");
        }
    }
    assert!(
        sessions
            .get_session(&other)
            .await
            .expect("not an error")
            .is_none(),
        "bob's session fails closed"
    );
    // Without encryption a manager never takes the sealed text for the value: a clear
    // error (a 503, as for a store failure), and the session is left alone.
    let unaware = SessionManager::new(store.clone(), config.clone());
    let err = unaware
        .get_session(&rotated)
        .await
        .expect_err("sealed data, no key");
    assert!(
        matches!(err, cachemere::cache_session::Error::Unreadable { .. }) && err.is_store_failure(),
        "{err}"
    );
    // With another key the data does not open either: the same error, and the session is
    // not ended (a rolling key rotation meets this on every instance not yet given the key).
    let stranger = SessionManager::new(store.clone(), config.clone().encryption(key(2)));
    let err = stranger
        .get_session(&rotated)
        .await
        .expect_err("sealed under a key it lacks");
    assert!(err.is_store_failure(), "{err}");
    assert!(
        sessions
            .get_session(&rotated)
            .await
            .expect("read")
            .is_some(),
        "kept for the instances that have its key"
    );
}

/// What someone who can write to Redis (but holds neither `SESSION_SECRET` nor the
/// encryption key) can and cannot do to encrypted sessions, as the README states it. The
/// "can" lines are limits of today's design, pinned so that a change to them is seen.
#[tokio::test]
async fn what_an_attacker_with_write_access_to_redis_can_and_cannot_do() {
    use cachemere::cache_core::encryption::SealFormat;
    use cachemere::cache_session::{
        SessionConfig, SessionData, SessionManager, SessionPatch, SessionToken,
    };
    let server = RedisServer::start_private().expect("start redis-server");
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    let manager = |format: SealFormat| {
        SessionManager::new(
            store.clone(),
            SessionConfig::default()
                .secret("attacker test")
                .encryption(key(1).map(|keys| keys.with_format(format))),
        )
    };
    let sessions = manager(SealFormat::V2);
    let legacy = manager(SealFormat::V1);
    let mut connection = store.connection();
    let with_role = |role: &str| SessionData::new().with("role", role).expect("data");
    let role_of = |token: &SessionToken| {
        let (sessions, token) = (sessions.clone(), token.clone());
        async move {
            sessions
                .get_session(&token)
                .await
                .expect("no error")
                .map(|session| session.data.get::<String>("role").expect("a string"))
        }
    };
    // a session's key, found by its stable id
    let key_of = |user: &'static str, token: SessionToken| {
        let (sessions, mut connection) = (sessions.clone(), store.connection());
        async move {
            let role = role_of(&token).await.expect("live");
            let listed = sessions.get_user_sessions(user).await.expect("list");
            let id = listed
                .into_iter()
                .find(|listed| listed.session.data.get::<String>("role").expect("role") == role)
                .expect("listed")
                .id;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("*:s:{id}"))
                .query_async(&mut connection)
                .await
                .expect("KEYS");
            keys.into_iter().next().expect("the session's key")
        }
    };
    let hget = |key: &str, field: &'static str| {
        let (key, mut connection) = (key.to_owned(), store.connection());
        async move {
            let value: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&key)
                .arg(field)
                .query_async(&mut connection)
                .await
                .expect("HGET");
            value.expect("the field")
        }
    };
    let hset = |key: &str, field: &'static str, value: Vec<u8>| {
        let (key, mut connection) = (key.to_owned(), store.connection());
        async move {
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(field)
                .arg(value)
                .query_async(&mut connection)
                .await
                .expect("HSET");
        }
    };
    let create = |sessions: &SessionManager, user: &'static str, role: &'static str| {
        let (sessions, data) = (sessions.clone(), with_role(role));
        async move {
            let token = sessions
                .create_session(user, data, None)
                .await
                .expect("create");
            let key = key_of(user, token.clone()).await;
            (token, key)
        }
    };

    let (admin, admin_key) = create(&sessions, "ada", "admin").await;
    let admin_role = hget(&admin_key, "d:role").await;
    let (student, student_key) = create(&sessions, "bob", "student").await;

    // cannot: move a sealed field into another user's session (it is bound to the user):
    // the session is treated as unknown and ended
    hset(&student_key, "d:role", admin_role.clone()).await;
    assert_eq!(role_of(&student).await, None);

    // cannot: hand a session to another user (the token carries its user's tag)
    let (teacher, teacher_key) = create(&sessions, "ada", "teacher").await;
    hset(&teacher_key, "user_id", b"bob".to_vec()).await;
    assert_eq!(role_of(&teacher).await, None);
    hset(&teacher_key, "user_id", b"ada".to_vec()).await;
    assert_eq!(role_of(&teacher).await, Some(Some("teacher".into())));

    // cannot: move a sealed field between two sessions of the same user (format 2 binds it
    // to its session's sid), nor strip or swap the sid, nor move in a field of a session
    // sealed in format 1: each time the session is ended
    let (legacy_guest, legacy_key) = create(&legacy, "ada", "guest").await;
    let legacy_role = hget(&legacy_key, "d:role").await;
    let admin_sid = hget(&admin_key, "sid").await;
    for (what, field, value, role) in [
        (
            "a field of another session",
            "d:role",
            admin_role.clone(),
            "victim 1",
        ),
        (
            "a field sealed in format 1",
            "d:role",
            legacy_role.clone(),
            "victim 2",
        ),
        (
            "another session's sid",
            "sid",
            admin_sid.clone(),
            "victim 3",
        ),
    ] {
        let (victim, victim_key) = create(&sessions, "ada", role).await;
        assert_eq!(role_of(&victim).await, Some(Some(role.into())));
        hset(&victim_key, field, value).await;
        assert_eq!(role_of(&victim).await, None, "{what}");
    }
    let (victim, victim_key) = create(&sessions, "ada", "victim 4").await;
    let _: () = redis::cmd("HDEL")
        .arg(&victim_key)
        .arg("sid")
        .query_async(&mut connection)
        .await
        .expect("HDEL");
    assert_eq!(role_of(&victim).await, None, "the sid stripped");

    // can: replace a session's data as a whole with another session's of the same user
    // (every field and the sid), and put back an older value of a field (a field is bound
    // to its session, not to its version)
    hset(&teacher_key, "sid", admin_sid).await;
    hset(&teacher_key, "d:role", admin_role.clone()).await;
    assert_eq!(role_of(&teacher).await, Some(Some("admin".into())));
    assert!(
        sessions
            .update_session(
                &admin,
                SessionPatch::new().set("role", "guest").expect("patch")
            )
            .await
            .expect("update")
    );
    hset(&admin_key, "d:role", admin_role).await;
    assert_eq!(role_of(&admin).await, Some(Some("admin".into())));

    // can, in sessions created in format 1 (before the switch to format 2): move a field
    // between two of them of the same user (format 1 binds a field to its user and name)
    let (other_legacy, other_legacy_key) = create(&legacy, "ada", "owner").await;
    hset(&other_legacy_key, "d:role", legacy_role).await;
    assert_eq!(role_of(&other_legacy).await, Some(Some("guest".into())));
    assert_eq!(role_of(&legacy_guest).await, Some(Some("guest".into())));

    // can: remove data fields (the session reads without them), and lengthen a session
    // (its times are not authenticated, only bounded by the key's expiry it also sets)
    let _: () = redis::cmd("HDEL")
        .arg(&teacher_key)
        .arg("d:role")
        .query_async(&mut connection)
        .await
        .expect("HDEL");
    assert_eq!(role_of(&teacher).await, Some(None));
    let far = 4_000_000_000_000u64;
    let _: () = redis::cmd("HSET")
        .arg(&teacher_key)
        .arg("expires_at")
        .arg(far)
        .arg("absolute_at")
        .arg(far)
        .query_async(&mut connection)
        .await
        .expect("HSET");
    let extended = sessions
        .get_session(&teacher)
        .await
        .expect("read")
        .expect("live");
    assert!(extended.expires_at > std::time::SystemTime::now() + Duration::from_secs(86_400 * 365));
}
