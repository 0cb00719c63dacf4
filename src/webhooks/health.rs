//! What each endpoint's sender last did, kept in memory for the operators
//! (`GET /websocket/webhooks`, the dashboard): when its last request went out, how that went,
//! how many requests failed in a row, and when it tries again. The outbox says what waits;
//! this says why it waits. Nothing durable: after a restart an endpoint has no history until
//! its sender makes a request, and each node knows only what its own senders did (with
//! PostgreSQL, the node holding an endpoint's lease is the one sending to it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Every endpoint's [`EndpointHealth`]; a cheap clone over one shared map.
#[derive(Debug, Clone, Default)]
pub struct WebhookHealth {
    // A std Mutex: held only to copy or change a few fields, never across an `.await`.
    endpoints: Arc<Mutex<HashMap<String, EndpointHealth>>>,
}

/// What one endpoint's sender last did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    /// When its last request went out (`None`: none since this process started).
    pub last_attempt_at: Option<SystemTime>,
    /// Why the last request failed; `None` when it succeeded, or none was made.
    pub last_error: Option<String>,
    /// Requests that failed in a row since the last one that succeeded.
    pub consecutive_failures: u32,
    /// When the sender tries again after a failed request; `None` when it is not waiting
    /// out a backoff.
    pub next_attempt_at: Option<SystemTime>,
}

impl WebhookHealth {
    /// `endpoint`'s health now (the default when its sender has done nothing yet).
    pub fn of(&self, endpoint: &str) -> EndpointHealth {
        self.lock(|all| all.get(endpoint).cloned().unwrap_or_default())
    }

    /// A request to `endpoint` went out at `at` and ended with `outcome`.
    pub(super) fn attempted(&self, endpoint: &str, at: SystemTime, outcome: Result<(), &str>) {
        self.lock(|all| {
            let health = all.entry(endpoint.to_owned()).or_default();
            health.last_attempt_at = Some(at);
            health.next_attempt_at = None;
            match outcome {
                Ok(()) => {
                    health.last_error = None;
                    health.consecutive_failures = 0;
                }
                Err(error) => {
                    health.last_error = Some(error.to_owned());
                    health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                }
            }
        });
    }

    /// `endpoint`'s sender waits out a backoff until `at`.
    pub(super) fn retrying_at(&self, endpoint: &str, at: SystemTime) {
        self.lock(|all| all.entry(endpoint.to_owned()).or_default().next_attempt_at = Some(at));
    }

    fn lock<T>(&self, f: impl FnOnce(&mut HashMap<String, EndpointHealth>) -> T) -> T {
        // A panic while holding it left plain fields behind, each still meaningful.
        f(&mut self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn failures_count_up_until_a_success_clears_them_and_the_error() {
        let health = WebhookHealth::default();
        assert_eq!(health.of("a"), EndpointHealth::default());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        health.attempted("a", t0, Err("HTTP 500"));
        health.retrying_at("a", t0 + Duration::from_secs(1));
        health.attempted("a", t0 + Duration::from_secs(1), Err("timed out"));
        let failing = health.of("a");
        assert_eq!(failing.consecutive_failures, 2);
        assert_eq!(failing.last_error.as_deref(), Some("timed out"));
        assert_eq!(
            failing.next_attempt_at, None,
            "the attempt it waited for was made"
        );
        assert_eq!(health.of("b"), EndpointHealth::default(), "per endpoint");

        health.attempted("a", t0 + Duration::from_secs(2), Ok(()));
        let ok = health.of("a");
        assert_eq!(ok.consecutive_failures, 0);
        assert_eq!(ok.last_error, None);
        assert_eq!(ok.last_attempt_at, Some(t0 + Duration::from_secs(2)));
    }
}
