//! What a client hears back about its own event: a typed [`Ack`] per command on success, the
//! `error { message, code }` event on refusal, and the ack body both transports send
//! ([`AckReply`]: `{ ok: true, ...fields }` or `{ ok: false, error, code }`).

use std::sync::Arc;

use serde::Serialize;

use super::CommandError;
use crate::hub::{Event, Published};
use crate::protocol::wire::{ActiveUsers, ErrorPayload, SyncComplete, UsersStats};

/// The fields a successful event acknowledges, beside `ok: true`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Ack {
    /// `get-active-users`: `{ users, count }`.
    ActiveUsers(ActiveUsers),
    /// `get-users-stats`: the statistics object.
    UsersStats(UsersStats),
    /// `send-message`, `room-message`: `{ id, delivered, queued, duplicate?, room? }`.
    Published(PublishedAck),
    /// `join-room`: `{ room, joined }`.
    Joined { room: String, joined: bool },
    /// `leave-room`: `{ room }`.
    Left { room: String },
    /// `sync`: the `sync-complete` fields.
    Synced(SyncComplete),
    /// `refresh-token`: `{ exp }`, the new token's expiry the connection now lives by.
    Refreshed { exp: u64 },
}

/// A stored message, acknowledged once durable.
#[derive(Debug, Serialize)]
pub struct PublishedAck {
    pub id: u64,
    /// Connections that took it live.
    pub delivered: usize,
    /// Whether it waits in an offline queue.
    pub queued: bool,
    /// A resend of an earlier message with the same `clientMsgId`: nothing was sent again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

impl From<&Published> for PublishedAck {
    fn from(p: &Published) -> Self {
        Self {
            id: p.id,
            delivered: p.delivered,
            queued: p.queued,
            duplicate: p.duplicate,
            room: None,
        }
    }
}

/// The result of one client event.
pub type Outcome = Result<Ack, CommandError>;

/// The body of an ack, as both transports send it (`/ws` adds the frame's `ack` id).
#[derive(Debug, Serialize)]
pub struct AckReply<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<u64>,
    ok: bool,
    #[serde(flatten)]
    fields: Option<&'a Ack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
}

impl<'a> AckReply<'a> {
    /// `{ ok: true, ...fields }` or `{ ok: false, error, code }`.
    pub fn of(outcome: &'a Outcome) -> Self {
        match outcome {
            Ok(ack) => Self {
                ack: None,
                ok: true,
                fields: Some(ack),
                error: None,
                code: None,
            },
            Err(e) => Self {
                ack: None,
                ok: false,
                fields: None,
                error: Some(e.to_string()),
                code: Some(e.code()),
            },
        }
    }

    /// The same, answering the frame that carried ack id `id`.
    pub fn with_id(mut self, id: u64) -> Self {
        self.ack = Some(id);
        self
    }
}

/// The `error { message, code }` event for a refusal.
pub fn error_event(error: &CommandError) -> Arc<Event> {
    Event::new(
        "error",
        &ErrorPayload {
            message: &error.to_string(),
            code: error.code(),
        },
    )
}
