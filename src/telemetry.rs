//! Logging: a tracing subscriber writing to stderr, readable by default, one JSON object per
//! line with `LOG_FORMAT=json`. The filter comes from `RUST_LOG` (default `info`).
//!
//! Every line a connection's tasks write is inside its `session` span (`session_id`,
//! `user_id`, `transport`, `remote_addr`; see `transport/session.rs`). A JSON line carries
//! that span (`span`) and the spans around it (`spans`), so it can be traced to its
//! `sessions` row.
//!
//! [`error_chain`] writes an error with its causes, for lines about calls to other services.

use std::io::IsTerminal;

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
