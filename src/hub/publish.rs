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

use super::published::Published;
use super::state::{Sender, State};
use super::{Event, Hub, HubError, SessionId};
use crate::metrics::Delivery;
use crate::store::{ID_PLACEHOLDER, MessageRecord, Target};

/// Who publishes, and so which rules a message is held to: the first half of a [`Publish`],
/// made by one of its named constructors ([`Publish::chat`], [`Publish::notification`],
/// [`Publish::system`]); [`Origin::message`] adds what is sent.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The sending connection: left out of live delivery and held to the access rules
    /// (`State::may_send`). `None` for the REST and embedded APIs.
    sender_session: Option<SessionId>,
    /// The sender's user id (`system` for the embedded API).
    sender_id: Arc<str>,
    /// Whether a user never seen is an error (client private messages) or gets queued
    /// (notifications from a back end that knows its users).
    unknown_user_is_error: bool,
    /// Most undelivered messages per offline user (`MAX_QUEUED_PER_USER`).
    queue_limit: u64,
}

/// A message to publish: an `Origin` and what it sends.
pub struct Publish<'a, P> {
    origin: Origin,
    /// Event name (`broadcast-message`, `private-message`, `room-message`, `notification`,
    /// or any name an application sends through the embedded API).
    event: Cow<'static, str>,
    /// Where it goes.
    target: Target,
    /// The text.
    body: &'a str,
    /// The timestamp in the payload, also stored as `created_at`.
    timestamp: &'a str,
    /// Notification type.
    kind: Option<&'a str>,
    /// The sender's idempotency key.
    client_msg_id: Option<&'a str>,
    /// The payload, given the id.
    payload: &'a (dyn Fn(u64) -> P + Sync),
}

impl Publish<'_, ()> {
    /// A client's chat message (`send-message`, `room-message`) from its connection
    /// `session`: that connection is left out of live delivery and must be allowed to send
    /// (a room takes its members' messages only); a private message to a user never seen is
    /// refused.
    pub fn chat(session: SessionId, sender_id: Arc<str>, queue_limit: u64) -> Origin {
        Origin {
            sender_session: Some(session),
            sender_id,
            unknown_user_is_error: true,
            queue_limit,
        }
    }

    /// A back end's notification (the REST API), named as the calling user `sender_id`: a
    /// user never seen gets it queued (a back end knows its users).
    pub fn notification(sender_id: Arc<str>, queue_limit: u64) -> Origin {
        Origin {
            sender_session: None,
            sender_id,
            unknown_user_is_error: false,
            queue_limit,
        }
    }

    /// An embedding application's message (`GatewayHandle`), from the `system` user; a user
    /// never seen gets it queued.
    pub fn system(queue_limit: u64) -> Origin {
        Origin {
            sender_session: None,
            sender_id: Arc::from("system"),
            unknown_user_is_error: false,
            queue_limit,
        }
    }
}

impl Origin {
    /// The message this origin sends: `event` to `target`, with `body` as its stored text,
    /// `timestamp` as its time, and `payload` given its id.
    pub fn message<'a, P>(
        self,
        event: impl Into<Cow<'static, str>>,
        target: Target,
        body: &'a str,
        timestamp: &'a str,
        payload: &'a (dyn Fn(u64) -> P + Sync),
    ) -> Publish<'a, P> {
        Publish {
            origin: self,
            event: event.into(),
            target,
            body,
            timestamp,
            kind: None,
            client_msg_id: None,
            payload,
        }
    }
}

impl<'a, P> Publish<'a, P> {
    /// Its notification type.
    pub fn kind(self, kind: Option<&'a str>) -> Self {
        Self { kind, ..self }
    }

