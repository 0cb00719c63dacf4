//! What socketioxide's handlers (which run in socketioxide's own tasks) need of a
//! connection, kept in the socket's extensions from the connect middleware on.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tracing::Span;

use crate::hub::Closer;

/// What socketioxide's handlers need of a connection: its closer, whether its writer is
/// waiting on a full socketioxide queue, and its span (they run in socketioxide's tasks).
#[derive(Clone)]
pub(super) struct Link {
    pub closer: Closer,
    pub stalled: Arc<AtomicBool>,
    pub span: Span,
}
