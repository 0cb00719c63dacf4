//! The hub's side of a cluster (`docs/protocol.md` section 13): what it tells the other nodes, what
//! it takes from them, and the delivery of committed messages in id order.
//!
//! The hub does not know NATS. It hands [`ClusterEvent`]s to an outbox (bounded; should it
//! ever be full, the bus sends a full snapshot of this node's users instead of the lost
//! changes) and offers methods the bus calls with what other nodes said. Live state stays
//! split the way it is owned: this node's sessions in the maps of `state.rs`, the other nodes'
//! users in [`RemotePresence`], both read together wherever the protocol counts users
//! (presence, active users, statistics).
//!
//! Once clustered, stored messages reach connections only through
//! [`Hub::deliver_committed`], called by the bus's sequencer in id order, with the recipients
//! chosen at that moment: a connection that registered before the call gets the message
//! live, one that registered after finds it in its catch-up (the horizon it reads under the
//! same lock says so).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::state::State;
use super::{CloseReason, Event, Hub, SessionId};
use crate::metrics::Delivery;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, RoomPresence, UserObject};
use crate::store::{CommittedMessage, TargetKind};

/// Changes per node the outbox holds before the bus falls back to a snapshot.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// A user as one node has them: enough to list and count users across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUser {
    /// User id.
    pub user_id: String,
    /// Display name.
    pub username: String,
    /// Role.
    pub role: String,
    /// The user's oldest connection on that node, in milliseconds since the epoch.
    pub connected_at_ms: u64,
    /// Live connections on that node; 0: none left.
    pub sessions: usize,
}

/// Most connections one node may claim for a user, and how far ahead of this node's clock a
/// connection time may be: bounds for what arrives from the bus, which this node cannot trust
/// to be well-formed (an absurd time would not even format as a timestamp).
const MAX_NODE_SESSIONS: usize = 1_000_000;
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(86_400);

impl NodeUser {
    /// This entry with its figures clamped to what a node can have.
    pub fn sane(mut self) -> Self {
        let latest = millis(SystemTime::now() + MAX_CLOCK_AHEAD);
        self.connected_at_ms = self.connected_at_ms.min(latest);
        self.sessions = self.sessions.min(MAX_NODE_SESSIONS);
        self
    }

    fn connected_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.connected_at_ms)
    }
}

/// What this node tells the others, besides committed messages (and as it travels on the
/// bus).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A user's connections on this node changed.
    User(NodeUser),
    /// A user joined (`true`) or left a room.
    Room {
        /// The room.
        room: String,
        /// The user.
        user: UserObject,
        /// Joined or left.
        joined: bool,
        /// When.
        at: String,
    },
    /// An operator's disconnect: close the user's connections everywhere.
    Kick {
        /// The user.
        user_id: String,
    },
    /// The user's tokens issued before `not_before` are revoked: refuse them and close the
    /// user's connections everywhere.
    Revoked {
        /// The user.
        user_id: String,
        /// The first `iat` still accepted.
        not_before: u64,
    },
}

/// The other nodes' users.
#[derive(Default)]
pub(super) struct RemotePresence {
    nodes: HashMap<String, HashMap<Arc<str>, NodeUser>>,
    /// User → on how many other nodes it has connections.
    users: HashMap<Arc<str>, usize>,
}

