//! Which other nodes are alive, as heard on the bus: when each was last heard, and whether
//! its messages arrive without a hole. A node silent for `NODE_TIMEOUT_SECS` is lost. Plain
//! bookkeeping, no I/O: the bus decides what to do about it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::hub::NodeUser;

/// Most users one node's list may hold: past it, the list is not from a real node.
const MAX_LISTED_USERS: usize = 10_000_000;

/// What one envelope says about its sender.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Heard before, nothing missed.
    Known,
    /// A node not heard of yet (this one started after it, or it was lost and came back).
    New,
    /// The same node id with a new run: the node restarted, its old users are gone.
    Restarted,
    /// Messages from it were missed (its users may be stale).
    Gap,
    /// A straggler from a run that said goodbye or was replaced by a restart: ignored.
    Departed,
    /// A run this node declared lost still speaks: it does not know (a long pause, or the
    /// announcement was lost). Ignored, and told again.
    DeclaredLost,
}

struct Seen {
    run: u64,
    seq: u64,
    last_heard: Instant,
    /// A list of users arriving in parts.
    parts: Vec<NodeUser>,
}

/// The other nodes.
pub struct Nodes {
    timeout: Duration,
    seen: HashMap<String, Seen>,
    /// The run each node last said goodbye from.
    departed: HashMap<String, u64>,
    /// The run each node was last declared lost in, until a newer run is heard.
    lost: HashMap<String, u64>,
}

