//! Transports translate frames to hub calls and hub events to frames, nothing more. Each
//! connection gets an [`Outbound`](crate::hub::Outbound) (its bounded queue) and a
//! [`session::Session`], the lifecycle both transports share; the transport adds only its
//! framing, its reader and its writer (which drains that queue).
//!
//! - [`session`]: admission, open and catch-up, one client event, close; delivery receipts.
//! - [`pipeline`]: a connection's acks in flight, sent in frame order as commits land.
//! - [`ws`]: plain WebSocket at `/ws`, JSON envelope.
//! - [`socketio`]: Socket.IO v4 at `/socket.io/` through socketioxide (its own folder: the
//!   connection's lifecycle, the ordered inbox, the writer, replies that wait for room).
//! - [`rate_limit`]: the per-connection token bucket the session applies.
//! - [`expiry`]: the per-connection token clock the session starts (`token-expiring`, then
//!   the close with `token_expired`).
//! - [`handshake`]: WebSocket handshake checks and the Origin guard in front of Socket.IO.
//! - [`linger`]: the lingering close under every connection, so the last words reach the client.

pub(crate) mod expiry;
pub(crate) mod handshake;
pub(crate) mod linger;
pub(crate) mod pipeline;
pub(crate) mod rate_limit;
pub(crate) mod session;
pub(crate) mod socketio;
pub(crate) mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// The peer address when the server was started with connect info (it is, by
/// [`Gateway`](crate::Gateway)); `None` when an embedder mounted the router without it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for RemoteAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}
