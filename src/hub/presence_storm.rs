//! When presence gives way (`docs/protocol.md` section 9, "Presence storms"): the decision to
//! fold a flush's changes into one `presence-summary` instead of sending them one by one.
//!
//! Presence in `users` or `diff` mode costs changes x connections: every change goes to every
//! other connection. A restart's reconnect storm makes both large at once (5,000 users back
//! within a few seconds is 12.5 million `user-connected` frames), and those frames would take
//! the CPU the handshakes need. So the flusher measures what a flush would cost before
//! publishing it: when the changes since the last flush, times the connections reading them,
//! pass `PRESENCE_STORM_BUDGET` deliveries per second, the flush goes out as one small
//! `presence-summary { connected, disconnected, activeUsersCount, timestamp }` (encoded once,
//! the same for everyone) and the flusher waits [`STORM_INTERVAL`] before the next one. Once
//! the changes fit the budget again, they go out one by one as before. What a client loses is
//! the names of who came and went during the storm; what it keeps is the count, and the order
//! of what it does get.

use std::time::Duration;

use super::Event;
use crate::protocol::wire::{self, PresenceSummary};

/// How often a storm's changes go out, summed up. Long enough that a storm costs each
/// connection about one small frame a second; short enough that counts stay current.
pub const STORM_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest span a flush's cost is measured over: the `users` flusher wakes at most every
/// 50 ms, so a burst is never judged on a shorter time than it had.
const SHORTEST_SPAN: Duration = Duration::from_millis(50);

/// The budget, in presence deliveries per second (`PRESENCE_STORM_BUDGET`; 0: no limit).
#[derive(Debug, Clone, Copy)]
pub struct StormBudget {
    per_sec: u64,
}

impl StormBudget {
    pub fn new(per_sec: u64) -> Self {
        Self { per_sec }
    }

    /// Whether `changes`, gathered over `span` (the time since the previous flush), sent one
    /// by one to `readers` connections, would pass the budget. A span longer than
    /// [`STORM_INTERVAL`] counts as that long: a first change after a quiet hour is not
    /// allowed an hour's deliveries at once.
    pub fn exceeded(&self, changes: u64, readers: u64, span: Duration) -> bool {
        if self.per_sec == 0 || changes == 0 {
            return false;
        }
        let span = span.clamp(SHORTEST_SPAN, STORM_INTERVAL);
        let allowed = self.per_sec as f64 * span.as_secs_f64();
        changes.saturating_mul(readers) as f64 > allowed
    }
}

/// What one summary stands for: how many users came online and went offline in the changes it
/// replaces, and the count after the last of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub connected: u64,
    pub disconnected: u64,
    pub active_users_count: usize,
}

impl Tally {
    /// Counts one change, in order (the last one's count stands).
    pub fn add(&mut self, joined: bool, active_users_count: usize) {
        if joined {
            self.connected += 1;
        } else {
            self.disconnected += 1;
        }
        self.active_users_count = active_users_count;
    }

    /// The `presence-summary` event, encoded once for every connection.
    pub fn event(&self) -> std::sync::Arc<Event> {
        Event::new(
            "presence-summary",
            &PresenceSummary {
                connected: self.connected,
                disconnected: self.disconnected,
                active_users_count: self.active_users_count,
                timestamp: wire::now(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_passes_the_budget_by_changes_times_readers_over_its_span() {
        let budget = StormBudget::new(100_000);
        let tick = Duration::from_millis(50);
        assert!(
            !budget.exceeded(50, 100, tick),
            "5,000 in 50 ms is 100,000/s"
        );
        assert!(budget.exceeded(51, 100, tick));
        assert!(!budget.exceeded(0, 1_000_000, tick), "nothing to send");
    }

    #[test]
    fn a_span_counts_between_the_flush_interval_and_the_storm_interval() {
        let budget = StormBudget::new(100_000);
        assert!(
            budget.exceeded(2, 3_000, Duration::from_millis(1)),
            "a burst is judged on at least 50 ms"
        );
        assert!(
            budget.exceeded(1, 100_001, Duration::from_secs(3_600)),
            "a quiet hour allows no more than a second's worth"
        );
        assert!(!budget.exceeded(1, 100_000, Duration::from_secs(3_600)));
    }

    #[test]
    fn a_zero_budget_never_coalesces() {
        assert!(!StormBudget::new(0).exceeded(u64::MAX, u64::MAX, Duration::ZERO));
    }

    #[test]
    fn a_tally_counts_both_ways_and_keeps_the_last_count() {
        let mut tally = Tally::default();
        tally.add(true, 1);
        tally.add(true, 2);
        tally.add(false, 1);
        assert_eq!(
            tally,
            Tally {
                connected: 2,
                disconnected: 1,
                active_users_count: 1
            }
        );
        let data: serde_json::Value =
            serde_json::from_str(tally.event().data_json()).expect("valid JSON");
        assert_eq!(data["connected"], 2);
        assert_eq!(data["disconnected"], 1);
        assert_eq!(data["activeUsersCount"], 1);
        assert!(data["timestamp"].is_string());
    }
}
