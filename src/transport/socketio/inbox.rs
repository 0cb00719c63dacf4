//! Incoming events, taken in order. socketioxide spawns a task per incoming event, which
//! would let `join-room` and the `room-message` after it race; [`Inbox`] is a message handler
//! that runs synchronously in socketioxide's receive path and only queues each event, in
//! order, for the connection's one reader task. Bounded: a full inbox closes the client
//! `rate_limited`.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{Event as EventName, TryData};
use socketioxide::handler::message::FromMessageParts;
use socketioxide::handler::{MessageHandler, Value as PacketValue};
use socketioxide::socket::Socket;
use tokio::sync::mpsc;

use super::link::Link;
use crate::hub::CloseReason;

/// One client event, as taken from socketioxide.
pub(super) struct Inbound {
    pub event: Result<String, String>,
    pub data: Option<Value>,
    /// The socket it came from, for its replies ([`Replies`]).
    pub socket: Arc<Socket<LocalAdapter>>,
    /// The ack the client asked for, if any.
    pub ack_id: Option<i64>,
}

/// Queues every incoming event for the connection's reader, synchronously and in order.
#[derive(Clone)]
pub(super) struct Inbox(pub mpsc::Sender<Inbound>);

/// Marker type for [`Inbox`]'s handler implementation.
pub(super) struct InboxMarker;

impl MessageHandler<LocalAdapter, InboxMarker> for Inbox {
    fn call(&self, s: Arc<Socket<LocalAdapter>>, mut v: PacketValue, ack_id: Option<i64>) {
        let event = EventName::from_message_parts(&s, &mut v, &ack_id)
            .map(|e| e.0)
            .map_err(|e| format!("unreadable event: {e}"));
        let data = match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
            Ok(TryData(Ok(Value::Null))) | Ok(TryData(Err(_))) | Err(_) => None,
            Ok(TryData(Ok(v))) => Some(v),
        };
        let inbound = Inbound {
            event,
            data,
            socket: s.clone(),
            ack_id,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.0.try_send(inbound)
            && let Some(link) = s.extensions.get::<Link>()
        {
            link.closer.close(CloseReason::RateLimited);
        }
    }
}
