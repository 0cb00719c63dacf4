//! The maps behind the hub's lock and the small queries over them. Nothing here locks,
//! awaits or touches the store.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::publish::Published;
use super::{CloseReason, Event, HubError, Outbound, SessionId};
use crate::auth::Identity;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, UserObject};

/// One live connection.
pub(super) struct SessionEntry {
    pub user_id: Arc<str>,
    pub outbound: Outbound,
    pub connected_at: SystemTime,
    /// While the connection catches up on stored messages, live events wait here so that
    /// they arrive after what they follow. `None` once caught up.
    pub held: RefCell<Option<Vec<Arc<Event>>>>,
    /// Most events held before the connection counts as a slow consumer.
    pub hold_limit: usize,
}

impl SessionEntry {
    /// Queues an event for this connection (or holds it during catch-up).
    pub fn send(&self, event: Arc<Event>) -> bool {
        if let Some(held) = self.held.borrow_mut().as_mut() {
            if held.len() >= self.hold_limit {
                self.outbound.close(CloseReason::SlowConsumer);
                return false;
            }
            held.push(event);
            return true;
        }
        self.outbound.send(event)
    }
}

/// One online user.
pub(super) struct UserEntry {
    pub identity: Identity,
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionId>,
}

/// Idempotency keys seen in this run, oldest evicted first; older keys are found in the
/// database (their messages are long committed).
#[derive(Default)]
pub(super) struct RecentKeys {
    map: HashMap<(Arc<str>, String), Published>,
    order: VecDeque<(Arc<str>, String)>,
}

/// Keys remembered in memory.
const RECENT_KEYS: usize = 100_000;

impl RecentKeys {
    pub fn get(&self, sender: &Arc<str>, key: &str) -> Option<&Published> {
        self.map.get(&(sender.clone(), key.to_owned()))
    }

    pub fn insert(&mut self, sender: Arc<str>, key: String, published: Published) {
        if self.order.len() >= RECENT_KEYS
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back((sender.clone(), key.clone()));
        self.map.insert((sender, key), published);
    }
}

#[derive(Default)]
pub(super) struct State {
    pub sessions: HashMap<SessionId, SessionEntry>,
    /// Online users.
    pub users: HashMap<Arc<str>, UserEntry>,
    /// Room → member users, online or not (membership is stored and outlives connections).
    pub rooms: HashMap<RoomName, BTreeSet<Arc<str>>>,
    /// User → rooms, online or not.
    pub memberships: HashMap<Arc<str>, BTreeSet<RoomName>>,
    /// Every user ever seen (private messages to others are refused).
    pub known_users: HashSet<Arc<str>>,
    pub recent_keys: RecentKeys,
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

    pub fn rooms_of(&self, user_id: &str) -> Vec<String> {
        self.memberships
            .get(user_id)
            .map(|rooms| rooms.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default()
    }

    pub fn is_member(&self, room: &RoomName, user_id: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|members| members.contains(user_id))
    }

    pub fn add_member(&mut self, room: &RoomName, user_id: &Arc<str>) {
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(user_id.clone());
        self.memberships
            .entry(user_id.clone())
            .or_default()
            .insert(room.clone());
    }

    pub fn remove_member(&mut self, room: &RoomName, user_id: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(user_id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(rooms) = self.memberships.get_mut(user_id) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.memberships.remove(user_id);
            }
        }
    }

    /// Sessions of a user, but `except`.
    pub fn sessions_of<'a>(
        &'a self,
        user_id: &str,
        except: Option<SessionId>,
    ) -> impl Iterator<Item = SessionId> + 'a {
        self.users
            .get(user_id)
            .into_iter()
            .flat_map(|u| u.sessions.iter().copied())
            .filter(move |id| Some(*id) != except)
    }

    /// Sends to the given sessions; returns how many took the event.
    pub fn send_to(
        &self,
        sessions: impl IntoIterator<Item = SessionId>,
        event: &Arc<Event>,
    ) -> usize {
        sessions
            .into_iter()
            .filter_map(|id| self.sessions.get(&id))
            .filter(|s| s.send(event.clone()))
            .count()
    }

    pub fn send_to_all_but_user(&self, event: &Arc<Event>, user_id: &str) -> usize {
        self.sessions
            .values()
            .filter(|s| &*s.user_id != user_id)
            .filter(|s| s.send(event.clone()))
            .count()
    }

    /// Online sessions of a room's members, but `except`.
    pub fn room_sessions(&self, room: &RoomName, except: Option<SessionId>) -> Vec<SessionId> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .flat_map(|user_id| self.sessions_of(user_id, except))
            .collect()
    }

    pub fn send_to_room(
        &self,
        room: &RoomName,
        event: &Arc<Event>,
        except: Option<SessionId>,
    ) -> usize {
        self.send_to(self.room_sessions(room, except), event)
    }
}
