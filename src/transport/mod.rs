//! Transports translate frames to hub calls and hub events to frames, nothing more. Each
//! connection gets an [`Outbound`](crate::hub::Outbound) (its bounded queue), a reader that
//! feeds client events to [`commands::execute`](crate::commands::execute), and a writer that
//! drains the queue.
//!
//! - [`ws`]: plain WebSocket at `/ws`, JSON envelope.
//! - [`rate_limit`]: the per-connection token bucket shared by every transport.

pub mod rate_limit;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// The peer address when the server was started with connect info (it is, by
/// [`Gateway`](crate::Gateway)); `None` when an embedder mounted the router without it.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub Option<SocketAddr>);

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
