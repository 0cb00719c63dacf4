//! The direct path into socketioxide: an event with nothing queued before it goes from the
//! hub straight into socketioxide's queue, sparing the hop through the connection's writer.

use std::sync::Arc;

use socketioxide::extract::SocketRef;
use tokio::sync::{Notify, mpsc};

use super::emit::{Emitted, emit};
use crate::hub::{Event, Handoff};

/// The direct path into socketioxide ([`Handoff`]): an event with nothing queued before it
/// goes from the hub straight into socketioxide's queue, as the writer would have put it
/// there one task hop later. Order holds because events are handed to socketioxide only
/// under `handing`, by the writer for a batch or by the hub for one event, and the hub hands
/// over only while our queue is empty.
pub(super) struct SocketHandoff {
    pub socket: SocketRef,
    /// Async: the writer holds it while it waits for room in socketioxide's queue.
    pub handing: tokio::sync::Mutex<()>,
    /// Something was queued for the writer.
    pub queued: Notify,
}

impl Handoff for SocketHandoff {
    fn try_direct(&self, event: &Arc<Event>, queue: &mpsc::Sender<Arc<Event>>) -> bool {
        // A stored message for one user is recorded as delivered by the writer's receipts.
        if event.delivery().is_some() {
            return false;
        }
        let Ok(_handing) = self.handing.try_lock() else {
            return false;
        };
        if queue.capacity() != queue.max_capacity() {
            return false;
        }
        // Full or closed: queued instead, for the writer to wait on or to find gone.
        matches!(emit(&self.socket, event), Emitted::Taken)
    }

    fn queued(&self) {
        self.queued.notify_one();
    }
}
