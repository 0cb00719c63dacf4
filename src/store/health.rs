//! Whether the writer's writes reach the disk, for `/readyz` and operators. The writer notes
//! each attempt's outcome here before it settles the writes of that attempt, so a sender
//! told "not stored" finds the store already reported failing.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::protocol::wire::timestamp;

/// How the writer's most recent attempt went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteHealth {
    /// Since when writes fail (a wire timestamp): set by the first failed attempt, kept while
    /// the following ones fail too, cleared by the next batch that commits entirely.
    pub failing_since: Option<String>,
    /// The error of the most recent failed write, while failing.
    pub last_error: Option<String>,
}

impl WriteHealth {
    /// Whether the most recent attempt committed everything it tried.
    pub fn is_ok(&self) -> bool {
        self.failing_since.is_none()
    }
}

/// The writer's side: a std Mutex, held only to copy or replace two strings, never across
/// an await.
#[derive(Debug, Default)]
pub(super) struct HealthCell(Mutex<WriteHealth>);

impl HealthCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteHealth> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state.
    pub(super) fn get(&self) -> WriteHealth {
        self.lock().clone()
    }

    /// An attempt committed everything it tried.
    pub(super) fn committed(&self) {
        let mut health = self.lock();
        if let Some(since) = health.failing_since.take() {
            tracing::info!(failing_since = %since, "store writes succeed again");
        }
        health.last_error = None;
    }

    /// A write could not be committed with `error`.
    pub(super) fn failed(&self, error: &sqlx::Error) {
        let mut health = self.lock();
        if health.failing_since.is_none() {
            health.failing_since = Some(timestamp(SystemTime::now()));
        }
        health.last_error = Some(error.to_string());
    }
}
