//! The wire, and nothing else: no I/O, no locks, nothing of the rest of the crate. The `/ws`
//! envelope ([`envelope`]), client events and their validated payloads ([`events`],
//! [`payloads`]), the objects the server sends ([`wire`]) and the error that names what was
//! wrong with a frame ([`error`]). Kept pure so it can be unit-tested and fuzzed on its own.

pub mod envelope;
pub mod error;
pub mod events;
pub mod payloads;
pub mod wire;

pub use envelope::ClientFrame;
pub use error::{ProtocolError, ProtocolErrorKind};
pub use events::ClientEvent;
