//! Transports translate frames to hub calls and hub events to frames, nothing more. Each
//! connection gets an [`Outbound`](crate::hub::Outbound) (its bounded queue), a reader that
//! feeds client events to [`commands::execute`](crate::commands::execute), and a writer that
//! drains the queue.
//!
//! - [`ws`]: plain WebSocket at `/ws`, JSON envelope.
//! - [`socketio`]: Socket.IO v4 at `/socket.io/` through socketioxide.
//! - [`rate_limit`]: the per-connection token bucket shared by every transport.

pub mod rate_limit;
pub mod socketio;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::protocol::wire;
use crate::store::{Store, WriteOp};

/// Records deliveries of stored messages once a connection's transport took them.
pub(crate) struct Receipts {
    store: Store,
    user_id: String,
}

impl Receipts {
    pub(crate) fn new(store: Store, user_id: &str) -> Self {
        Self {
            store,
            user_id: user_id.to_owned(),
        }
    }

    /// Records one delivery.
    pub(crate) fn record_one(&self, id: u64) {
        self.record(&mut vec![id]);
    }

    /// Sends the delivery marks collected in `ids` (and empties it).
    pub(crate) fn record(&self, ids: &mut Vec<u64>) {
        if !ids.is_empty() {
            self.store.write(WriteOp::MarkDelivered {
                user_id: self.user_id.clone(),
                ids: std::mem::take(ids),
                at: wire::now(),
            });
        }
    }
}

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
