//! Publishing a stored message: [`Hub::publish`] is the one entry point by which client
//! messages, REST notifications and the embedded API's sends get an id, reach live
//! connections and are made durable. In order:
//!
//! 1. **Before the lock**: a resend (same sender, same idempotency key) is answered with the
//!    original's result, from memory or the store; enough message ids are ensured reserved.
//! 2. **Under the hub lock** ([`Hub::route`]), a decision and its hand-offs: the key again
//!    (two resends racing), the recipients ([`State::recipients`](super::state)), the offline
//!    queue bound, the id; then the record goes to the store writer and the event into each
//!    recipient's queue. Allocation, the write queue and every connection's queue therefore
//!    share one order, and a delivery receipt can never reach the store before the message
//!    it marks.
//! 3. **After the lock**: the caller waits for the commit. Live delivery never waited for the
//!    disk; the acknowledgement does.
//!
//! Steps 1 and 2 are [`Hub::begin_publish`]; step 3 is the [`PendingPublish`] it returns, so
//! that a connection can route its next message while this one waits for its commit (the
//! session's pipeline, `transport/session.rs`). [`Hub::publish`] is both, back to back.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;

use super::{Event, Hub, HubError, SessionId};
use crate::metrics::Delivery;
use crate::protocol::payloads::RoomName;
use crate::store::{Commit, ID_PLACEHOLDER, MessageRecord, OriginalAck, TargetKind};

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
    pub payload: &'a (dyn Fn(u64) -> P + Sync),
}

/// Why a message was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Refused by the routing rules (not a member, unknown user, full queue).
    #[error(transparent)]
    Refused(#[from] HubError),
    /// Not committed to the database (or no id could be reserved): not acknowledged.
    #[error("the message could not be stored")]
    NotStored,
    /// The idempotency lookup could not read the database.
    #[error("the message log could not be read")]
    StoreUnavailable,
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
    fn stored_duplicate(original: OriginalAck) -> Self {
        Self {
            id: original.id,
            delivered: original.delivered as usize,
            queued: original.queued,
            duplicate: true,
            committed: Commit::already_durable(),
        }
    }

    /// Whether `other` is this same publish (a clone of it), whatever the ids say.
    pub(super) fn is_same_message(&self, other: &Published) -> bool {
        self.committed.is_same(&other.committed)
    }

    /// Waits until the message is committed; false if it could not be stored. A message
    /// sequenced at commit learns its id here.
    pub async fn durable(&mut self) -> bool {
        let stored = self.committed.durable().await;
        if let Some(id) = self.committed.assigned_id() {
            self.id = id;
        }
        stored
    }
}

/// A message that was routed (or a resend, answered by its original) and whose commit is
/// still to come: what is left of a publish once its order is fixed.
#[must_use = "the sender is acknowledged only once this resolves"]
pub struct PendingPublish {
    hub: Hub,
    published: Published,
    /// The sender and its key, forgotten should the message not be stored; `None` for a
    /// resend, whose original settles its own key.
    key: Option<(Arc<str>, String)>,
}

impl PendingPublish {
    /// Waits until the message is durable: its result, or `NotStored`.
    pub async fn durable(mut self) -> Result<Published, PublishError> {
        if self.published.durable().await {
            return Ok(self.published);
        }
        if let Some((sender_id, key)) = &self.key {
            // Not stored, so not sent as far as the sender knows: its resend is new.
            self.hub
                .state()
                .recent_keys
                .forget(sender_id, key, &self.published);
        }
        Err(PublishError::NotStored)
    }
}

impl Hub {
    /// Publishes a message and waits until it is durable (see the module doc for the steps).
    pub async fn publish<P: Serialize>(
        &self,
        p: Publish<'_, P>,
    ) -> Result<Published, PublishError> {
        self.begin_publish(p).await?.durable().await
    }

