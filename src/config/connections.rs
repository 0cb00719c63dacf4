//! Connection hygiene: how long a TCP connection may take to say what it wants, and how many
//! may be open at once. These guard the process's file descriptors (and memory) against
//! sockets that never finish a request, whatever the client's intent.

use std::time::Duration;

use super::Settings;
use super::env::{at_least, seconds, zero_is_none};

/// Limits on TCP connections, applied by the accept loop before any HTTP is parsed.
/// (`::std::option::Option` is spelled out so that clap reads the field as one value with a
/// default, not as an optional argument.)
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectionLimits {
    /// Seconds a connection has to send a complete request head (request line and headers,
    /// the WebSocket upgrade included), counted from the moment it connects or, on a
    /// keep-alive connection, from the end of its previous response. A connection that sends
    /// nothing, trickles its headers or idles between requests is closed when it runs out.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECS", default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,
    /// Open connections (HTTP, WebSocket and Socket.IO together) before new ones are refused
    /// with 503; keep it below the process's file-descriptor limit (`ulimit -n`).
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000", value_parser = at_least(1_usize))]
    pub max_connections: usize,
    /// Open connections from one IP address before new ones from it are refused with 503
    /// (0: no per-address limit). Leave it off behind a reverse proxy: every client then
    /// shares the proxy's address.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value = "0", value_parser = zero_is_none)]
    pub max_connections_per_ip: ::std::option::Option<u64>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Settings::defaults().connections
    }
}
