//! The spans of a cached call, captured by a `tracing` layer: `cache.get_or_set` holding the
//! store `GET`, the factory and the store `SET`; keys only at trace level; and no session token
//! or secret in any span or event field.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_testing::RedisServer;
use cachemere::cache_session::{SessionConfig, SessionData, SessionManager};
use cachemere::{Cache, MemoryStore, RedisStore, Store, cache_result};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as seen: its name, its parent's name and its fields (as recorded, in order).
#[derive(Debug, Clone)]
struct Seen {
    id: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default, Clone)]
struct Capture {
    spans: Arc<Mutex<Vec<Seen>>>,
    /// Every field value of every event.
    events: Arc<Mutex<Vec<String>>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.id().into_u64());
        self.spans.lock().expect("spans").push(Seen {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().expect("spans");
        if let Some(seen) = spans.iter_mut().rev().find(|seen| seen.id == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        self.events
            .lock()
            .expect("events")
            .extend(fields.into_iter().map(|(_, value)| value));
    }
}

impl Capture {
    fn spans(&self) -> Vec<Seen> {
        self.spans.lock().expect("spans").clone()
    }

    fn children(&self, parent: &Seen) -> Vec<Seen> {
        self.spans()
            .into_iter()
            .filter(|seen| seen.parent == Some(parent.id))
            .collect()
    }

    fn everything(&self) -> Vec<String> {
        let mut all = self.events.lock().expect("events").clone();
        for seen in self.spans() {
            all.extend(seen.fields.into_iter().map(|(_, value)| value));
        }
        all
    }
}

#[cache_result("spans:{id}", cache = cache)]
async fn answer(cache: &Cache, id: u32) -> u32 {
    id * 2
}

async fn cache(server: &RedisServer) -> (Cache, RedisStore) {
    let store = RedisStore::connect(&server.config())
        .await
        .expect("connect");
    (Cache::builder(store.clone()).name("spans").build(), store)
}

fn operation(seen: &Seen) -> (&'static str, Option<&str>) {
    (seen.name, seen.field("db.operation.name"))
}

/// One test: `tracing` caches which callsites are enabled across the subscribers of a process,
/// so subscribers of different levels on parallel test threads would see each other's choice.
#[tokio::test]
async fn spans_of_calls_invalidations_and_sessions() {
    a_cached_call_is_one_span_holding_the_store_and_the_factory().await;
    keys_appear_at_trace_level().await;
    no_token_or_secret_reaches_a_field().await;
}

async fn a_cached_call_is_one_span_holding_the_store_and_the_factory() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (cache, store) = cache(&server).await;
    let capture = Capture::default();
    let subscriber =
        tracing_subscriber::registry().with(capture.clone().with_filter(LevelFilter::DEBUG));
    let _default = tracing::subscriber::set_default(subscriber);

    assert_eq!(answer(&cache, 21).await, 42);
    let spans = capture.spans();
    let calls: Vec<&Seen> = spans
        .iter()
        .filter(|seen| seen.name == "cache.get_or_set")
        .collect();
    assert_eq!(calls.len(), 1, "{spans:#?}");
    let call = calls[0];
    assert_eq!(call.parent, None);
    assert_eq!(call.field("cache.name"), Some("spans"));
    assert_eq!(call.field("outcome"), Some("miss"));
    assert_eq!(
        call.field("key"),
        None,
        "keys are recorded at trace level only"
    );
    let children: Vec<_> = capture
        .children(call)
        .iter()
        .map(|seen| {
            let (name, operation) = operation(seen);
            (name, operation.map(str::to_owned))
        })
        .collect();
    assert_eq!(
        children,
        [
            ("cache.store", Some("GET".to_owned())),
            ("cache.factory", None),
            ("cache.store", Some("SET".to_owned())),
        ],
        "{spans:#?}"
    );
    for store in capture.children(call) {
        if store.name == "cache.store" {
            assert_eq!(store.field("db.system.name"), Some("redis"));
            assert_eq!(store.field("error.type"), None);
            // named for OpenTelemetry `{db.operation.name} {db.namespace}`
            assert_eq!(store.field("db.namespace"), Some("0"));
            assert_eq!(store.field("server.address"), Some("127.0.0.1"));
            let port = server.port().expect("a TCP port").to_string();
            assert_eq!(store.field("server.port"), Some(port.as_str()));
            let name = store.field("db.operation.name").expect("an operation");
            assert_eq!(store.field("otel.name"), Some(format!("{name} 0").as_str()));
        }
    }

    // a hit: the span and its one read
    assert_eq!(answer(&cache, 21).await, 42);
    let spans = capture.spans();
    let hit = spans
        .iter()
        .rfind(|seen| seen.name == "cache.get_or_set")
        .expect("the second call's span");
    assert_eq!(hit.field("outcome"), Some("hit"));
    let reads: Vec<_> = capture
        .children(hit)
        .iter()
        .map(|seen| seen.field("db.operation.name").map(str::to_owned))
        .collect();
    assert_eq!(reads, [Some("GET".to_owned())]);

    // a hit answered in process (before any future is built) is a span of its own too
    let in_process = Cache::builder(MemoryStore::new())
        .name("spans-in-process")
        .build();
    assert_eq!(answer(&in_process, 4).await, 8);
    assert_eq!(answer(&in_process, 4).await, 8);
    let spans = capture.spans();
    let outcomes: Vec<_> = spans
        .iter()
        .filter(|seen| {
            seen.name == "cache.get_or_set" && seen.field("cache.name") == Some("spans-in-process")
        })
        .map(|seen| seen.field("outcome"))
        .collect();
    assert_eq!(outcomes, [Some("miss"), Some("hit")]);

    // an invalidation
    cache.delete("spans:21").await.expect("delete");
    let spans = capture.spans();
    let invalidation = spans
        .iter()
        .rfind(|seen| seen.name == "cache.invalidate")
        .expect("an invalidation span");
    assert_eq!(invalidation.field("kind"), Some("key"));
    // a warning about a key (an undecodable value, discarded) names no key below trace
    store
        .set("spans:corrupt", b"not a frame", Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(
        cache.get::<u32>("spans:corrupt").await.expect("a miss"),
        None
    );
    assert!(
        capture
            .everything()
            .iter()
            .any(|value| value.contains("does not decode")),
        "the warning was logged"
    );
    // the invalidation's store spans name the commands sent: the fence script (a script is
    // `EVALSHA`, its purpose in `db.query.summary`) and the tag record's `UNLINK`; spans of
    // the client kind
    let mut writes: Vec<(Option<String>, Option<String>, Option<String>)> = capture
        .children(invalidation)
        .iter()
        .map(|seen| {
            let field = |name| seen.field(name).map(str::to_owned);
            (
                field("db.operation.name"),
                field("db.query.summary"),
                field("otel.kind"),
            )
        })
        .collect();
    writes.sort();
    let client = Some("client".to_owned());
    assert_eq!(
        writes,
        [
            (Some("EVALSHA".into()), Some("fence".into()), client.clone()),
            (Some("UNLINK".into()), None, client),
        ]
    );
    assert!(
        !capture
            .everything()
            .iter()
            .any(|value| value.contains("spans:21") || value.contains("spans:corrupt")),
        "{:?}",
        capture.everything()
    );
}

async fn keys_appear_at_trace_level() {
    let server = RedisServer::start_private().expect("start redis-server");
    let (cache, store) = cache(&server).await;
    let capture = Capture::default();
    let subscriber =
        tracing_subscriber::registry().with(capture.clone().with_filter(LevelFilter::TRACE));
    let _default = tracing::subscriber::set_default(subscriber);
    answer(&cache, 5).await;
    let spans = capture.spans();
    let call = spans
        .iter()
        .find(|seen| seen.name == "cache.get_or_set")
        .expect("span");
    assert_eq!(call.field("key"), Some("spans:5"));
    // at trace level, a warning names its key
    store
        .set(
            "spans:corrupt-traced",
            b"not a frame",
            Duration::from_secs(60),
        )
        .await
        .expect("set");
    assert_eq!(
        cache
            .get::<u32>("spans:corrupt-traced")
            .await
            .expect("a miss"),
        None
    );
    assert!(
        capture
            .everything()
            .iter()
            .any(|value| value == "spans:corrupt-traced"),
        "the key field at trace level"
    );
}

async fn no_token_or_secret_reaches_a_field() {
    const SECRET: &str = "do-not-log-this-secret";
    let server = RedisServer::start_private().expect("start redis-server");
    let (_, store) = cache(&server).await;
    let capture = Capture::default();
    let subscriber =
        tracing_subscriber::registry().with(capture.clone().with_filter(LevelFilter::TRACE));
    let _default = tracing::subscriber::set_default(subscriber);
    let sessions = SessionManager::new(
        store,
        SessionConfig::default()
            .secret(SECRET)
            .touch_after(Duration::ZERO),
    );
    let token = sessions
        .create_session("42", SessionData::new(), None)
        .await
        .expect("create");
    let secret_token = token.expose().to_owned();
    sessions.get_session(&secret_token).await.expect("read");
    let rotated = sessions
        .rotate_session(&secret_token)
        .await
        .expect("rotate")
        .expect("live");
    sessions.get_session(rotated.expose()).await.expect("read");
    let _ = sessions.get_session("cms1_forged").await;
    sessions
        .delete_session(rotated.expose())
        .await
        .expect("logout");
    server.pause().expect("freeze");
    let _ = sessions.get_session(rotated.expose()).await;
    server.resume().expect("resume");
    let outcomes: Vec<_> = capture
        .spans()
        .iter()
        .filter(|seen| seen.name == "session.validate")
        .map(|seen| seen.field("outcome").map(str::to_owned))
        .collect();
    let expected = ["ok", "ok", "invalid", "store_error"].map(|outcome| Some(outcome.to_owned()));
    assert_eq!(outcomes, expected);
    let everything = capture.everything();
    for value in everything {
        for hidden in [SECRET, secret_token.as_str(), rotated.expose()] {
            assert!(!value.contains(hidden), "{value:?} shows a secret");
        }
    }
}
