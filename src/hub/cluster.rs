//! The hub's side of a cluster (`docs/protocol.md` section 13): what it tells the other nodes,
//! what it takes from them, and the delivery of committed messages in id order.
//!
//! The hub does not know NATS. It hands [`ClusterEvent`]s to an outbox (bounded; should it
//! ever be full, the bus sends a full snapshot of this node's users instead of the lost
//! changes) and offers methods the bus calls with what other nodes said. Live state stays
//! split the way it is owned: this node's sessions in the maps of `state.rs`, the other
//! nodes' users in [`RemotePresence`] (`remote.rs`), both read together wherever the protocol
//! counts users (presence, active users, statistics).
//!
//! Once clustered, stored messages reach connections only through
//! [`Hub::deliver_committed`], called by the bus's sequencer in id order, with the recipients
//! chosen at that moment by the rule live routing uses (`State::recipients`): a connection
//! that registered before the call gets the message live, one that registered after finds it
//! in its catch-up (the horizon it reads under the same lock says so).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::remote::{NodeUser, RemotePresence};
use super::state::{Sender, State};
use super::{CloseReason, Event, Hub, SessionId};
use crate::metrics::Delivery;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{
    self, LeftReason, RoomConfirmation, RoomDropped, RoomPresence, UserObject,
};
use crate::store::CommittedMessage;

/// Changes per node the outbox holds before the bus falls back to a snapshot.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// What this node tells the others, besides committed messages (and as it travels on the
/// bus).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A user's connections on this node changed.
    User(NodeUser),
    /// A user joined or left a room.
    Room(RoomChange),
    /// An operator's disconnect: close the user's connections everywhere.
    Kick { user_id: String },
    /// The user's tokens issued before `not_before` are revoked: refuse them and close the
    /// user's connections everywhere.
    Revoked {
        user_id: String,
        /// The first `iat` still accepted.
        not_before: u64,
    },
}

/// A room membership that began or ended on the announcing node, as the others apply it.
/// `by_server` and `reason` came later: a message of an older node reads without them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomChange {
    pub room: String,
    pub user: UserObject,
    /// Joined or left.
    pub joined: bool,
    /// When.
    pub at: String,
    /// The application made the membership (REST, the embedded API): it holds whatever the
    /// room's rules say, and the user's connections hear `joined-room`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_server: bool,
    /// Why the server ended it: the user's connections hear `left-room` with it. `None`: the
    /// user left on its own (its connections heard it as room members do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeftReason>,
}

impl RoomChange {
    /// `user` became a member of `room` at `at`, by the application when `by_server`.
    pub(super) fn joined(room: &RoomName, user: UserObject, at: String, by_server: bool) -> Self {
        Self {
            room: room.as_str().to_owned(),
            user,
            joined: true,
            at,
            by_server,
            reason: None,
        }
    }

    /// `user`'s membership of `room` ended at `at`; `reason` when the server ended it.
    pub(super) fn left(
        room: &RoomName,
        user: UserObject,
        at: String,
        reason: Option<LeftReason>,
    ) -> Self {
        Self {
            room: room.as_str().to_owned(),
            user,
            joined: false,
            at,
            by_server: false,
            reason,
        }
    }
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

    /// Another node's user joined or left a room: the membership follows, this node's
    /// connections of the room hear it, and the user's own connections here hear what the
    /// server did to them (`joined-room` for an application's add, `left-room` with the
    /// reason for a membership the server ended) with the same effect as on the node that did
    /// it: delivery to them starts or stops under this lock.
    pub fn remote_room_change(&self, change: RoomChange) {
        let Ok(room) = RoomName::parse(&change.room) else {
            tracing::warn!(
                room = change.room,
                "ignoring a room change with a bad room name"
            );
            return;
        };
        let user_id: Arc<str> = Arc::from(change.user.user_id.as_str());
        let mut state = self.state();
        let was_member = state.is_member(&room, &user_id);
        if change.joined && change.by_server {
            // Marked even when already a member: an application's add over a self-join.
            state.add_server_member(&room, &user_id);
            state.known_users.insert(user_id.clone());
        }
        if was_member == change.joined {
            // Already as told (this node heard it before, or never knew otherwise).
            return;
        }
        if change.joined {
            state.add_member(&room, &user_id);
        }
        // The user's connections here hear the change as the room does when it was the
        // user's own (a join or leave on another node); what the server did to them is
        // addressed to them instead, below.
        let told_apart = change.by_server || change.reason.is_some();
        let own: Vec<SessionId> = state.sessions_of(&user_id, None).collect();
        let room_sessions: Vec<SessionId> = state
            .room_sessions(&room, None)
            .into_iter()
            .filter(|s| !(told_apart && own.contains(s)))
            .collect();
        let name = if change.joined {
            "user-joined-room"
        } else {
            "user-left-room"
        };
        let presence = Event::new(
            name,
            &RoomPresence {
                user: &change.user,
                room: room.as_str(),
                timestamp: change.at,
            },
        );
        state.send_to(room_sessions, &presence);
        if !change.joined {
            state.remove_member(&room, &user_id);
        }
        let addressed = match change.reason {
            Some(reason) => Event::new("left-room", &RoomDropped::new(room.as_str(), reason)),
            None if change.by_server => {
                Event::new("joined-room", &RoomConfirmation::added(room.as_str()))
            }
            None => return,
        };
        state.send_to(own, &addressed);
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
            let sender = Sender::committed(message.sender_session.map(SessionId));
            let sessions = match state.recipients(&message.target, sender) {
                Ok(sessions) if !sessions.is_empty() => sessions,
                // Nobody here; a committed message is never refused (it was allowed when sent).
                Ok(_) | Err(_) => continue,
            };
            let tracked = message.target.user().map(|_| message.id);
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
