//! The one way an event enters socketioxide's queue for a socket, and what came of it: its
//! queue refuses a packet when full instead of waiting, so every caller decides what waiting
//! means for it (the writer retries, replies queue, presence leaves room).

use socketioxide::adapter::LocalAdapter;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use tracing::Span;

use super::link::Link;
use crate::hub::Event;

/// What socketioxide did with one event offered to its queue.
pub(super) enum Emitted {
    /// Queued for the client (or dropped as unencodable, which is logged).
    Taken,
    /// Its queue is full.
    Full,
    /// The socket is disconnected.
    Gone,
}

/// Offers `event` to the socket's queue; socketioxide encodes the packet from its raw JSON.
pub(super) fn emit(socket: &Socket<LocalAdapter>, event: &Event) -> Emitted {
    match socket.emit(event.name(), event.data_raw()) {
        Ok(()) => Emitted::Taken,
        Err(SendError::Socket(SocketError::InternalChannelFull)) => Emitted::Full,
        Err(SendError::Socket(SocketError::Closed)) => Emitted::Gone,
        Err(e) => {
            // Our payloads are JSON already; nothing else can fail to encode.
            let span = socket.extensions.get::<Link>().map(|link| link.span);
            let _entered = span.as_ref().map(Span::enter);
            tracing::error!(error = %e, event = event.name(), "could not encode an event");
            Emitted::Taken
        }
    }
}
