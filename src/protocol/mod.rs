//! The wire, and nothing else: no I/O, no locks, nothing of the rest of the crate. The `/ws`
//! envelope (`envelope`), client events and their validated payloads (`events`,
//! `payloads`), the objects the server sends ([`wire`]) and the error that names what was
//! wrong with a frame (`error`), and the signature of the requests the gateway sends
//! (`standard_webhooks`). Kept pure so it can be unit-tested and fuzzed on its own.

pub(crate) mod envelope;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod payloads;
pub(crate) mod standard_webhooks;
pub mod wire;

pub(crate) use envelope::ClientFrame;
pub(crate) use error::{ProtocolError, ProtocolErrorKind};
pub(crate) use events::ClientEvent;
