//! The hub: the one owner of live state (sessions, users, rooms) and the only place that
//! routes. Transports, the REST API and the embedded API are all callers of [`Hub`].
//!
//! Each operation takes the lock, asks [`state`] to decide (who receives, whether this is a
//! user's first or last connection, the id), hands the record to the store and the event to
//! the recipients' queues, and lets go. [`publish`] is the one way a message is published.
//!
//! ## The lock rules
//!
//! - One `std::sync::Mutex<State>`, never held across an `.await` (it cannot be: the guard
//!   is not `Send`), so a plain mutex is cheaper than an async one.
//! - Under it: decisions over the maps, id allocation, the store's channel send (never the
//!   disk), `Event::new` for presence and replies (one serialization per event), the append
//!   of a presence change to the [`presence`] log (O(1): presence never goes through the
//!   queues), and the non-blocking `try_send` into each recipient's bounded queue. Sends stay under the lock
//!   because that is what gives every connection the messages in id order and makes a new
//!   connection's replay/live cut exact; a full queue closes that connection (slow consumer)
//!   instead of waiting.
//! - Not under it: the disk (acks wait for the commit after the lock is released), frame
//!   encoding (each transport's writer encodes once per event), idempotency lookups in the
//!   store, catch-up reads.
//! - Order: the hub lock may take the store's small locks (queue counts, id allocator) and
//!   the presence log's, never the other way round.

mod cluster;
mod event;
mod membership;
mod outbound;
mod overview;
mod presence;
mod presence_storm;
mod publish;
mod published;
mod remote;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::access::JoinVerdict;
pub use crate::access::RoomAccess;
pub use cluster::{ClusterEvent, OUTBOX_CAPACITY};
// The bus format's tests build room changes.
#[cfg(test)]
pub use cluster::RoomChange;
pub use event::Event;
pub use membership::MemberInfo;
use membership::{Beginning, Ending};
pub use outbound::{CloseReason, Closer, Handoff, Outbound, OutboundQueue};
pub use overview::{LiveOverview, LiveRoom, LiveSession, LiveUser, OverviewLimits};
pub use presence::PresenceCursor;
use presence::PresenceFeed;
pub use publish::{Origin, Publish, PublishError};
pub use published::Published;
pub use remote::NodeUser;
use state::{Opened, State};

use crate::auth::Identity;
use crate::config::PresenceSettings;
use crate::metrics::{Live, Metrics};
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, Connected, LeftReason, UserObject};
pub use crate::store::Target;
use crate::store::{NewSession, Store, StoreError, StoredMembership};

/// Identifies one live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Which wire protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain WebSocket at `/ws`.
    WebSocket,
    /// Socket.IO at `/socket.io/`.
    SocketIo,
}

impl Transport {
    /// The value stored in `sessions.transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "ws",
            Self::SocketIo => "socketio",
        }
    }
}

/// What the server knows about a connection besides its identity.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    /// Wire protocol.
    pub transport: Transport,
    /// Peer address.
    pub remote_addr: Option<SocketAddr>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// A refused hub operation; the text is the client's `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The session is gone (closed while the request was handled).
    #[error("session closed")]
    SessionGone,
    /// `room-message` or `leave-room` for a room the user is not in.
    #[error("you are not a member of room {0:?}; join it first")]
    NotMember(String),
    /// `join-room` past `MAX_ROOMS_PER_USER`.
    #[error("you are already in {0} rooms, the most allowed; leave one first")]
    TooManyRooms(usize),
    /// Refused by the room's access rules; the same words whether the room exists or not.
    #[error("{0}")]
    Forbidden(Forbidden),
    /// A private message to a user the gateway has never seen.
    #[error("unknown user {0:?}: nobody with that id has ever connected")]
    UnknownUser(String),
    /// A private message to an offline user whose queue is full.
    #[error(
        "the offline queue of user {user_id:?} is full ({limit} undelivered messages); try again later"
    )]
    QueueFull {
        /// The recipient.
        user_id: String,
        /// `MAX_QUEUED_PER_USER`.
        limit: u64,
    },
}