impl RemotePresence {
    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// The user's entries on other nodes.
    fn entries<'a>(&'a self, user_id: &'a str) -> impl Iterator<Item = &'a NodeUser> + 'a {
        self.nodes
            .values()
            .filter_map(move |users| users.get(user_id))
    }

    /// Connections the user has on other nodes.
    pub fn sessions_of(&self, user_id: &str) -> usize {
        if !self.is_online(user_id) {
            return 0;
        }
        self.entries(user_id)
            .fold(0, |n: usize, u| n.saturating_add(u.sessions))
    }

    /// Users online on other nodes.
    pub fn user_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.users.keys()
    }

    /// Sets `node`'s entry of a user (removes it at 0 sessions).
    fn set(&mut self, node: &str, user: NodeUser) {
        let users = self.nodes.entry(node.to_owned()).or_default();
        let id: Arc<str> = Arc::from(user.user_id.as_str());
        if user.sessions == 0 {
            if users.remove(&id).is_some() {
                self.forget_one(&id);
            }
            return;
        }
        if users.insert(id.clone(), user).is_none() {
            *self.users.entry(id).or_default() += 1;
        }
    }

    fn forget_one(&mut self, id: &Arc<str>) {
        if let Some(n) = self.users.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(id);
            }
        }
    }

    /// Forgets `node` and its users; returns them.
    fn drop_node(&mut self, node: &str) -> Vec<NodeUser> {
        let gone: Vec<NodeUser> = self
            .nodes
            .remove(node)
            .map(|users| users.into_values().collect())
            .unwrap_or_default();
        for user in &gone {
            self.forget_one(&Arc::from(user.user_id.as_str()));
        }
        gone
    }

    /// The users of `node`.
    fn of_node(&self, node: &str) -> Vec<NodeUser> {
        self.nodes
            .get(node)
            .map(|users| users.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl State {
    /// The user object across the cluster: sessions summed, the oldest connection's time,
    /// name and role from this node's newest token (else another node's).
    pub fn cluster_user_object(&self, user_id: &str) -> Option<UserObject> {
        let local = self.user_object(user_id);
        let local_at = self.user_connected_at(user_id);
        let mut remote = self.remote.entries(user_id).peekable();
        if remote.peek().is_none() {
            return local;
        }
        let (mut user, mut at) = match (local, local_at) {
            (Some(user), Some(at)) => (user, at),
            _ => {
                let first = remote.next()?;
                (
                    UserObject {
                        user_id: first.user_id.clone(),
                        username: first.username.clone(),
                        role: first.role.clone(),
                        connected_at: String::new(),
                        sessions: first.sessions,
                    },
                    first.connected_at(),
                )
            }
        };
        for other in remote {
            user.sessions = user.sessions.saturating_add(other.sessions);
            at = at.min(other.connected_at());
        }
        user.connected_at = wire::timestamp(at);
        Some(user)
    }

    /// When the user's oldest connection anywhere opened.
    pub fn cluster_connected_at(&self, user_id: &str) -> Option<SystemTime> {
        let remote = self.remote.entries(user_id).map(NodeUser::connected_at);
        self.user_connected_at(user_id)
            .into_iter()
            .chain(remote)
            .min()
    }

    /// Distinct users online anywhere.
    pub fn online_count(&self) -> usize {
        let remote_only = self
            .remote
            .user_ids()
            .filter(|id| !self.users.contains_key(&***id))
            .count();
        self.users.len() + remote_only
    }

    /// Whether the user has a connection on any node.
    pub fn is_online_anywhere(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id) || self.remote.is_online(user_id)
    }

    /// This node's entry of a user, for the other nodes (0 sessions once it has none here).
    pub fn node_user(&self, user_id: &str, gone: Option<&UserObject>) -> Option<NodeUser> {
        if let Some(user) = self.user_object(user_id) {
            let at = self.user_connected_at(user_id)?;
            return Some(NodeUser {
                user_id: user.user_id,
                username: user.username,
                role: user.role,
                connected_at_ms: millis(at),
                sessions: user.sessions,
            });
        }
        gone.map(|user| NodeUser {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            role: user.role.clone(),
            connected_at_ms: 0,
            sessions: 0,
        })
    }

    /// The live sessions a committed message goes to on this node.
    fn committed_recipients(
        &self,
        kind: TargetKind,
        target: Option<&str>,
        except: Option<SessionId>,
    ) -> Vec<SessionId> {
        let but = |id: &SessionId| Some(*id) != except;
        match (kind, target) {
            (TargetKind::All, _) => self.sessions.keys().copied().filter(but).collect(),
            // Every connection of the user, the sending one included (as live routing does).
            (TargetKind::User, Some(user_id)) => self.sessions_of(user_id, None).collect(),
            (TargetKind::Room, Some(room)) => match RoomName::parse(room) {
                Ok(room) => self.room_sessions(&room, except),
                Err(_) => Vec::new(),
            },
            (TargetKind::Role, Some(role)) => self.role_sessions(role, except),
            (_, None) => Vec::new(),
        }
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Hub {
    /// Makes this hub one node of a cluster: changes other nodes must hear go to `outbox`,
    /// and stored messages reach connections through [`Hub::deliver_committed`] only.
    /// Returns false if it already was.
    pub fn join_cluster(&self, outbox: mpsc::Sender<ClusterEvent>) -> bool {
        self.inner.outbox.set(outbox).is_ok()
    }

    /// Whether this hub is a node of a cluster.
    pub fn is_clustered(&self) -> bool {
        self.inner.outbox.get().is_some()
    }

    /// Cuts this node off (its bus has been gone for `NODE_TIMEOUT_SECS`, so the other nodes
    /// count it lost): every connection closes with reason `node_lost`, new ones are refused
    /// and `/readyz` says so, until [`Hub::rejoin`].
    pub fn cut_off(&self) {
        if !self
            .inner
            .cut_off
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            self.close_all(CloseReason::NodeLost);
        }
    }

    /// The bus is back: connections are taken again.
    pub fn rejoin(&self) {
        self.inner
            .cut_off
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Whether this node is cut off from its cluster.
    pub fn is_cut_off(&self) -> bool {
        self.inner
            .cut_off
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hands a change to the bus; never waits (called under the lock). A full outbox marks
    /// this node's users for a resend in full.
    pub(super) fn announce(&self, event: ClusterEvent) {
        let Some(outbox) = self.inner.outbox.get() else {
            return;
        };
        if let Err(e) = outbox.try_send(event) {
            tracing::warn!(error = %e, "the cluster outbox is full; the next heartbeat resends every user");
            self.inner
                .resync
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Tells the other nodes how many connections `user_id` has here now (`gone`: the user
    /// as they were, when this was their last). Nothing to build when not clustered.
    pub(super) fn announce_user(&self, state: &State, user_id: &str, gone: Option<&UserObject>) {
        if !self.is_clustered() {
            return;
        }
        if let Some(user) = state.node_user(user_id, gone) {
            self.announce(ClusterEvent::User(user));
        }
    }

    /// Whether a change was lost on the way to the bus since the last call (the bus then
    /// sends [`Hub::node_users`] in full).
    pub fn take_resync(&self) -> bool {
        self.inner
            .resync
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// This node's online users, for the other nodes.
    pub fn node_users(&self) -> Vec<NodeUser> {
        let state = self.state();
        state
            .users
            .keys()
            .filter_map(|id| state.node_user(id, None))
            .collect()
    }

    /// Another node's entry of a user changed. Local connections hear `user-connected` when
    /// the user was online nowhere before, `user-disconnected` when it is online nowhere now.
    pub fn remote_user(&self, node: &str, user: NodeUser) {
        let user = user.sane();
        let mut state = self.state();
        let touched = vec![Arc::from(user.user_id.as_str())];
        self.apply_remote(&mut state, &touched, |remote| remote.set(node, user));
    }

    /// Everything `node` has online, replacing what was known of it (its snapshot).
    pub fn remote_node_users(&self, node: &str, users: Vec<NodeUser>) {
        let users: Vec<NodeUser> = users.into_iter().map(NodeUser::sane).collect();
        let mut state = self.state();
        let old = state.remote.of_node(node);
        let touched: Vec<Arc<str>> = old
            .iter()
            .chain(&users)
            .map(|u| Arc::from(u.user_id.as_str()))
            .collect();
        self.apply_remote(&mut state, &touched, |remote| {
            let listed: std::collections::HashSet<&str> =
                users.iter().map(|u| u.user_id.as_str()).collect();
            for old in old {
                if !listed.contains(old.user_id.as_str()) {
                    remote.set(node, NodeUser { sessions: 0, ..old });
                }
            }
            for user in users {
                remote.set(node, user);
            }
        });
    }

    /// `node` is gone: its users leave presence (unless connected elsewhere). Returns how
    /// many users it had.
    pub fn remote_node_gone(&self, node: &str) -> usize {
        let mut state = self.state();
        let touched: Vec<Arc<str>> = state
            .remote
            .of_node(node)
            .iter()
            .map(|u| Arc::from(u.user_id.as_str()))
            .collect();
        let count = touched.len();
        self.apply_remote(&mut state, &touched, |remote| {
            remote.drop_node(node);
        });
        count
    }

    /// Applies `change`, which concerns the users `touched` only, to the remote users and
    /// announces each of them it brought online or took offline cluster-wide. Its cost is
    /// that of the users touched, not of everyone online: it runs under the hub lock.
    fn apply_remote(
        &self,
        state: &mut State,
        touched: &[Arc<str>],
        change: impl FnOnce(&mut RemotePresence),
    ) {
        let before: Vec<(bool, Option<UserObject>)> = touched
            .iter()
            .map(|id| {
                let online = state.is_online_anywhere(id);
                (
                    online,
                    online.then(|| state.cluster_user_object(id)).flatten(),
                )
            })
            .collect();
        change(&mut state.remote);
        let at = wire::now();
        for (id, (was_online, was)) in touched.iter().zip(before) {
            if state.remote.is_online(id) {
                state.known_users.insert(id.clone());
            }
            let online = state.is_online_anywhere(id);
            let user = match (was_online, online) {
                (false, true) => state.cluster_user_object(id),
                (true, false) => was.map(|mut user| {
                    user.sessions = 0;
                    user
                }),
                _ => None,
            };
            if let Some(user) = user {
                let count = state.online_count();
                self.inner.presence.user_changed(
                    &mut state.presence_window,
                    &user,
                    online,
                    &at,
                    count,
                );
            }
        }
    }

    /// Another node's user joined or left a room: the membership follows, and this node's
    /// connections of the room hear it.
    pub fn remote_room_change(&self, room: &str, user: &UserObject, joined: bool, at: String) {
        let Ok(room) = RoomName::parse(room) else {
            tracing::warn!(room, "ignoring a room change with a bad room name");
            return;
        };
        let user_id: Arc<str> = Arc::from(user.user_id.as_str());
        let mut state = self.state();
        let (name, member) = match joined {
            true => ("user-joined-room", state.is_member(&room, &user_id)),
            false => ("user-left-room", !state.is_member(&room, &user_id)),
        };
        if member {
            // Already as told (this node heard it before, or never knew otherwise).
            return;
        }
        if joined {
            state.add_member(&room, &user_id);
        }
        let event = Event::new(
            name,
            &RoomPresence {
                user,
                room: room.as_str(),
                timestamp: at,
            },
        );
        state.send_to_room(&room, &event, None);
        if !joined {
            state.remove_member(&room, &user_id);
        }
    }

    /// Closes the user's connections (reason `revoked`) on every node: its tokens issued
    /// before `not_before` are refused now. Returns how many (other nodes' as last heard).
    pub fn revoke_user(&self, user_id: &str, not_before: u64) -> usize {
        let here = self.close_local_user(user_id, CloseReason::Revoked);
        if !self.is_clustered() {
            return here;
        }
        let elsewhere = self.state().remote.sessions_of(user_id);
        self.announce(ClusterEvent::Revoked {
            user_id: user_id.to_owned(),
            not_before,
        });
        here + elsewhere
    }

    /// Closes this node's connections of a user (another node asked). Returns how many.
    pub fn close_local_user(&self, user_id: &str, reason: CloseReason) -> usize {
        let state = self.state();
        let sessions: Vec<SessionId> = state.sessions_of(user_id, None).collect();
        for id in &sessions {
            if let Some(s) = state.sessions.get(id) {
                s.outbound.close(reason);
            }
        }
        sessions.len()
    }

    /// Delivers committed messages, in id order, to this node's connections, and moves the
    /// read horizon past them (under the lock, so a connection registering now reads a
    /// horizon that matches what it will get live).
    pub fn deliver_committed(&self, batch: Vec<CommittedMessage>) {
        let Some(last) = batch.last().map(|m| m.id) else {
            return;
        };
        let store = &self.inner.store;
        let mut state = self.state();
        let mut delivered = 0;
        for message in batch {
            let except = message.sender_session.map(SessionId);
            let sessions =
                state.committed_recipients(message.target_kind, message.target.as_deref(), except);
            if sessions.is_empty() {
                continue;
            }
            let tracked = (message.target_kind == TargetKind::User).then_some(message.id);
            let id = message.id;
            match Event::stored(message.event, message.payload, tracked) {
                Ok(event) => delivered += state.send_to(sessions, &event),
                Err(e) => {
                    tracing::error!(id, error = %e, "a committed message has a bad payload")
                }
            }
        }
        store.advance_horizon(last);
        drop(state);
        self.metrics().delivered(Delivery::Live, delivered as u64);
    }
}
