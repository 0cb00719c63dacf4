//! Presence settings (`docs/protocol.md` section 9): which presence events connections get, and how
//! often a `presence-diff` goes out. Large deployments trade the default's one event per user
//! change for one merged event per window, or none at all.

use std::time::Duration;

use super::Settings;
use super::env::{at_least, choice};

/// How `user-connected` / `user-disconnected` reach the other connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresenceMode {
    /// One `user-connected` / `user-disconnected` per change (the default).
    Users,
    /// At most one `presence-diff { joins, leaves, activeUsersCount, timestamp }` per window.
    Diff,
    /// No presence events; `get-active-users` still answers.
    Off,
}

/// Presence fan-out.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PresenceSettings {
    /// `users`: `user-connected` / `user-disconnected` to every other connection; `diff`: at
    /// most one `presence-diff` per PRESENCE_DIFF_INTERVAL_MS instead; `off`: none (clients ask
    /// with `get-active-users`). Presence never gets a connection closed: a connection that
    /// falls behind gets one `active-users` snapshot in place of what it missed.
    #[arg(long, env = "PRESENCE_EVENTS", default_value = "users", value_parser = choice::<PresenceMode>)]
    pub mode: PresenceMode,
    /// The `presence-diff` window, in milliseconds: every change within one window is merged
    /// into one event (a user who joined and left inside it appears in neither list).
    #[arg(long, env = "PRESENCE_DIFF_INTERVAL_MS", default_value = "200", value_parser = millis)]
    pub diff_interval: Duration,
    /// Presence deliveries per second (changes x connections) before presence gives way: a
    /// flush that would cost more goes out as one `presence-summary` with counts instead of
    /// names, at most once a second, until the changes fit again (a reconnect storm then
    /// leaves the CPU to the handshakes). 0: never.
    #[arg(long, env = "PRESENCE_STORM_BUDGET", default_value = "200000", value_parser = clap::value_parser!(u64))]
    pub storm_budget: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Settings::defaults().presence
    }
}

fn millis(s: &str) -> Result<Duration, String> {
    at_least(10_u64)(s).map(Duration::from_millis)
}