    /// The sender's idempotency key: a resend with it is answered with the original.
    pub fn idempotency_key(self, key: Option<&'a str>) -> Self {
        Self {
            client_msg_id: key,
            ..self
        }
    }
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
            && let Some(original) = self.original_of(&p.origin.sender_id, key).await?
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
        let key = p
            .client_msg_id
            .map(|key| (p.origin.sender_id.clone(), key.to_owned()));
        let published = self.route(p)?;
        Ok(PendingPublish {
            hub: self.clone(),
            key,
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
        let mut state = self.state();
        if let Some(original) = remembered(&state, &p) {
            return Ok(original);
        }
        let sessions = state.recipients(&p.target, Sender::live(p.origin.sender_session))?;
        // In a cluster, the user's connections on other nodes take it live too.
        let live = sessions.len() + p.target.user().map_or(0, |u| state.remote.sessions_of(u));
        self.may_queue(&state, &p, live)?;
        let store = &self.inner.store;
        let (id, sequenced) = self.take_id();
        let event = p.event(id, sequenced);
        let queued = p.target.user().is_some() && live == 0;
        let remember = p
            .client_msg_id
            .map(|key| (p.origin.sender_id.clone(), key.to_owned()));
        let committed = store.log_message(p.into_record(id, &event, live));
        let delivered = match sequenced {
            // Counted as the sequencer delivers.
            true => live,
            false => self.send_live(&mut state, &sessions, &event),
        };
        if queued {
            self.metrics().delivered(Delivery::Queued, 1);
        }
        let published = Published {
            id,
            delivered,
            queued,
            duplicate: false,
            committed,
        };
        if let Some((sender_id, key)) = remember {
            state.recent_keys.insert(sender_id, key, published.clone());
        }
        Ok(published)
    }

    /// Whether a message to a user nobody takes live may wait in that user's offline queue:
    /// not for a user never seen when the origin says so, nor past the queue bound.
    fn may_queue<P>(&self, state: &State, p: &Publish<'_, P>, live: usize) -> Result<(), HubError> {
        let Some(user_id) = p.target.user() else {
            return Ok(());
        };
        if live > 0 {
            return Ok(());
        }
        if p.origin.unknown_user_is_error && !state.known_users.contains(user_id) {
            return Err(HubError::UnknownUser(user_id.to_owned()));
        }
        let limit = p.origin.queue_limit;
        if self.inner.store.queued_for(user_id) >= limit {
            return Err(HubError::QueueFull {
                user_id: user_id.to_owned(),
                limit,
            });
        }
        Ok(())
    }

    /// The message's id, and whether it is sequenced. Sequenced (a cluster), the id comes
    /// with the commit (0 until then) and delivery after it, in id order (`cluster.rs`);
    /// alone, the id is taken now and the copies go out now.
    fn take_id(&self) -> (u64, bool) {
        let store = &self.inner.store;
        match store.is_sequenced() {
            true => (0, true),
            false => (store.allocate_message_id(), false),
        }
    }

    /// Hands the event to this node's recipients now; how many took it.
    fn send_live(&self, state: &mut State, sessions: &[SessionId], event: &Arc<Event>) -> usize {
        let delivered = state.send_to(sessions.iter().copied(), event);
        // An atomic add on a handle resolved at start: once per message, not per recipient.
        self.metrics().delivered(Delivery::Live, delivered as u64);
        delivered
    }
}

/// A resend racing its original to the lock: the original's result, as first acknowledged.
fn remembered<P>(state: &State, p: &Publish<'_, P>) -> Option<Published> {
    let previous = state
        .recent_keys
        .get(&p.origin.sender_id, p.client_msg_id?)?;
    Some(Published {
        duplicate: true,
        ..previous.clone()
    })
}

impl<P: Serialize> Publish<'_, P> {
    /// The event as delivered, serialized once (with the placeholder id when `sequenced`);
    /// a message to a user is tracked, so that its delivery is recorded when taken.
    fn event(&self, id: u64, sequenced: bool) -> Arc<Event> {
        let payload = (self.payload)(if sequenced { ID_PLACEHOLDER } else { id });
        match self.target.user() {
            Some(_) => Event::tracked(self.event.clone(), &payload, id),
            None => Event::new(self.event.clone(), &payload),
        }
    }

    /// The record the store keeps, its target moved in (no copy).
    fn into_record(self, id: u64, event: &Event, live: usize) -> MessageRecord {
        MessageRecord {
            id,
            event: self.event.into_owned(),
            target: self.target,
            sender_id: self.origin.sender_id.to_string(),
            body: self.body.to_owned(),
            kind: self.kind.map(String::from),
            payload: event.data_json().to_owned(),
            client_msg_id: self.client_msg_id.map(String::from),
            live_recipients: live as u64,
            created_at: self.timestamp.to_owned(),
            sender_session: self.origin.sender_session.map(|s| s.0),
        }
    }
}
