//! A small in-process "database" with an artificial delay, so that caching is visible.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserProfile {
    pub(crate) user_id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) class_ids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Assignment {
    pub(crate) assignment_id: u32,
    pub(crate) class_id: u32,
    pub(crate) title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GradingResult {
    pub(crate) task_id: u32,
    pub(crate) score: u32,
}

/// What the database can fail with. Not `Clone`, not serializable: the macros need neither.
#[derive(Debug)]
pub(crate) enum DbError {
    NotFound(String),
}

#[derive(Default)]
struct Tables {
    users: HashMap<String, UserProfile>,
    assignments: Vec<Assignment>,
}

#[derive(Clone)]
pub(crate) struct Database {
    tables: Arc<Mutex<Tables>>,
    queries: Arc<AtomicU64>,
    delay: Duration,
}

impl Database {
    /// Two classes, a teacher and three students, two assignments.
    pub(crate) fn seeded(delay: Duration) -> Database {
        let mut tables = Tables::default();
        for (user_id, name, role, classes) in [
            ("t1", "Grace Hopper", "teacher", vec![1, 2]),
            ("s1", "Ada Lovelace", "student", vec![1]),
            ("s2", "Alan Turing", "student", vec![1, 2]),
            ("s3", "Katherine Johnson", "student", vec![2]),
        ] {
            tables.users.insert(
                user_id.to_owned(),
                UserProfile {
                    user_id: user_id.to_owned(),
                    name: name.to_owned(),
                    role: role.to_owned(),
                    class_ids: classes,
                },
            );
        }
        tables.assignments = vec![
            Assignment {
                assignment_id: 1,
                class_id: 1,
                title: "Bernoulli numbers".into(),
            },
            Assignment {
                assignment_id: 2,
                class_id: 2,
                title: "Halting problem".into(),
            },
        ];
        Database {
            tables: Arc::new(Mutex::new(tables)),
            queries: Arc::new(AtomicU64::new(0)),
            delay,
        }
    }

    /// Queries run so far.
    pub(crate) fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    async fn query(&self) -> MutexGuard<'_, Tables> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) async fn user(&self, user_id: &str) -> Result<Option<UserProfile>, DbError> {
        Ok(self.query().await.users.get(user_id).cloned())
    }

    pub(crate) async fn class_students(&self, class_id: u32) -> Result<Vec<String>, DbError> {
        let tables = self.query().await;
        let mut students: Vec<String> = tables
            .users
            .values()
            .filter(|user| user.role == "student" && user.class_ids.contains(&class_id))
            .map(|user| user.user_id.clone())
            .collect();
        students.sort();
        Ok(students)
    }

    pub(crate) async fn assignment(&self, assignment_id: u32) -> Result<Assignment, DbError> {
        let tables = self.query().await;
        tables
            .assignments
            .iter()
            .find(|assignment| assignment.assignment_id == assignment_id)
            .cloned()
            .ok_or_else(|| DbError::NotFound(format!("assignment {assignment_id}")))
    }

    pub(crate) async fn assignments_for(&self, user_id: &str) -> Result<Vec<Assignment>, DbError> {
        let tables = self.query().await;
        let user = tables
            .users
            .get(user_id)
            .ok_or_else(|| DbError::NotFound(format!("user {user_id}")))?;
        Ok(tables
            .assignments
            .iter()
            .filter(|assignment| user.class_ids.contains(&assignment.class_id))
            .cloned()
            .collect())
    }

    pub(crate) async fn create_assignment(
        &self,
        class_id: u32,
        title: &str,
    ) -> Result<Assignment, DbError> {
        let mut tables = self.query().await;
        let assignment = Assignment {
            assignment_id: u32::try_from(tables.assignments.len()).unwrap_or(u32::MAX) + 1,
            class_id,
            title: title.to_owned(),
        };
        tables.assignments.push(assignment.clone());
        Ok(assignment)
    }

    pub(crate) async fn grade(&self, task_id: u32) -> Result<GradingResult, DbError> {
        drop(self.query().await);
        Ok(GradingResult {
            task_id,
            score: 60 + task_id % 40,
        })
    }
}