/// What the access rules refused (`crate::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// `join-room` for a room the user may not be in.
    #[error("not allowed to join this room")]
    Join,
    /// `room-message` from a member the room's post rule or a read-only grant excludes.
    #[error("not allowed to post in this room")]
    Post,
    /// `send-message` to everyone from a role `BROADCAST_ROLES` does not list.
    #[error("not allowed to send to everyone")]
    Broadcast,
}

/// Whether the application's join hook was asked for this join (see [`Hub::join_room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAnswer {
    /// Not asked (yet): a room whose policy asks it answers `JoinOutcome::AskHook`.
    NotAsked,
    /// Asked, and it let the user in.
    Allowed,
}

/// What [`Hub::join_room`] did.
#[derive(Debug)]
pub enum JoinOutcome {
    /// The user is a member; `new` when it was not before.
    Joined { new: bool },
    /// The room's policy asks the application's join hook about this identity first.
    AskHook(Identity),
}

#[derive(Debug)]
pub struct Registered {
    /// The new session.
    pub session: SessionId,
    /// The last message id allocated when it registered: stored messages up to this id are
    /// replayed to it; later ones reach it live (held until the replay ends).
    pub replay_until: u64,
    /// Where its writer reads presence from: every change after its registration.
    pub presence: PresenceCursor,
}

/// The shortest return a graceful stop asks for: a stop and a start take about a second (the
/// restart benchmark measured 0.3 to 0.9 s of downtime), and a client told to come back
/// sooner only finds the port closed and falls back on its own backoff.
const RETURN_FLOOR: Duration = Duration::from_secs(1);

/// Live state and routing; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// See the lock rules in the module doc.
    state: Mutex<State>,
    /// What the hub writes under its lock goes here; callers outside the hub reach the
    /// store through the app state, not through the hub.
    store: Store,
    /// The gateway's metrics, handed in at start-up (the same set the store and the app
    /// state hold).
    metrics: Arc<Metrics>,
    presence: PresenceFeed,
    /// In a cluster: where changes the other nodes must hear go (`cluster.rs`).
    outbox: OnceLock<mpsc::Sender<ClusterEvent>>,
    /// A change did not fit in the outbox: this node's users are to be sent in full.
    resync: AtomicBool,
    /// The node lost its cluster (`Hub::cut_off`).
    cut_off: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.presence.close();
    }
}

/// A user that is online, as the statistics need it.
#[derive(Debug, Clone)]
pub struct OnlineUser {
    pub user: UserObject,
    /// Oldest live connection.
    pub connected_at: SystemTime,
}

