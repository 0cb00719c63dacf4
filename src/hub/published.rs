//! What a publish answers ([`Published`]: its id, its delivery counts, its commit to wait
//! for) and the idempotency keys remembered with it in this run ([`RecentKeys`]), so that a
//! resend is answered exactly as its original was. Kept apart from `publish.rs` (which
//! decides) and `state.rs` (which holds the keys under the lock) so neither imports the
//! other.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::store::{Commit, OriginalAck};

/// The result of a publish, as acknowledged to the sender.
#[derive(Debug, Clone)]
pub struct Published {
    /// The message id.
    pub id: u64,
    /// Connections that took it live.
    pub delivered: usize,
    /// Whether it waits in an offline queue.
    pub queued: bool,
    /// True when this is a resend of an earlier message with the same key.
    pub duplicate: bool,
    pub(super) committed: Commit,
}

impl Published {
    /// A resend of an already stored message, found in the database.
    pub(super) fn stored_duplicate(original: OriginalAck) -> Self {
        Self {
            id: original.id,
            delivered: original.delivered as usize,
            queued: original.queued,
            duplicate: true,
            committed: Commit::already_durable(),
        }
    }

    /// Whether `other` is this same publish (a clone of it), whatever the ids say.
    pub(super) fn is_same_message(&self, other: &Published) -> bool {
        self.committed.is_same(&other.committed)
    }

    /// Waits until the message is committed; false if it could not be stored. A message
    /// sequenced at commit learns its id here.
    pub async fn durable(&mut self) -> bool {
        let stored = self.committed.durable().await;
        if let Some(id) = self.committed.assigned_id() {
            self.id = id;
        }
        stored
    }
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

    /// Forgets `key` if it still names the message `failed`: that message was not stored, so
    /// a resend must be published anew rather than answered as its duplicate. Matched by its
    /// commit, not its id (sequenced messages all have id 0 until they commit). (Its place in
    /// `order` stays; evicting it later at worst sends a lookup to the database.)
    pub fn forget(&mut self, sender: &Arc<str>, key: &str, failed: &Published) {
        let entry = (sender.clone(), key.to_owned());
        if self
            .map
            .get(&entry)
            .is_some_and(|p| p.is_same_message(failed))
        {
            self.map.remove(&entry);
        }
    }
}
