//! What was wrong with a client frame or payload. The text is what the client reads in its
//! `error { message }` event, so it names the field and the rule; the kind tells a frame that
//! could not be read at all from a readable event whose payload breaks a rule.

/// A frame or payload the server will not act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    /// Which part was wrong.
    pub kind: ProtocolErrorKind,
    message: String,
}

/// Which part of a client event was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// The envelope: not JSON, not an object, no event name, a bad ack id.
    Frame,
    /// The payload of a known event: a missing field, a wrong type, a rule broken.
    Payload,
}

impl ProtocolError {
    /// A payload that breaks a rule.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: ProtocolErrorKind::Payload,
            message: message.into(),
        }
    }

    /// A frame that could not be read as an event.
    pub fn frame(message: impl Into<String>) -> Self {
        Self {
            kind: ProtocolErrorKind::Frame,
            message: message.into(),
        }
    }
}