    /// The ordered part of a publish (steps 1 and 2): once it returns, the message has its
    /// id and its live copies are queued; the commit is awaited through the result. Messages
    /// begun one after the other get increasing ids and reach each connection in that order.
    pub async fn begin_publish<P: Serialize>(
        &self,
        p: Publish<'_, P>,
    ) -> Result<PendingPublish, PublishError> {
        if let Some(key) = p.client_msg_id
            && let Some(original) = self.original_of(&p.sender_id, key).await?
        {
            // An original still in flight answers when it is settled, as it does itself.
            return Ok(PendingPublish {
                hub: self.clone(),
                published: original,
                key: None,
            });
        }
        self.inner
            .store
            .ensure_id_headroom()
            .await
            .map_err(|_| PublishError::NotStored)?;
        let sender_id = p.sender_id.clone();
        let key = p.client_msg_id.map(String::from);
        let published = self.route(p)?;
        Ok(PendingPublish {
            hub: self.clone(),
            key: key.map(|key| (sender_id, key)),
            published,
        })
    }

    /// The message `sender_id` already sent with `key`, as first acknowledged: remembered
    /// from this run, or found in the store (an earlier run, or evicted from memory).
    async fn original_of(
        &self,
        sender_id: &Arc<str>,
        key: &str,
    ) -> Result<Option<Published>, PublishError> {
        if let Some(previous) = self.state().recent_keys.get(sender_id, key) {
            return Ok(Some(Published {
                duplicate: true,
                ..previous.clone()
            }));
        }
        let found = self.inner.store.original_of(sender_id, key).await;
        match found {
            Ok(original) => Ok(original.map(Published::stored_duplicate)),
            Err(e) => {
                tracing::error!(error = %e, "idempotency lookup failed");
                Err(PublishError::StoreUnavailable)
            }
        }
    }

    /// The step under the lock: decides the recipients and the id, hands the record to the
    /// store and the event to every recipient, without waiting for the disk. Use
    /// [`Hub::publish`]; this is public for the benchmarks that measure the locked step.
    pub fn route<P: Serialize>(&self, p: Publish<'_, P>) -> Result<Published, HubError> {
        let store = &self.inner.store;
        let mut state = self.state();
        if let Some(key) = p.client_msg_id
            && let Some(previous) = state.recent_keys.get(&p.sender_id, key)
        {
            return Ok(Published {
                duplicate: true,
                ..previous.clone()
            });
        }
        let sessions = state.recipients(&p.target, p.sender_session)?;
        // In a cluster, the user's connections on other nodes take it live too.
        let elsewhere = match &p.target {
            Target::User(user_id) => state.remote.sessions_of(user_id),
            Target::All | Target::Room(_) | Target::Role(_) => 0,
        };
        let recipient = match &p.target {
            Target::User(user_id) => {
                if sessions.is_empty() && elsewhere == 0 {
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
                Some(user_id.clone())
            }
            Target::All | Target::Room(_) | Target::Role(_) => None,
        };
        let (kind, target) = match &p.target {
            Target::All => (TargetKind::All, None),
            Target::Room(room) => (TargetKind::Room, Some(room.as_str().to_owned())),
            Target::User(user_id) => (TargetKind::User, Some(user_id.clone())),
            Target::Role(role) => (TargetKind::Role, Some(role.clone())),
        };

        // Sequenced (a cluster), the id comes with the commit and delivery after it, in id
        // order (`cluster.rs`); alone, the id is taken now and the copies go out now.
        let sequenced = store.is_sequenced();
        let id = match sequenced {
            true => 0,
            false => store.allocate_message_id(),
        };
        let payload = (p.payload)(if sequenced { ID_PLACEHOLDER } else { id });
        let event = match recipient {
            Some(_) => Event::tracked(p.event.clone(), &payload, id),
            None => Event::new(p.event.clone(), &payload),
        };
        let live = sessions.len() + elsewhere;
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
            live_recipients: live as u64,
            created_at: p.timestamp.to_owned(),
            recipient: recipient.clone(),
            sender_session: p.sender_session.map(|s| s.0),
        });
        let queued = recipient.is_some() && live == 0;
        // Atomic adds on handles resolved at start: once per message, not per recipient.
        let metrics = self.metrics();
        let delivered = match sequenced {
            // Counted as the sequencer delivers.
            true => live,
            false => {
                let delivered = state.send_to(sessions.iter().copied(), &event);
                metrics.delivered(Delivery::Live, delivered as u64);
                delivered
            }
        };
        if queued {
            metrics.delivered(Delivery::Queued, 1);
        }
        let published = Published {
            id,
            delivered,
            queued,
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
