//! Publishing a stored message: the one path by which public, private and room messages (and,
//! later, notifications) get an id, reach live connections and are handed to the store.
//!
//! Everything happens under the hub lock, in this order: the idempotency key is checked, the
//! target is checked (membership, known user, offline queue bound), the id is allocated, the
//! write is queued for the store, and only then is the event sent live. Allocation and the
//! write queue are therefore in id order, and a delivery receipt can never reach the store
//! before the message it marks. Live delivery does not wait for the disk; the caller's ack
//! does ([`Published::durable`]).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;

use super::{Event, Hub, HubError, SessionId};
use crate::protocol::payloads::RoomName;
use crate::store::{Commit, MessageRecord, TargetKind};

/// Where a message goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every connection (but the sender's).
    All,
    /// Every connection of one user; queued while the user is offline.
    User(String),
    /// Every connection of the room's members (but the sender's).
    Room(RoomName),
    /// Every connection whose user has this role.
    Role(String),
}

/// A message to publish.
pub struct Publish<'a, P> {
    /// Event name (`broadcast-message`, `private-message`, `room-message`, `notification`,
    /// or any name an application sends through the embedded API).
    pub event: Cow<'static, str>,
    /// Where it goes.
    pub target: Target,
    /// The sending connection: left out of live delivery, and must be a room member for a
    /// room target. `None` for the REST and embedded APIs.
    pub sender_session: Option<SessionId>,
    /// The sender's user id (`system` for the embedded API).
    pub sender_id: Arc<str>,
    /// The text.
    pub body: &'a str,
    /// The timestamp in the payload, also stored as `created_at`.
    pub timestamp: &'a str,
    /// Notification type.
    pub kind: Option<&'a str>,
    /// The sender's idempotency key.
    pub client_msg_id: Option<&'a str>,
    /// Whether a user never seen is an error (client private messages) or gets queued
    /// (notifications from a back end that knows its users).
    pub unknown_user_is_error: bool,
    /// Most undelivered messages per offline user.
    pub queue_limit: u64,
    /// The payload, given the id.
    pub payload: &'a dyn Fn(u64) -> P,
}

/// The result of a publish, as acknowledged to the sender.
#[derive(Debug, Clone)]
pub struct Published {
    /// The message id.
    pub id: u64,
    /// Connections that took it live.
    pub delivered: usize,
    /// Whether it waits in an offline queue.
    pub queued: bool,
    /// True when this is a resend of an earlier message with the same key.
    pub duplicate: bool,
    committed: Commit,
}

impl Published {
    /// A resend of an already stored message, found in the database.
    pub fn stored_duplicate(id: u64, delivered: usize, queued: bool) -> Self {
        Self {
            id,
            delivered,
            queued,
            duplicate: true,
            committed: Commit::already_durable(),
        }
    }

    /// Waits until the message is committed; false if it could not be stored.
    pub async fn durable(&mut self) -> bool {
        self.committed.durable().await
    }
}

impl Hub {
    /// Publishes a message (see the module doc for the order of steps).
    pub fn publish<P: Serialize>(&self, p: Publish<'_, P>) -> Result<Published, HubError> {
        let store = &self.inner.store;
        let mut state = self.state();
        if let Some(key) = p.client_msg_id
            && let Some(previous) = state.recent_keys.get(&p.sender_id, key)
        {
            let mut duplicate = previous.clone();
            duplicate.duplicate = true;
            return Ok(duplicate);
        }
        let mut recipient = None;
        let (kind, target, sessions) = match &p.target {
            Target::All => {
                let sessions = state
                    .sessions
                    .keys()
                    .copied()
                    .filter(|id| Some(*id) != p.sender_session)
                    .collect::<Vec<_>>();
                (TargetKind::All, None, sessions)
            }
            Target::Room(room) => {
                if let Some(session) = p.sender_session {
                    let user_id = state.user_id_of(session)?;
                    if !state.is_member(room, &user_id) {
                        return Err(HubError::NotMember(room.to_string()));
                    }
                }
                let sessions = state.room_sessions(room, p.sender_session);
                (TargetKind::Room, Some(room.as_str().to_owned()), sessions)
            }
            Target::User(user_id) => {
                let sessions = state.sessions_of(user_id, None).collect::<Vec<_>>();
                if sessions.is_empty() {
                    if p.unknown_user_is_error && !state.known_users.contains(user_id.as_str()) {
                        return Err(HubError::UnknownUser(user_id.clone()));
                    }
                    if store.queued_for(user_id) >= p.queue_limit {
                        return Err(HubError::QueueFull {
                            user_id: user_id.clone(),
                            limit: p.queue_limit,
                        });
                    }
                }
                recipient = Some(user_id.clone());
                (TargetKind::User, Some(user_id.clone()), sessions)
            }
            Target::Role(role) => {
                let sessions = state
                    .users
                    .values()
                    .filter(|u| &*u.identity.role == role)
                    .flat_map(|u| u.sessions.iter().copied())
                    .filter(|id| Some(*id) != p.sender_session)
                    .collect::<Vec<_>>();
                (TargetKind::Role, Some(role.clone()), sessions)
            }
        };

        let id = store.allocate_message_id();
        let payload = (p.payload)(id);
        let event = match recipient {
            Some(_) => Event::tracked(p.event.clone(), &payload, id),
            None => Event::new(p.event.clone(), &payload),
        };
        let committed = store.log_message(MessageRecord {
            id,
            event: p.event.into_owned(),
            target_kind: kind,
            target,
            sender_id: p.sender_id.to_string(),
            body: p.body.to_owned(),
            kind: p.kind.map(String::from),
            payload: event.data_json().to_owned(),
            client_msg_id: p.client_msg_id.map(String::from),
            live_recipients: sessions.len() as u64,
            created_at: p.timestamp.to_owned(),
            recipient: recipient.clone(),
        });
        let delivered = state.send_to(sessions.iter().copied(), &event);
        let published = Published {
            id,
            delivered,
            queued: recipient.is_some() && sessions.is_empty(),
            duplicate: false,
            committed,
        };
        if let Some(key) = p.client_msg_id {
            state
                .recent_keys
                .insert(p.sender_id.clone(), key.to_owned(), published.clone());
        }
        Ok(published)
    }
}
