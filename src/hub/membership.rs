//! Room membership made and ended by the server (issue 21, item 3), and the one way any
//! membership ends.
//!
//! The application (REST, the embedded API) adds a user to a room or removes it, online or
//! not, without a session: [`Hub::add_member`], [`Hub::remove_member`], and reads who is in a
//! room and where a user is ([`Hub::room_members`], [`Hub::user_rooms`]). A membership the
//! application made is a *server membership* (`State::server_members`): it holds whatever the
//! room's join rule and the user's token say, which is how a `"join": "members"` room gets
//! its members. It is stored with `by_server` (and, in a room whose history is `since_join`,
//! where the member's history starts), so it survives a restart (`Hub::load`).
//!
//! Effects are live, on every node: the user's connections hear `joined-room` /
//! `left-room { reason: "removed" }`, the room's other connections `user-joined-room` /
//! `user-left-room`, and the other nodes apply the same change to their connections
//! (`cluster.rs`, `RoomChange`). Delivery starts and stops with the membership maps, which
//! are the recipient rule's input: changing them under the hub lock is the whole of it.
//!
//! [`Hub::end_membership`] is the shape every ending shares (a user's `leave-room`, a token
//! that no longer grants the room, the application's removal): the maps, the room's
//! `user-left-room`, the store, the other nodes, and the user's `left-room` when the server
//! ended it.

use std::sync::Arc;
use std::time::SystemTime;

use super::cluster::{ClusterEvent, RoomChange};
use super::state::State;
use super::{Event, Hub, HubError, SessionId};
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{
    self, LeftReason, RoomConfirmation, RoomDropped, RoomPresence, UserObject,
};

/// One member of a room, as [`Hub::room_members`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member's user id.
    pub user_id: String,
    /// Whether the user has a live connection (in a cluster, on any node).
    pub online: bool,
    /// Whether the application added it (it then holds whatever the room's rules say).
    pub by_server: bool,
}

/// How a membership begins, for [`Hub::begin_membership`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Beginning {
    /// The user's own `join-room` from this connection, which replies `joined-room` itself;
    /// the user's other connections hear `user-joined-room` as the room does.
    Joined(SessionId),
    /// The application added the user; `new` when it was no member before (an existing
    /// self-join only becomes the application's: stored and told to the other nodes, nobody
    /// else hears of it).
    Added { new: bool },
}

/// How a membership ends, for [`Hub::end_membership`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Ending {
    /// The user's own `leave-room` from this connection, which replies `left-room` itself;
    /// the user's other connections hear `user-left-room` as the room does.
    Left(SessionId),
    /// The server ended it: every connection of the user hears `left-room` with `reason`,
    /// but `except` (a connection still opening: it hears it after its `connected`).
    Ended {
        reason: LeftReason,
        except: Option<SessionId>,
    },
}

