//! The seed's `CacheService`, written with the macros where the seed uses decorators.

use cachemere::{Cache, cache_result, invalidate_cache};

use super::db::{Assignment, Database, DbError, GradingResult, UserProfile};
use super::keys::{CacheKeys, expiry};

#[derive(Clone)]
pub(crate) struct CacheService {
    pub(crate) cache: Cache,
    pub(crate) db: Database,
}

impl CacheService {
    /// Unknown users are not cached: a sign-up would otherwise stay invisible for an hour.
    #[cache_result("user:profile:{user_id}", cache = self.cache, ttl = expiry::USER,
                   unless = |profile: &Option<UserProfile>| profile.is_none())]
    pub(crate) async fn get_user_profile(
        &self,
        user_id: &str,
    ) -> Result<Option<UserProfile>, DbError> {
        self.db.user(user_id).await
    }

    /// Writes a profile the caller already has (the seed's `cache_user_profile`).
    pub(crate) async fn cache_user_profile(&self, profile: &UserProfile) -> cachemere::Result<()> {
        let key = CacheKeys::user_profile(&profile.user_id);
        self.cache.set(&key, &Some(profile), expiry::USER).await
    }

    #[cache_result("user:classes:{user_id}", cache = self.cache, ttl = expiry::USER)]
    pub(crate) async fn get_user_classes(&self, user_id: &str) -> Result<Vec<u32>, DbError> {
        let profile = self.db.user(user_id).await?;
        Ok(profile.map(|profile| profile.class_ids).unwrap_or_default())
    }

    #[cache_result("class:students:{class_id}", cache = self.cache, ttl = expiry::CLASS)]
    pub(crate) async fn get_class_students(&self, class_id: u32) -> Result<Vec<String>, DbError> {
        self.db.class_students(class_id).await
    }

    #[cache_result("assignment:info:{assignment_id}", cache = self.cache, ttl = expiry::ASSIGNMENT)]
    pub(crate) async fn get_assignment_info(
        &self,
        assignment_id: u32,
    ) -> Result<Assignment, DbError> {
        self.db.assignment(assignment_id).await
    }

    #[cache_result("user:assignments:{user_id}", cache = self.cache, ttl = expiry::ASSIGNMENT,
                   key_args = ["user_id"])]
    pub(crate) async fn get_user_assignments(
        &self,
        user_id: &str,
    ) -> Result<Vec<Assignment>, DbError> {
        self.db.assignments_for(user_id).await
    }

    /// Invalidates the assignment lists of every member of the class once the insert worked.
    #[invalidate_cache("user:assignments:*", cache = self.cache)]
    pub(crate) async fn create_assignment(
        &self,
        class_id: u32,
        title: &str,
    ) -> Result<Assignment, DbError> {
        self.db.create_assignment(class_id, title).await
    }

    #[cache_result("grading:result:{task_id}", cache = self.cache, ttl = expiry::GRADING)]
    pub(crate) async fn get_grading_result(&self, task_id: u32) -> Result<GradingResult, DbError> {
        self.db.grade(task_id).await
    }

    #[cache_result("analytics:students", cache = self.cache, ttl = expiry::ANALYTICS)]
    pub(crate) async fn count_students(&self) -> Result<usize, DbError> {
        let mut students = self.db.class_students(1).await?;
        students.extend(self.db.class_students(2).await?);
        students.sort();
        students.dedup();
        Ok(students.len())
    }

    /// Everything cached about one user (the seed's `invalidate_user_cache`).
    #[invalidate_cache("user:profile:{user_id}", "user:classes:{user_id}", "user:assignments:{user_id}",
                       "ai:context:{user_id}", cache = self.cache, before = true)]
    pub(crate) async fn invalidate_user_cache(&self, user_id: &str) {}
}
