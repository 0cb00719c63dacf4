//! The other nodes' users, as this node last heard of them (`docs/protocol.md` section 13):
//! what a node says about a user ([`NodeUser`]) and the table of them all
//! ([`RemotePresence`]). Kept apart from this node's sessions (`state.rs`), which read both
//! wherever the protocol counts users; the bus's side of it is `cluster.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A user as one node has them: enough to list and count users across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUser {
    pub user_id: String,
    /// Display name.
    pub username: String,
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

    pub(super) fn connected_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.connected_at_ms)
    }
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
    pub fn entries<'a>(&'a self, user_id: &'a str) -> impl Iterator<Item = &'a NodeUser> + 'a {
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
    pub fn set(&mut self, node: &str, user: NodeUser) {
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
    pub fn drop_node(&mut self, node: &str) -> Vec<NodeUser> {
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

    pub fn of_node(&self, node: &str) -> Vec<NodeUser> {
        self.nodes
            .get(node)
            .map(|users| users.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Milliseconds since the epoch (0 before it, saturated far after).
pub(super) fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
