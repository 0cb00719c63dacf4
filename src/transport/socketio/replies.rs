//! Socket.IO replies that go straight to socketioxide rather than through the connection's
//! writer: an event's ack, and the `error` event that precedes a refusal's ack (on the same
//! path so that the two stay in order).
//!
//! socketioxide's queue for one socket is small (`HANDOFF_QUEUE`), and it refuses a packet when
//! full instead of waiting; an `AckSender` is consumed by its one attempt. A reply it had no
//! room for therefore waits here, in order, and a retry task offers it again until the client
//! has read enough to make room (or the socket is gone). Once one reply waits, later ones
//! queue behind it, so acks still reach the client in frame order. Before this, a full queue
//! dropped the ack silently and the client waited for it forever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::Value as PacketValue;
use socketioxide::handler::message::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};

use super::emit::{Emitted, emit};
use crate::hub::Event;

/// How long a waiting reply rests before it is offered again.
const RETRY: Duration = Duration::from_millis(20);

enum Reply {
    /// An event (a refusal's `error`).
    Event(Arc<Event>),
    /// The ack of the client's event `id`.
    Ack { id: i64, data: Value },
}

/// The replies of one socket, in order.
pub(super) struct Replies {
    socket: Arc<Socket<LocalAdapter>>,
    /// What socketioxide had no room for yet, oldest first. Not empty exactly while a retry
    /// task runs (both change under this lock).
    waiting: Mutex<VecDeque<Reply>>,
}

impl Replies {
    pub(super) fn new(socket: Arc<Socket<LocalAdapter>>) -> Arc<Self> {
        Arc::new(Self {
            socket,
            waiting: Mutex::new(VecDeque::new()),
        })
    }

    fn waiting(&self) -> MutexGuard<'_, VecDeque<Reply>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a refusal's `error` event, or queues it behind what waits.
    pub(super) fn event(self: &Arc<Self>, event: Arc<Event>) {
        self.send(Reply::Event(event));
    }

    /// Sends the ack of event `id` (nothing when the client asked for none), or queues it.
    pub(super) fn ack(self: &Arc<Self>, id: Option<i64>, data: Value) {
        if let Some(id) = id {
            self.send(Reply::Ack { id, data });
        }
    }

    fn send(self: &Arc<Self>, reply: Reply) {
        let mut waiting = self.waiting();
        if !waiting.is_empty() {
            waiting.push_back(reply);
            return;
        }
        if let Emitted::Full = self.offer(&reply) {
            waiting.push_back(reply);
            drop(waiting);
            tokio::spawn(retry(Arc::clone(self)));
        }
    }

    fn offer(&self, reply: &Reply) -> Emitted {
        match reply {
            Reply::Event(event) => emit(&self.socket, event),
            Reply::Ack { id, data } => {
                let sender = match AckSender::from_message_parts(
                    &self.socket,
                    &mut PacketValue::Bytes(Default::default()),
                    &Some(*id),
                ) {
                    Ok(sender) => sender,
                    Err(never) => match never {},
                };
                match sender.send(data) {
                    Ok(()) => Emitted::Taken,
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => Emitted::Full,
                    Err(SendError::Socket(SocketError::Closed)) => Emitted::Gone,
                    // Our acks are JSON values already: nothing else can fail to encode.
                    Err(_) => Emitted::Taken,
                }
            }
        }
    }
}

/// Offers the waiting replies again every [`RETRY`], in order, until none waits or the socket
/// is gone.
async fn retry(replies: Arc<Replies>) {
    loop {
        tokio::time::sleep(RETRY).await;
        let mut waiting = replies.waiting();
        while let Some(reply) = waiting.front() {
            match replies.offer(reply) {
                Emitted::Taken => {
                    waiting.pop_front();
                }
                Emitted::Full => break,
                Emitted::Gone => {
                    waiting.clear();
                    return;
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
    }
}