impl Hub {
    /// A hub over `store`, with the stored room memberships and known users loaded, recording
    /// in `metrics` (the gateway's set). Presence events go out as `presence` says (its
    /// flusher task starts here).
    pub async fn load(
        store: Store,
        metrics: Arc<Metrics>,
        presence: PresenceSettings,
    ) -> Result<Self, StoreError> {
        let live = store.load_live_state().await?;
        let mut state = State::default();
        for membership in live.memberships {
            let StoredMembership {
                room,
                user_id,
                by_server,
                ..
            } = membership;
            match RoomName::parse(&room) {
                Ok(room) if by_server => state.add_server_member(&room, &Arc::from(user_id)),
                Ok(room) => state.add_member(&room, &Arc::from(user_id)),
                Err(e) => {
                    tracing::warn!(room, error = %e, "ignoring a stored room with a bad name")
                }
            }
        }
        state.known_users = live.known_users.into_iter().map(Arc::from).collect();
        // A member the application added may never have connected: it is known all the same.
        let members: Vec<Arc<str>> = state.memberships.keys().cloned().collect();
        state.known_users.extend(members);
        let hub = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                store,
                metrics,
                presence: PresenceFeed::new(presence),
                outbox: OnceLock::new(),
                resync: AtomicBool::new(false),
                cut_off: AtomicBool::new(false),
            }),
        };
        hub.inner.presence.spawn_flusher(Arc::downgrade(&hub.inner));
        Ok(hub)
    }

    /// Sets who may be in which room (from `ROOM_JOIN_DEFAULT` and `ADMIN_ROLES`); until then
    /// anyone may join any room their token's `rooms` claim (if any) grants.
    pub fn set_room_access(&self, access: RoomAccess) {
        self.state().access = access;
    }

    /// The gateway's metrics, for what the hub and the cluster record (the doors hold their
    /// own handle in the app state).
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The state figures of `/metrics`, read when it is scraped: open connections per
    /// transport, users online and rooms with members (three reads under the hub lock),
    /// then the offline queues (the store's own lock, after the hub's is released).
    pub fn live_figures(&self) -> Live {
        let (open, users, rooms) = {
            let state = self.state();
            (state.open, state.users.len(), state.rooms.len())
        };
        let queues = self.inner.store.offline_queues(1);
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let count64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Live {
            ws_connections: count(open.ws),
            socketio_connections: count(open.socketio),
            users_online: count(users),
            rooms_with_members: count(rooms),
            offline_queue_total: count64(queues.messages),
            offline_queue_max: count64(queues.largest.first().map_or(0, |(_, n)| *n)),
        }
    }

    /// The store the hub writes to, for the hub's own files and the cluster (which joins
    /// through the hub); everything else takes the store from the app state.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still consistent enough to
        // route; refusing every later connection would be worse.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection: sends it `connected` (with the rooms the user is in),
    /// announces the user's presence if this is its first connection, and
    /// records the session. Live events for it are held until [`Hub::end_replay`], so that
    /// the stored messages it is owed arrive first; at most `hold_limit` are held.
    pub fn connect(
        &self,
        session_id: u64,
        identity: Identity,
        meta: SessionMeta,
        outbound: Outbound,
        hold_limit: usize,
    ) -> Registered {
        let now = SystemTime::now();
        let at = wire::timestamp(now);
        let store = &self.inner.store;
        let id = SessionId(session_id);
        let mut state = self.state();
        let opened = Opened {
            at: now,
            transport: meta.transport,
            remote_addr: meta.remote_addr,
        };
        let mut arrival = state.add_session(id, &identity, outbound.clone(), opened, hold_limit);
        if state.remote.is_online(&identity.user_id)
            && let Some(user) = state.cluster_user_object(&identity.user_id)
        {
            // Also connected on other nodes: the sessions on every node.
            arrival.user = user;
        }
        // Stored memberships this connection's token (now the user's newest) does not grant
        // end before `connected` lists the rooms; each is explained right after it.
        let dropped = self.drop_ungranted(&mut state, &identity.user_id, Some(id));
        // Straight to the connection, ahead of anything held for it.
        outbound.send(Event::new(
            "connected",
            &Connected {
                message: format!("Welcome, {}", identity.username),
                user: &arrival.user,
                timestamp: at.clone(),
                rooms: state.rooms_of(&identity.user_id),
            },
        ));
        for event in dropped {
            outbound.send(event);
        }
        if arrival.first && !state.remote.is_online(&identity.user_id) {
            let count = state.online_count();
            let state = &mut *state;
            self.inner.presence.user_changed(
                &mut state.presence_window,
                &arrival.user,
                true,
                &at,
                count,
            );
        }
        self.announce_user(&state, &identity.user_id, None);
        if self.is_cut_off() {
            // Admitted just before this node was cut off from its cluster: it goes too.
            outbound.close(CloseReason::NodeLost);
        }
        let presence = self
            .inner
            .presence
            .cursor(self.clone(), identity.user_id.clone());
        store.session_opened(NewSession {
            session_id: id.0,
            identity: &identity,
            transport: meta.transport.as_str(),
            remote_addr: meta.remote_addr,
            user_agent: meta.user_agent.as_deref(),
            at: &at,
        });
        Registered {
            session: id,
            replay_until: store.last_message_id(),
            presence,
        }
    }

    /// Ends a connection's catch-up: the live events held meanwhile go out, in order.
    pub fn end_replay(&self, id: SessionId) {
        self.state().end_replay(id);
    }

    /// Forgets a connection and records why it ended. On the user's last connection, the
    /// user's departure is announced. Room memberships stay: they belong to the user.
    pub fn disconnect(&self, id: SessionId, reason: CloseReason) {
        let at = wire::now();
        let mut state = self.state();
        let Some(departure) = state.remove_session(id) else {
            return;
        };
        // Handed to the store under the lock, before anyone hears of the departure: a read
        // that follows a `user-disconnected` (after a flush) sees the closed row.
        self.inner.store.session_closed(id.0, reason.as_str(), &at);
        let Some(user) = &departure.user else { return };
        if departure.last && !state.remote.is_online(&user.user_id) {
            let count = state.online_count();
            let state = &mut *state;
            self.inner
                .presence
                .user_changed(&mut state.presence_window, user, false, &at, count);
        }
        self.announce_user(&state, &user.user_id, Some(user));
    }

    /// A connection renewed its token (`refresh-token`): the user's name, role and room
    /// grants come from the new one from now on, for every connection of the user (role
    /// broadcasts included), and the stored user row follows. Rooms the new token no longer
    /// grants are left at once (`left-room` with `reason: "not_granted"` to every connection
    /// of the user).
    pub fn renew_identity(&self, id: SessionId, identity: &Identity) -> Result<(), HubError> {
        let mut state = self.state();
        state.renew_identity(id, identity)?;
        self.drop_ungranted(&mut state, &identity.user_id, None);
        self.inner.store.user_renewed(identity, &wire::now());
        // The other nodes list the user under the new name and role too.
        self.announce_user(&state, &identity.user_id, None);
        Ok(())
    }

    /// The user object of a session's user.
    pub fn user_of(&self, id: SessionId) -> Result<UserObject, HubError> {
        let state = self.state();
        let session = state.sessions.get(&id).ok_or(HubError::SessionGone)?;
        state
            .user_object(&session.user_id)
            .ok_or(HubError::SessionGone)
    }

    /// Every online user, oldest connection first.
    pub fn online_users(&self) -> Vec<OnlineUser> {
        self.state().online_users()
    }

    /// Who is online with which connections, and the rooms, bounded by `limits` (for the
    /// operator dashboard; one walk over the maps under the lock).
    pub fn overview(&self, limits: OverviewLimits) -> LiveOverview {
        self.state().overview(limits)
    }

    /// Distinct users online (in a cluster, on any node).
    pub fn active_users_count(&self) -> usize {
        self.state().online_count()
    }

    /// Sends an event to one session. Returns whether it was queued.
    pub fn send_to_session(&self, id: SessionId, event: Arc<Event>) -> bool {
        self.state().send_to([id], &event) == 1
    }

    /// Makes the session's user a member of `room` (stored). Tells the room's other
    /// connections `user-joined-room` when the user was not a member yet. Answers whether the
    /// membership is new, or, when the room's policy asks the application and `hook` says it
    /// was not asked yet, [`JoinOutcome::AskHook`] with the identity to ask about: the caller
    /// asks outside the lock and comes back with [`HookAnswer::Allowed`].
    pub fn join_room(
        &self,
        id: SessionId,
        room: &RoomName,
        max_rooms: usize,
        hook: HookAnswer,
    ) -> Result<JoinOutcome, HubError> {
        let mut state = self.state();
        let user_id = state.user_id_of(id)?;
        // Before anything that depends on the room, so that a refusal says nothing about it.
        let verdict = state.may_join(room, id)?;
        if state.is_member(room, &user_id) {
            return Ok(JoinOutcome::Joined { new: false });
        }
        if verdict == JoinVerdict::AskHook && hook == HookAnswer::NotAsked {
            let identity = state.users.get(&user_id).map(|u| u.identity.clone());
            return identity
                .map(JoinOutcome::AskHook)
                .ok_or(HubError::SessionGone);
        }
        let count = state.memberships.get(&user_id).map_or(0, |r| r.len());
        if count >= max_rooms {
            return Err(HubError::TooManyRooms(max_rooms));
        }
        self.begin_membership(&mut state, room, &user_id, Beginning::Joined(id));
        Ok(JoinOutcome::Joined { new: true })
    }

    /// Ends the memberships of `user_id` that its newest token does not grant (stored as
    /// left; the room's other members hear `user-left-room`, the other nodes too) and tells
    /// the user's connections `left-room`, but `except`: a new connection, which hears them
    /// after its `connected`, from the `left-room` events returned.
    fn drop_ungranted(
        &self,
        state: &mut State,
        user_id: &Arc<str>,
        except: Option<SessionId>,
    ) -> Vec<Arc<Event>> {
        let rooms = state.ungranted_rooms(user_id);
        let ended = Ending::Ended {
            reason: LeftReason::NotGranted,
            except,
        };
        rooms
            .iter()
            .filter_map(|room| self.end_membership(state, room, user_id, ended))
            .collect()
    }

    /// Ends the membership of the session's user in `room` (stored) and tells the room's
    /// other connections `user-left-room`.
    pub fn leave_room(&self, id: SessionId, room: &RoomName) -> Result<(), HubError> {
        let mut state = self.state();
        let user_id = state.user_id_of(id)?;
        if !state.is_member(room, &user_id) {
            return Err(HubError::NotMember(room.to_string()));
        }
        self.end_membership(&mut state, room, &user_id, Ending::Left(id));
        Ok(())
    }

    /// The rooms whose stored history a reader holding `identity` may not read although its
    /// user is still a member (a token that no longer grants them, a role no longer
    /// allowed): `sync`, the catch-up and the REST listing leave them out until the
    /// membership itself ends (at the user's next connection or token renewal).
    pub fn unreadable_rooms(&self, identity: &Identity) -> Vec<String> {
        self.state()
            .rooms_not_allowed(identity)
            .into_iter()
            .map(|room| room.as_str().to_owned())
            .collect()
    }

    /// Asks every connection to close (shutdown, or an operator's kick).
    pub fn close_all(&self, reason: CloseReason) {
        for session in self.state().sessions.values() {
            session.outbound.close(reason);
        }
    }

    /// Asks every connection to close and its client to come back after a delay drawn
    /// uniformly from `[RETURN_FLOOR, RETURN_FLOOR + spread]`, so that a restart's returns do
    /// not all land in the same second. A zero spread gives no hint.
    pub fn close_all_spread(&self, reason: CloseReason, spread: Duration) {
        if spread.is_zero() {
            return self.close_all(reason);
        }
        let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        for session in self.state().sessions.values() {
            let mut bytes = [0_u8; 8];
            // No randomness, no spread: every client then comes back at once, as before.
            let draw = getrandom::fill(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes));
            let after = RETURN_FLOOR + Duration::from_millis(draw % (spread_ms.saturating_add(1)));
            session.outbound.close_with_retry(reason, after);
        }
    }

    /// Asks every connection of `user_id` to close; a kick (reason `kicked`) closes them on
    /// every node of a cluster. Returns how many (other nodes' as last heard).
    pub fn close_user(&self, user_id: &str, reason: CloseReason) -> usize {
        let here = self.close_local_user(user_id, reason);
        if reason != CloseReason::Kicked || !self.is_clustered() {
            return here;
        }
        let elsewhere = self.state().remote.sessions_of(user_id);
        self.announce(ClusterEvent::Kick {
            user_id: user_id.to_owned(),
        });
        here + elsewhere
    }

    /// The user object of an identity: live figures when the user is connected, otherwise
    /// `sessions: 0` and `connectedAt` now (a REST caller need not be connected).
    pub fn user_object_of(&self, identity: &Identity) -> UserObject {
        self.state()
            .cluster_user_object(&identity.user_id)
            .unwrap_or_else(|| state::user_object_of(identity, SystemTime::now()))
    }

    /// Live connections.
    pub fn session_count(&self) -> usize {
        self.state().sessions.len()
    }
}