impl Hub {
    /// Makes `user_id` a member of `room` on the application's behalf (REST, the embedded
    /// API): no session is needed, and the user may be offline or may never have connected
    /// (it becomes a known user, so private messages to it are queued). Stored as a server
    /// membership, which holds whatever the room's join rule and the user's token say. When
    /// the membership is new, the room's other connections hear `user-joined-room` and every
    /// connection of the user `joined-room`, on every node; an existing self-join becomes a
    /// server membership silently. Answers whether the membership is new.
    pub fn add_member(&self, room: &RoomName, user_id: &str) -> Result<bool, HubError> {
        let mut state = self.state();
        let user_id = state
            .known_users
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| Arc::from(user_id));
        if state.is_server_member(room, &user_id) {
            return Ok(false);
        }
        let new = !state.is_member(room, &user_id);
        state.known_users.insert(user_id.clone());
        self.begin_membership(&mut state, room, &user_id, Beginning::Added { new });
        Ok(new)
    }

    /// Ends `user_id`'s membership of `room` on the application's behalf, whoever made it:
    /// every connection of the user hears `left-room { reason: "removed" }` and nothing of
    /// the room after it (on every node), the room hears `user-left-room`, and it is stored.
    /// Answers whether the user was a member.
    pub fn remove_member(&self, room: &RoomName, user_id: &str) -> Result<bool, HubError> {
        let mut state = self.state();
        let Some(user_id) = state.rooms.get(room).and_then(|m| m.get(user_id)).cloned() else {
            return Ok(false);
        };
        let removed = Ending::Ended {
            reason: LeftReason::Removed,
            except: None,
        };
        self.end_membership(&mut state, room, &user_id, removed);
        Ok(true)
    }

    /// The members of `room`, online or not, by user id.
    pub fn room_members(&self, room: &RoomName) -> Vec<MemberInfo> {
        let state = self.state();
        state
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .map(|user_id| MemberInfo {
                user_id: user_id.to_string(),
                online: state.is_online_anywhere(user_id),
                by_server: state.is_server_member(room, user_id),
            })
            .collect()
    }

    /// The rooms `user_id` is a member of, by name.
    pub fn user_rooms(&self, user_id: &str) -> Vec<String> {
        self.state().rooms_of(user_id)
    }

    /// Begins a membership, the same way whoever begins it (see [`Beginning`]): into the
    /// maps (so delivery starts at once), `user-joined-room` to the room's other connections
    /// when it is new, stored (with where the member's history starts, as the room's policy
    /// says), told to the other nodes, and, when the application added the user, `joined-room`
    /// to the user's connections.
    pub(super) fn begin_membership(
        &self,
        state: &mut State,
        room: &RoomName,
        user_id: &Arc<str>,
        how: Beginning,
    ) {
        let user = member_object(state, user_id);
        let at = wire::now();
        let presence = || {
            Event::new(
                "user-joined-room",
                &RoomPresence {
                    user: &user,
                    room: room.as_str(),
                    timestamp: at.clone(),
                },
            )
        };
        let by_server = match how {
            Beginning::Joined(session) => {
                // Told after the add, so that the user's other connections hear it too.
                state.add_member(room, user_id);
                state.send_to_room(room, &presence(), Some(session));
                false
            }
            Beginning::Added { new } => {
                if new {
                    // Before the add: the room's connections are then exactly the others; the
                    // user's own hear `joined-room` instead.
                    state.send_to_room(room, &presence(), None);
                }
                state.add_server_member(room, user_id);
                if new {
                    let joined = Event::new("joined-room", &RoomConfirmation::added(room.as_str()));
                    let own: Vec<SessionId> = state.sessions_of(user_id, None).collect();
                    state.send_to(own, &joined);
                }
                true
            }
        };
        let how = state.access.joined_how(room.as_str(), &at, by_server);
        self.inner
            .store
            .room_joined(room.as_str(), user_id, &at, how);
        self.announce(ClusterEvent::Room(RoomChange::joined(
            room, user, at, by_server,
        )));
    }

    /// Ends a membership, the same way whoever ends it (see [`Ending`]): out of the maps (so
    /// delivery stops at once), `user-left-room` to the room's connections, stored as left,
    /// told to the other nodes, and, when the server ended it, `left-room` with the reason to
    /// the user's connections; that event is returned, for a connection told later.
    pub(super) fn end_membership(
        &self,
        state: &mut State,
        room: &RoomName,
        user_id: &Arc<str>,
        how: Ending,
    ) -> Option<Arc<Event>> {
        let user = member_object(state, user_id);
        let at = wire::now();
        let presence = Event::new(
            "user-left-room",
            &RoomPresence {
                user: &user,
                room: room.as_str(),
                timestamp: at.clone(),
            },
        );
        let reason = match how {
            Ending::Left(session) => {
                // Told before the removal, so that the user's other connections hear it too.
                state.send_to_room(room, &presence, Some(session));
                state.remove_member(room, user_id);
                None
            }
            Ending::Ended { reason, .. } => {
                // Removed first: the room's remaining connections are exactly the others;
                // the user's own hear `left-room` instead.
                state.remove_member(room, user_id);
                state.send_to_room(room, &presence, None);
                Some(reason)
            }
        };
        let stored_reason = match reason {
            None => "left",
            Some(LeftReason::NotGranted) => "not_granted",
            Some(LeftReason::Removed) => "removed",
        };
        self.inner
            .store
            .room_left(room.as_str(), user_id, stored_reason, &at);
        self.announce(ClusterEvent::Room(RoomChange::left(room, user, at, reason)));
        let Ending::Ended { reason, except } = how else {
            return None;
        };
        let left = Event::new("left-room", &RoomDropped::new(room.as_str(), reason));
        let own: Vec<SessionId> = state.sessions_of(user_id, except).collect();
        state.send_to(own, &left);
        Some(left)
    }
}

/// The user object of a member, online or not: live figures across the cluster when it is
/// connected somewhere; otherwise `sessions: 0`, and the user id for its name with an empty
/// role, since the hub keeps no names of offline users (the store has them, but a read there
/// cannot happen under the hub lock).
fn member_object(state: &State, user_id: &str) -> UserObject {
    state
        .cluster_user_object(user_id)
        .unwrap_or_else(|| UserObject {
            user_id: user_id.to_owned(),
            username: user_id.to_owned(),
            role: String::new(),
            connected_at: wire::timestamp(SystemTime::now()),
            sessions: 0,
        })
}
