//! The hub: the one owner of live state (sessions, users, rooms) and the only place that
//! routes. Transports, the REST API and the embedded API are all callers of [`Hub`].
//!
//! State sits behind one `std::sync::Mutex`: every operation under it is short and never
//! awaits (sending is a non-blocking `try_send` into each connection's bounded queue), so a
//! plain mutex is cheaper than an async one and cannot be held across an `.await`.
//! Durable records go to the [`Store`] writer without waiting for the disk.

mod event;
mod outbound;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

pub use event::Event;
pub use outbound::{CloseReason, Closer, Outbound, OutboundQueue};
use state::{SessionEntry, State, UserEntry};

use crate::auth::Identity;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, Connected, Presence, RoomPresence, UserObject};
use crate::store::{Store, WriteOp};

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
    /// A private message to a user who is not connected.
    #[error("user {0:?} is not connected")]
    UserOffline(String),
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
    /// A hub that records sessions in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                store,
            }),
        }
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

    /// Registers a new connection: sends it `connected`, tells everyone else
    /// `user-connected` if this is the user's first connection, and records the session.
    pub fn connect(&self, identity: Identity, meta: SessionMeta, outbound: Outbound) -> SessionId {
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
            .or_insert_with(|| UserEntry::new(identity.clone()));
        user.identity = identity.clone();
        user.sessions.push(id);
        let first_connection = user.sessions.len() == 1;
        let rooms: Vec<String> = user.rooms.iter().map(|r| r.as_str().to_owned()).collect();
        state.sessions.insert(
            id,
            SessionEntry {
                user_id: user_id.clone(),
                outbound: outbound.clone(),
                connected_at: now,
            },
        );
        let user_object = state
            .user_object(&user_id)
            .unwrap_or_else(|| unreachable_user(&identity));
        outbound.send(Event::new(
            "connected",
            &Connected {
                message: format!("Welcome, {}", identity.username),
                user: &user_object,
                timestamp: at.clone(),
                rooms,
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
        store.write(WriteOp::SeenUser {
            user_id: user_id.to_string(),
            username: identity.username.to_string(),
            role: identity.role.to_string(),
            at: at.clone(),
        });
        store.write(WriteOp::OpenSession {
            session_id: id.0,
            user_id: user_id.to_string(),
            transport: meta.transport.as_str(),
            remote_addr: meta.remote_addr.map(|a| a.to_string()),
            user_agent: meta.user_agent,
            at,
        });
        id
    }

    /// Forgets a connection and records why it ended. On the user's last connection, its
    /// live room memberships end and everyone else is told `user-disconnected`.
    pub fn disconnect(&self, id: SessionId, reason: CloseReason) {
        let at = wire::now();
        let mut state = self.state();
        let Some(session) = state.sessions.remove(&id) else {
            return;
        };
        // Handed to the store under the lock, before anyone hears of the departure: a read
        // that follows a `user-disconnected` (after a flush) sees the closed row.
        self.inner.store.write(WriteOp::CloseSession {
            session_id: id.0,
            at: at.clone(),
            reason: reason.as_str(),
        });
        let user_id = session.user_id;
        let last = match state.users.get_mut(&user_id) {
            Some(user) => {
                user.sessions.retain(|s| *s != id);
                user.sessions.is_empty()
            }
            None => false,
        };
        if last {
            // The user object is built before removal so it still names the user; it reports
            // the connection that just ended.
            let mut user_object = state
                .user_object(&user_id)
                .unwrap_or_else(|| unreachable_id(&user_id));
            user_object.connected_at = wire::timestamp(session.connected_at);
            if let Some(user) = state.users.remove(&user_id) {
                for room in &user.rooms {
                    state.remove_member(room, &user_id);
                }
            }
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

    /// Online users per role.
    pub fn users_by_role(&self) -> BTreeMap<String, usize> {
        let mut by_role = BTreeMap::new();
        for user in self.state().users.values() {
            *by_role.entry(user.identity.role.to_string()).or_insert(0) += 1;
        }
        by_role
    }

    /// Sends an event to one session. Returns whether it was queued.
    pub fn send_to_session(&self, id: SessionId, event: Arc<Event>) -> bool {
        let state = self.state();
        state
            .sessions
            .get(&id)
            .is_some_and(|s| s.outbound.send(event))
    }

    /// Sends an event to every connection but `except`. Returns how many took it.
    pub fn broadcast(&self, event: &Arc<Event>, except: Option<SessionId>) -> usize {
        let state = self.state();
        state
            .sessions
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .filter(|(_, s)| s.outbound.send(event.clone()))
            .count()
    }

    /// Sends an event to every connection of a user. Returns how many took it.
    pub fn send_to_user(&self, user_id: &str, event: &Arc<Event>) -> usize {
        let state = self.state();
        state.send_to_user(user_id, event, None)
    }

    /// A private message: to every connection of `to`, or [`HubError::UserOffline`].
    pub fn send_private(&self, to: &str, event: &Arc<Event>) -> Result<usize, HubError> {
        let state = self.state();
        if !state.users.contains_key(to) {
            return Err(HubError::UserOffline(to.to_owned()));
        }
        Ok(state.send_to_user(to, event, None))
    }

    /// Sends an event to every connection whose user has `role`. Returns how many took it.
    pub fn send_to_role(&self, role: &str, event: &Arc<Event>) -> usize {
        let state = self.state();
        state
            .users
            .values()
            .filter(|u| &*u.identity.role == role)
            .flat_map(|u| u.sessions.iter())
            .filter_map(|id| state.sessions.get(id))
            .filter(|s| s.outbound.send(event.clone()))
            .count()
    }

    /// Makes the session's user a member of `room`. Tells the room's other members
    /// `user-joined-room` when the user was not a member yet. Returns whether it was new.
    pub fn join_room(
        &self,
        id: SessionId,
        room: &RoomName,
        max_rooms: usize,
    ) -> Result<bool, HubError> {
        let mut state = self.state();
        let user_id = state.user_id_of(id)?;
        let user = state.users.get_mut(&user_id).ok_or(HubError::SessionGone)?;
        if user.rooms.contains(room) {
            return Ok(false);
        }
        if user.rooms.len() >= max_rooms {
            return Err(HubError::TooManyRooms(max_rooms));
        }
        user.rooms.insert(room.clone());
        state
            .rooms
            .entry(room.clone())
            .or_default()
            .insert(user_id.clone());
        let user_object = state.user_object(&user_id).ok_or(HubError::SessionGone)?;
        let event = Event::new(
            "user-joined-room",
            &RoomPresence {
                user: &user_object,
                room: room.as_str(),
                timestamp: wire::now(),
            },
        );
        state.send_to_room(room, &event, Some(id));
        Ok(true)
    }

    /// Ends the membership of the session's user in `room` and tells the other members
    /// `user-left-room`.
    pub fn leave_room(&self, id: SessionId, room: &RoomName) -> Result<(), HubError> {
        let mut state = self.state();
        let user_id = state.user_id_of(id)?;
        let user_object = state.user_object(&user_id).ok_or(HubError::SessionGone)?;
        if !state.is_member(room, &user_id) {
            return Err(HubError::NotMember(room.to_string()));
        }
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
        if let Some(user) = state.users.get_mut(&user_id) {
            user.rooms.remove(room);
        }
        state.remove_member(room, &user_id);
        Ok(())
    }

    /// Sends a room message to every connection in `room` but the sender's. The sender must
    /// be a member.
    pub fn send_to_room_from(
        &self,
        id: SessionId,
        room: &RoomName,
        event: &Arc<Event>,
    ) -> Result<usize, HubError> {
        let state = self.state();
        let user_id = state.user_id_of(id)?;
        if !state.is_member(room, &user_id) {
            return Err(HubError::NotMember(room.to_string()));
        }
        Ok(state.send_to_room(room, event, Some(id)))
    }

    /// Asks every connection to close (shutdown, or an operator's kick).
    pub fn close_all(&self, reason: CloseReason) {
        for session in self.state().sessions.values() {
            session.outbound.close(reason);
        }
    }

    /// Live connections.
    pub fn session_count(&self) -> usize {
        self.state().sessions.len()
    }
}

fn unreachable_user(identity: &Identity) -> UserObject {
    unreachable_id(&identity.user_id)
}

// The user was inserted under the same lock just before; this only keeps the code total.
fn unreachable_id(user_id: &str) -> UserObject {
    UserObject {
        user_id: user_id.to_owned(),
        username: user_id.to_owned(),
        role: String::new(),
        connected_at: wire::now(),
        sessions: 0,
    }
}
