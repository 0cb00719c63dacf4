//! The hub: the one owner of live state (sessions, users, rooms) and the only place that
//! routes. Transports, the REST API and the embedded API are all callers of [`Hub`].
//!
//! State sits behind one `std::sync::Mutex`: every operation under it is short and never
//! awaits (sending is a non-blocking `try_send` into each connection's bounded queue), so a
//! plain mutex is cheaper than an async one and cannot be held across an `.await`.
//! Durable records go to the [`Store`] writer without waiting for the disk.

mod event;
mod outbound;
mod publish;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

pub use event::Event;
pub use outbound::{CloseReason, Closer, DirectSink, Outbound, OutboundQueue, SinkError};
pub use publish::{Publish, Published, Target};
use state::{SessionEntry, State, UserEntry};

use crate::auth::Identity;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, Connected, Presence, RoomPresence, UserObject};
use crate::store::{NewSession, Store, StoreError};

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

/// A registered connection.
#[derive(Debug, Clone, Copy)]
pub struct Registered {
    /// The new session.
    pub session: SessionId,
    /// The last message id allocated when it registered: stored messages up to this id are
    /// replayed to it; later ones reach it live (held until the replay ends).
    pub replay_until: u64,
}

/// Live state and routing; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    store: Store,
}

/// A user that is online, as the statistics need it.
#[derive(Debug, Clone)]
pub struct OnlineUser {
    /// The user object.
    pub user: UserObject,
    /// Oldest live connection.
    pub connected_at: SystemTime,
}