impl Nodes {
    /// No node heard yet; `timeout` is `NODE_TIMEOUT_SECS`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            seen: HashMap::new(),
            departed: HashMap::new(),
            lost: HashMap::new(),
        }
    }

    /// `node`'s envelope number `seq` of run `run` arrived `at`.
    pub fn heard(&mut self, node: &str, run: u64, seq: u64, at: Instant) -> Heard {
        if self.departed.get(node) == Some(&run) {
            return Heard::Departed;
        }
        if let Some(&lost) = self.lost.get(node) {
            match run.cmp(&lost) {
                std::cmp::Ordering::Less => return Heard::Departed,
                std::cmp::Ordering::Equal => return Heard::DeclaredLost,
                std::cmp::Ordering::Greater => {
                    self.lost.remove(node);
                }
            }
        }
        let Some(seen) = self.seen.get_mut(node) else {
            self.seen.insert(
                node.to_owned(),
                Seen {
                    run,
                    seq,
                    last_heard: at,
                    parts: Vec::new(),
                },
            );
            return Heard::New;
        };
        if run < seen.run {
            // A straggler from the run before a restart.
            return Heard::Departed;
        }
        seen.last_heard = at;
        let heard = if seen.run != run {
            seen.parts.clear();
            Heard::Restarted
        } else if seq != seen.seq + 1 {
            // A part of a list of users may be what was missed.
            seen.parts.clear();
            Heard::Gap
        } else {
            Heard::Known
        };
        seen.run = run;
        seen.seq = seq;
        heard
    }

    /// Adds a part of `node`'s list of users; the whole list once `last` arrives.
    pub fn users_part(
        &mut self,
        node: &str,
        users: Vec<NodeUser>,
        last: bool,
    ) -> Option<Vec<NodeUser>> {
        let seen = self.seen.get_mut(node)?;
        if seen.parts.len() + users.len() > MAX_LISTED_USERS {
            tracing::warn!(node, "a list of users too long to be real; dropped");
            seen.parts.clear();
            return None;
        }
        seen.parts.extend(users);
        last.then(|| std::mem::take(&mut seen.parts))
    }

    /// Forgets `node`, which said goodbye: what its run still sends is ignored.
    pub fn departed(&mut self, node: &str) {
        if let Some(seen) = self.seen.remove(node) {
            self.departed.insert(node.to_owned(), seen.run);
        }
    }

    /// Counts every node heard `now` (this node's own bus was down: their silence was not
    /// theirs).
    pub fn heard_all(&mut self, now: Instant) {
        for seen in self.seen.values_mut() {
            seen.last_heard = now;
        }
    }

    /// Nodes heard and not lost or gone since.
    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// Forgets every node (this node lost the bus); returns them.
    pub fn forget_all(&mut self) -> Vec<String> {
        self.seen.drain().map(|(node, _)| node).collect()
    }

    /// The nodes heard from (and not lost or gone since).
    pub fn alive(&self) -> impl Iterator<Item = String> + '_ {
        self.seen.keys().cloned()
    }

    /// Whether `node` was heard from (and not lost or gone since).
    #[cfg(test)]
    pub fn is_alive(&self, node: &str) -> bool {
        self.seen.contains_key(node)
    }

    /// The nodes silent for longer than the timeout at `now`, with the run declared lost;
    /// forgotten, and that run ignored from now on ([`Heard::DeclaredLost`]).
    pub fn take_lost(&mut self, now: Instant) -> Vec<(String, u64)> {
        let timeout = self.timeout;
        let lost: Vec<(String, u64)> = self
            .seen
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(seen.last_heard) > timeout)
            .map(|(node, seen)| (node.clone(), seen.run))
            .collect();
        for (node, run) in &lost {
            self.seen.remove(node);
            self.lost.insert(node.clone(), *run);
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> NodeUser {
        NodeUser {
            user_id: id.into(),
            username: id.into(),
            role: "USER".into(),
            connected_at_ms: 1,
            sessions: 1,
        }
    }

    #[test]
    fn a_sender_is_new_then_known_and_a_hole_or_a_restart_is_noticed() {
        let mut nodes = Nodes::new(Duration::from_secs(2));
        let t = Instant::now();
        assert_eq!(nodes.heard("a", 1, 1, t), Heard::New);
        assert_eq!(nodes.heard("a", 1, 2, t), Heard::Known);
        assert_eq!(nodes.heard("a", 1, 4, t), Heard::Gap);
        assert_eq!(nodes.heard("a", 1, 5, t), Heard::Known);
        assert_eq!(nodes.heard("a", 2, 1, t), Heard::Restarted);
        assert_eq!(
            nodes.heard("a", 1, 6, t),
            Heard::Departed,
            "the old run's straggler"
        );
    }

    #[test]
    fn a_run_that_said_goodbye_stays_gone_and_a_new_run_is_new() {
        let mut nodes = Nodes::new(Duration::from_secs(2));
        let t = Instant::now();
        nodes.heard("a", 1, 1, t);
        nodes.departed("a");
        assert_eq!(nodes.heard("a", 1, 2, t), Heard::Departed);
        assert!(!nodes.is_alive("a"));
        assert_eq!(nodes.heard("a", 2, 1, t), Heard::New);
    }

    #[test]
    fn a_node_silent_past_the_timeout_is_lost_once() {
        let mut nodes = Nodes::new(Duration::from_secs(2));
        let t = Instant::now();
        nodes.heard("a", 1, 1, t);
        nodes.heard("b", 1, 1, t + Duration::from_secs(2));
        assert!(nodes.take_lost(t + Duration::from_secs(2)).is_empty());
        assert_eq!(
            nodes.take_lost(t + Duration::from_secs(3)),
            vec![("a".to_owned(), 1)]
        );
        assert!(nodes.take_lost(t + Duration::from_secs(3)).is_empty());
        assert!(!nodes.is_alive("a") && nodes.is_alive("b"));
        assert_eq!(nodes.forget_all(), vec!["b"]);
    }

    #[test]
    fn a_run_declared_lost_stays_lost_and_a_newer_run_is_new() {
        let mut nodes = Nodes::new(Duration::from_secs(2));
        let t = Instant::now();
        nodes.heard("a", 2, 1, t);
        nodes.take_lost(t + Duration::from_secs(3));
        let later = t + Duration::from_secs(4);
        assert_eq!(nodes.heard("a", 2, 2, later), Heard::DeclaredLost);
        assert_eq!(nodes.heard("a", 2, 3, later), Heard::DeclaredLost, "still");
        assert!(!nodes.is_alive("a"));
        assert_eq!(nodes.heard("a", 1, 9, later), Heard::Departed, "older");
        assert_eq!(nodes.heard("a", 3, 1, later), Heard::New);
        assert_eq!(nodes.heard("a", 2, 4, later), Heard::Departed, "replaced");
    }

    #[test]
    fn a_list_of_users_comes_whole_once_its_last_part_arrives() {
        let mut nodes = Nodes::new(Duration::from_secs(2));
        nodes.heard("a", 1, 1, Instant::now());
        assert_eq!(nodes.users_part("a", vec![user("x")], false), None);
        let whole = nodes
            .users_part("a", vec![user("y")], true)
            .expect("complete");
        assert_eq!(whole, vec![user("x"), user("y")]);
    }
}
