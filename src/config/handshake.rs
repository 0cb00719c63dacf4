//! Handshake admission (`docs/protocol.md` section 2, "Busy"): how many connections may be in
//! their handshake at once, how many may wait for a turn, and for how long. A restart or a
//! network blip brings every client back in the same seconds; run all at once, their
//! handshakes (session id, registration, catch-up replay) slow each other down until they all
//! time out. Bounded, the excess waits its turn in order, and what cannot get one in time is
//! told to come back later instead.

use std::time::Duration;

use super::Settings;
use super::env::at_least;

/// The handshake gate's bounds.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HandshakeLimits {
    /// Handshakes in progress at once (after the token check: the session id, the
    /// registration and the catch-up replay of what the client missed, up to 5 s of it).
    /// More wait for a turn, first come first served.
    #[arg(long, env = "HANDSHAKE_CONCURRENCY", default_value = "64", value_parser = at_least(1_usize))]
    pub concurrency: usize,
    /// Connections that may wait for a turn; one more is refused at once (503 `busy`, with a
    /// hint to come back after 1 to 3 s). 0: never wait.
    #[arg(long, env = "HANDSHAKE_QUEUE", default_value = "10000", value_parser = at_least(0_usize))]
    pub queue: usize,
    /// The longest a connection waits for a turn, in milliseconds, before it is refused
    /// (503 `busy`, with a hint to come back after 1 to 3 s).
    #[arg(long, env = "HANDSHAKE_WAIT_MS", default_value = "5000", value_parser = millis)]
    pub wait: Duration,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Settings::defaults().handshake
    }
}

fn millis(s: &str) -> Result<Duration, String> {
    at_least(0_u64)(s).map(Duration::from_millis)
}
