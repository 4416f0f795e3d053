//! A session manager without `SESSION_SECRET` warns at start-up, once per process (its own test
//! binary, since the warning is process-wide).

use std::sync::{Arc, Mutex};

use cache_session::{MemoryStore, SessionConfig, SessionManager};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Keeps the messages of warnings.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        }
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.0.lock().expect("warnings").push(message);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_manager_without_a_secret_warns_once_and_one_with_a_secret_never() {
    let warnings = Warnings::default();
    tracing::subscriber::with_default(warnings.clone(), || {
        let _keyed = SessionManager::new(MemoryStore::new(), SessionConfig::default().secret("s"));
        assert!(warnings.0.lock().expect("warnings").is_empty());
        let config = SessionConfig::default();
        let _first = SessionManager::new(MemoryStore::new(), config.clone());
        let _second = SessionManager::new(MemoryStore::new(), config);
    });
    let seen = warnings.0.lock().expect("warnings").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("SESSION_SECRET"), "{seen:?}");
}
