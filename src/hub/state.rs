//! The maps behind the hub's lock and the small queries over them. Nothing here locks,
//! awaits or touches the store.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use super::{Event, HubError, Outbound, SessionId};
use crate::auth::Identity;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, UserObject};

/// One live connection.
pub(super) struct SessionEntry {
    pub user_id: Arc<str>,
    pub outbound: Outbound,
    pub connected_at: SystemTime,
}

/// One online user.
pub(super) struct UserEntry {
    pub identity: Identity,
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionId>,
    pub rooms: BTreeSet<RoomName>,
}

impl UserEntry {
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            sessions: Vec::new(),
            rooms: BTreeSet::new(),
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub sessions: HashMap<SessionId, SessionEntry>,
    pub users: HashMap<Arc<str>, UserEntry>,
    /// Room → online member users.
    pub rooms: HashMap<RoomName, BTreeSet<Arc<str>>>,
}

impl State {
    pub fn user_id_of(&self, id: SessionId) -> Result<Arc<str>, HubError> {
        self.sessions
            .get(&id)
            .map(|s| s.user_id.clone())
            .ok_or(HubError::SessionGone)
    }

    pub fn user_connected_at(&self, user_id: &str) -> Option<SystemTime> {
        let user = self.users.get(user_id)?;
        let oldest = user.sessions.first()?;
        Some(self.sessions.get(oldest)?.connected_at)
    }

    pub fn user_object(&self, user_id: &str) -> Option<UserObject> {
        let user = self.users.get(user_id)?;
        Some(UserObject {
            user_id: user.identity.user_id.to_string(),
            username: user.identity.username.to_string(),
            role: user.identity.role.to_string(),
            connected_at: wire::timestamp(self.user_connected_at(user_id)?),
            sessions: user.sessions.len(),
        })
    }

    pub fn is_member(&self, room: &RoomName, user_id: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|members| members.contains(user_id))
    }

    pub fn remove_member(&mut self, room: &RoomName, user_id: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(user_id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    pub fn send_to_user(
        &self,
        user_id: &str,
        event: &Arc<Event>,
        except: Option<SessionId>,
    ) -> usize {
        let Some(user) = self.users.get(user_id) else {
            return 0;
        };
        user.sessions
            .iter()
            .filter(|id| Some(**id) != except)
            .filter_map(|id| self.sessions.get(id))
            .filter(|s| s.outbound.send(event.clone()))
            .count()
    }

    pub fn send_to_all_but_user(&self, event: &Arc<Event>, user_id: &str) -> usize {
        self.sessions
            .values()
            .filter(|s| &*s.user_id != user_id)
            .filter(|s| s.outbound.send(event.clone()))
            .count()
    }

    pub fn send_to_room(
        &self,
        room: &RoomName,
        event: &Arc<Event>,
        except: Option<SessionId>,
    ) -> usize {
        let Some(members) = self.rooms.get(room) else {
            return 0;
        };
        members
            .iter()
            .map(|user_id| self.send_to_user(user_id, event, except))
            .sum()
    }
}
