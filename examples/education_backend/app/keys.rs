//! The seed's cache keys and expiry strategy. The macros take the same templates as
//! literals; these functions build the keys for direct `Cache` calls.

use std::time::Duration;

/// Key templates (`CacheKeys` in the seed).
pub(crate) struct CacheKeys;

impl CacheKeys {
    pub(crate) const USER_PROFILE: &'static str = "user:profile:{user_id}";
    pub(crate) const USER_CLASSES: &'static str = "user:classes:{user_id}";
    pub(crate) const CLASS_STUDENTS: &'static str = "class:students:{class_id}";
    pub(crate) const ASSIGNMENT_INFO: &'static str = "assignment:info:{assignment_id}";
    pub(crate) const GRADING_RESULT: &'static str = "grading:result:{task_id}";
    pub(crate) const AI_CHAT_CONTEXT: &'static str = "ai:context:{user_id}";

    pub(crate) fn user_profile(user_id: &str) -> String {
        format!("user:profile:{user_id}")
    }
}

/// How long each kind of value is cached.
pub(crate) mod expiry {
    use super::Duration;

    pub(crate) const USER: Duration = Duration::from_secs(3600);
    pub(crate) const CLASS: Duration = Duration::from_secs(3600);
    pub(crate) const ASSIGNMENT: Duration = Duration::from_secs(3600);
    pub(crate) const GRADING: Duration = Duration::from_secs(24 * 3600);
    pub(crate) const ANALYTICS: Duration = Duration::from_secs(300);
}
