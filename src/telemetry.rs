//! Logging: a tracing subscriber writing to stderr, readable by default, one JSON object per
//! line with `LOG_FORMAT=json`. The filter comes from `RUST_LOG` (default `info`).
//!
//! Every line a connection's tasks write is inside its `session` span (`session_id`,
//! `user_id`, `transport`, `remote_addr`; see `transport/session.rs`). A JSON line carries
//! that span (`span`) and the spans around it (`spans`), so it can be traced to its
//! `sessions` row.
//!
//! [`error_chain`] writes an error with its causes, for lines about calls to other services.
//! [`RefusalLog`] keeps a flood of refusals (connections, busy handshakes) to one warning per
//! [`REPORT_EVERY`], with the count.

use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A second call (tests) keeps the first one.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// An error and its causes, `: `-separated: an HTTP client's own message is often "error
/// sending request", and why (refused, reset, DNS) is below it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The shortest time between two warnings of one [`RefusalLog`].
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Rate-limits a warning about refusals: the first refusal is reported at once, the ones after
/// it are counted and reported with the next line, at most one per [`REPORT_EVERY`].
#[derive(Default)]
pub(crate) struct RefusalLog {
    /// Held for a comparison and an add, never across an `.await`.
    state: Mutex<ReportState>,
}

#[derive(Default)]
struct ReportState {
    last_report: Option<Instant>,
    held_back: u64,
}

impl RefusalLog {
    /// Counts one refusal at `now`; when a line is due, returns how many refusals it reports
    /// (this one and those held back since the last line).
    pub(crate) fn record(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.held_back += 1;
        let due = state
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        if !due {
            return None;
        }
        state.last_report = Some(now);
        Some(std::mem::take(&mut state.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_gives_one_line_per_period_with_the_count() {
        let log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.record(start), Some(1), "the first is reported at once");
        for i in 1..1000 {
            assert_eq!(log.record(start + Duration::from_millis(i)), None);
        }
        assert_eq!(log.record(start + REPORT_EVERY), Some(1000));
        assert_eq!(log.record(start + REPORT_EVERY), None);
    }
}