impl Hub {
    /// A hub over `store`, with the stored room memberships and known users loaded.
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let live = store.load_live_state().await?;
        let mut state = State::default();
        for (room, user_id) in live.memberships {
            match RoomName::parse(&room) {
                Ok(room) => state.add_member(&room, &Arc::from(user_id)),
                Err(e) => {
                    tracing::warn!(room, error = %e, "ignoring a stored room with a bad name")
                }
            }
        }
        state.known_users = live.known_users.into_iter().map(Arc::from).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                store,
            }),
        })
    }

    /// The store, for commands that read history.
    pub fn store(&self) -> &Store {
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
    /// tells everyone else `user-connected` if this is the user's first connection, and
    /// records the session. Live events for it are held until [`Hub::end_replay`], so that
    /// the stored messages it is owed arrive first; at most `hold_limit` are held.
    pub fn connect(
        &self,
        identity: Identity,
        meta: SessionMeta,
        outbound: Outbound,
        hold_limit: usize,
    ) -> Registered {
        let now = SystemTime::now();
        let at = wire::timestamp(now);
        let store = &self.inner.store;
        let id = SessionId(store.allocate_session_id());
        let mut state = self.state();
        // Refresh the name and role from the newest token: a user's role can change.
        let user_id = identity.user_id.clone();
        let user = state
            .users
            .entry(user_id.clone())
            .or_insert_with(|| UserEntry {
                identity: identity.clone(),
                sessions: Vec::new(),
            });
        user.identity = identity.clone();
        user.sessions.push(id);
        let first_connection = user.sessions.len() == 1;
        state.known_users.insert(user_id.clone());
        state.sessions.insert(
            id,
            SessionEntry {
                user_id: user_id.clone(),
                outbound: outbound.clone(),
                connected_at: now,
                held: std::cell::RefCell::new(Some(Vec::new())),
                hold_limit,
            },
        );
        let user_object = state
            .user_object(&user_id)
            .unwrap_or_else(|| user_object_from(&identity));
        outbound.send(Event::new(
            "connected",
            &Connected {
                message: format!("Welcome, {}", identity.username),
                user: &user_object,
                timestamp: at.clone(),
                rooms: state.rooms_of(&user_id),
            },
        ));
        if first_connection {
            let presence = Event::new(
                "user-connected",
                &Presence {
                    user: &user_object,
                    timestamp: at.clone(),
                    active_users_count: state.users.len(),
                },
            );
            state.send_to_all_but_user(&presence, &user_id);
        }
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
        }
    }

    /// Ends a connection's catch-up: the live events held meanwhile go out, in order.
    pub fn end_replay(&self, id: SessionId) {
        let state = self.state();
        if let Some(session) = state.sessions.get(&id)
            && let Some(held) = session.held.borrow_mut().take()
        {
            for event in held {
                if !session.outbound.send(event) {
                    break;
                }
            }
        }
    }

    /// Forgets a connection and records why it ended. On the user's last connection, everyone
    /// else is told `user-disconnected`. Room memberships stay: they belong to the user.
    pub fn disconnect(&self, id: SessionId, reason: CloseReason) {
        let at = wire::now();
        let mut state = self.state();
        let Some(user_id) = state.sessions.get(&id).map(|s| s.user_id.clone()) else {
            return;
        };
        // Taken while the session still counts, so that it names the user properly.
        let user_object = state.user_object(&user_id);
        state.sessions.remove(&id);
        // Handed to the store under the lock, before anyone hears of the departure: a read
        // that follows a `user-disconnected` (after a flush) sees the closed row.
        self.inner.store.session_closed(id.0, reason.as_str(), &at);
        let last = match state.users.get_mut(&user_id) {
            Some(user) => {
                user.sessions.retain(|s| *s != id);
                user.sessions.is_empty()
            }
            None => false,
        };
        if last && let Some(mut user_object) = user_object {
            // The user as they were: `connectedAt` of the connection that just ended, and
            // no live sessions left.
            user_object.sessions = 0;
            state.users.remove(&user_id);
            let presence = Event::new(
                "user-disconnected",
                &Presence {
                    user: &user_object,
                    timestamp: at.clone(),
                    active_users_count: state.users.len(),
                },
            );
            state.send_to_all_but_user(&presence, &user_id);
        }
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
        let state = self.state();
        let mut users: Vec<OnlineUser> = state
            .users
            .keys()
            .filter_map(|id| {
                Some(OnlineUser {
                    user: state.user_object(id)?,
                    connected_at: state.user_connected_at(id)?,
                })
            })
            .collect();
        users.sort_by(|a, b| {
            (a.connected_at, &a.user.user_id).cmp(&(b.connected_at, &b.user.user_id))
        });
        users
    }

    /// Distinct users online.
    pub fn active_users_count(&self) -> usize {
        self.state().users.len()
    }

    /// Sends an event to one session. Returns whether it was queued.
    pub fn send_to_session(&self, id: SessionId, event: Arc<Event>) -> bool {
        let state = self.state();
        state.sessions.get(&id).is_some_and(|s| s.send(event))
    }

    /// Makes the session's user a member of `room` (stored). Tells the room's other
    /// connections `user-joined-room` when the user was not a member yet. Returns whether
    /// the membership is new.
    pub fn join_room(
        &self,
        id: SessionId,
        room: &RoomName,
        max_rooms: usize,
    ) -> Result<bool, HubError> {
        let mut state = self.state();
        let user_id = state.user_id_of(id)?;
        if state.is_member(room, &user_id) {
            return Ok(false);
        }
        let count = state.memberships.get(&user_id).map_or(0, |r| r.len());
        if count >= max_rooms {
            return Err(HubError::TooManyRooms(max_rooms));
        }
        state.add_member(room, &user_id);
        let at = wire::now();
        self.inner.store.room_joined(room.as_str(), &user_id, &at);
        let user_object = state.user_object(&user_id).ok_or(HubError::SessionGone)?;
        let event = Event::new(
            "user-joined-room",
            &RoomPresence {
                user: &user_object,
                room: room.as_str(),
                timestamp: at,
            },
        );
        state.send_to_room(room, &event, Some(id));
        Ok(true)
    }

    /// Ends the membership of the session's user in `room` (stored) and tells the room's
    /// other connections `user-left-room`.
    pub fn leave_room(&self, id: SessionId, room: &RoomName) -> Result<(), HubError> {
        let mut state = self.state();
        let user_id = state.user_id_of(id)?;
        if !state.is_member(room, &user_id) {
            return Err(HubError::NotMember(room.to_string()));
        }
        let user_object = state.user_object(&user_id).ok_or(HubError::SessionGone)?;
        let event = Event::new(
            "user-left-room",
            &RoomPresence {
                user: &user_object,
                room: room.as_str(),
                timestamp: wire::now(),
            },
        );
        // Told before removal so the user's own other connections hear it too.
        state.send_to_room(room, &event, Some(id));
        state.remove_member(room, &user_id);
        self.inner.store.room_left(room.as_str(), &user_id);
        Ok(())
    }

    /// Asks every connection to close (shutdown, or an operator's kick).
    pub fn close_all(&self, reason: CloseReason) {
        for session in self.state().sessions.values() {
            session.outbound.close(reason);
        }
    }

    /// Asks every connection of `user_id` to close. Returns how many.
    pub fn close_user(&self, user_id: &str, reason: CloseReason) -> usize {
        let state = self.state();
        let sessions: Vec<SessionId> = state.sessions_of(user_id, None).collect();
        for id in &sessions {
            if let Some(s) = state.sessions.get(id) {
                s.outbound.close(reason);
            }
        }
        sessions.len()
    }

    /// The user object of an identity: live figures when the user is connected, otherwise
    /// `sessions: 0` and `connectedAt` now (a REST caller need not be connected).
    pub fn user_object_of(&self, identity: &Identity) -> UserObject {
        self.state()
            .user_object(&identity.user_id)
            .unwrap_or_else(|| {
                let mut user = user_object_from(identity);
                user.sessions = 0;
                user
            })
    }

    /// Live connections.
    pub fn session_count(&self) -> usize {
        self.state().sessions.len()
    }
}

/// The user object straight from the token; only used should the maps ever disagree (the
/// user was inserted under the same lock just before).
fn user_object_from(identity: &Identity) -> UserObject {
    UserObject {
        user_id: identity.user_id.to_string(),
        username: identity.username.to_string(),
        role: identity.role.to_string(),
        connected_at: wire::now(),
        sessions: 1,
    }
}
