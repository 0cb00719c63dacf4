//! What was wrong with a client frame or payload. The text is what the client reads in its
//! `error { message }` event, so it names the field and the rule.

/// A frame or payload the server will not act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    /// Builds an error from any message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
