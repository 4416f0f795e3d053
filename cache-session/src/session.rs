//! The session record.

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A user's session, serialized as the seed's JSON structure:
///
/// ```json
/// {"user_id": "42", "created_at": "2026-01-01T00:00:00.000Z", "last_accessed": "…",
///  "expires_at": "…", "data": {"role": "teacher", "permissions": ["read", "write"]}}
/// ```
///
/// It holds no token, so printing it reveals none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The user the session belongs to.
    pub user_id: String,
    /// When it was created.
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    /// When it was last read (updated at most once per
    /// [`touch_after`](crate::SessionConfig::touch_after)).
    #[serde(with = "rfc3339")]
    pub last_accessed: SystemTime,
    /// When it expires unless used or extended (never after its absolute limit).
    #[serde(with = "rfc3339")]
    pub expires_at: SystemTime,
    /// Application data.
    pub data: SessionData,
}

/// A session's application data: a JSON object with typed accessors.
///
/// ```
/// use cache_session::SessionData;
///
/// let data = SessionData::new()
///     .with("role", &"teacher")?
///     .with("permissions", &["read", "write"])?
///     .with("department", &"Mathematics")?;
/// assert_eq!(data.role(), Some("teacher"));
/// assert!(data.has_permission("write"));
/// assert_eq!(data.get::<String>("department")?.as_deref(), Some("Mathematics"));
/// assert_eq!(data.get::<u32>("missing")?, None);
/// # Ok::<(), cache_session::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionData(Map<String, Value>);

impl SessionData {
    /// No fields.
    pub fn new() -> SessionData {
        SessionData::default()
    }

    /// Adds a field.
    pub fn with<T: Serialize + ?Sized>(mut self, field: &str, value: &T) -> Result<SessionData> {
        self.insert(field, value)?;
        Ok(self)
    }

    /// Sets a field.
    pub fn insert<T: Serialize + ?Sized>(&mut self, field: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|source| Error::Encode {
            field: field.to_owned(),
            source,
        })?;
        self.0.insert(field.to_owned(), value);
        Ok(())
    }

    /// A field decoded as `T`; `None` when absent.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        self.0
            .get(field)
            .map(|value| {
                T::deserialize(value).map_err(|source| Error::Decode {
                    field: field.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// A field as raw JSON.
    pub fn raw(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// The `role` field, when it is a string.
    pub fn role(&self) -> Option<&str> {
        self.0.get("role").and_then(Value::as_str)
    }

    /// The strings of the `permissions` array.
    pub fn permissions(&self) -> Vec<&str> {
        self.0
            .get("permissions")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether `permissions` holds `permission`.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions().contains(&permission)
    }

    /// The fields.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(field, value)| (field.as_str(), value))
    }

    pub(crate) fn from_map(map: Map<String, Value>) -> SessionData {
        SessionData(map)
    }
}

/// A change to some fields of a session's data: fields set and fields removed. Applied
/// atomically; fields it does not name are left as they are, so concurrent patches of
/// different fields all land.
///
/// ```
/// use cache_session::SessionPatch;
///
/// let patch = SessionPatch::new().set("last_login", &"2026-11-28")?.remove("draft");
/// # let _ = patch;
/// # Ok::<(), cache_session::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPatch {
    pub(crate) changes: Vec<(String, Option<Vec<u8>>)>,
}

impl SessionPatch {
    /// No changes.
    pub fn new() -> SessionPatch {
        SessionPatch::default()
    }

    /// Sets `field` to `value`.
    pub fn set<T: Serialize + ?Sized>(mut self, field: &str, value: &T) -> Result<SessionPatch> {
        let json = serde_json::to_vec(value).map_err(|source| Error::Encode {
            field: field.to_owned(),
            source,
        })?;
        self.changes.push((field.to_owned(), Some(json)));
        Ok(self)
    }

    /// Removes `field`.
    pub fn remove(mut self, field: &str) -> SessionPatch {
        self.changes.push((field.to_owned(), None));
        self
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl TryFrom<&SessionData> for SessionPatch {
    type Error = Error;
    fn try_from(data: &SessionData) -> Result<SessionPatch> {
        data.fields()
            .try_fold(SessionPatch::new(), |patch, (field, value)| {
                patch.set(field, value)
            })
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn serializes_to_the_seed_structure() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let session = Session {
            user_id: "uuid".into(),
            created_at: at(1_704_067_200),
            last_accessed: at(1_704_110_400),
            expires_at: at(1_704_153_600),
            data: SessionData::new()
                .with("role", "student")
                .and_then(|d| d.with("permissions", &["read", "write"]))
                .unwrap(),
        };
        let json = serde_json::to_value(&session).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "user_id": "uuid",
                "created_at": "2024-01-01T00:00:00.000Z",
                "last_accessed": "2024-01-01T12:00:00.000Z",
                "expires_at": "2024-01-02T00:00:00.000Z",
                "data": {"role": "student", "permissions": ["read", "write"]}
            })
        );
        let back: Session = serde_json::from_value(json).unwrap();
        assert_eq!(back, session);
        let naive: Session = serde_json::from_str(
            r#"{"user_id":"u","created_at":"2024-01-01T00:00:00","last_accessed":"2024-01-01T12:00:00",
               "expires_at":"2024-01-02T00:00:00","data":{}}"#,
        )
        .unwrap();
        assert_eq!(
            naive.created_at,
            at(1_704_067_200),
            "the seed's naive timestamps read as UTC"
        );
    }

    #[test]
    fn typed_accessors_report_mismatches() {
        let data = SessionData::new().with("age", &36).unwrap();
        assert_eq!(data.get::<u32>("age").unwrap(), Some(36));
        assert!(matches!(
            data.get::<String>("age"),
            Err(Error::Decode { .. })
        ));
        assert!(data.permissions().is_empty());
        assert_eq!(data.role(), None);
    }
}
