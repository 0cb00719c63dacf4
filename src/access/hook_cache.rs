//! The join hook's answers, remembered per (user id, room) for `JOIN_HOOK_CACHE_SECS`, so a
//! user who leaves and rejoins, or whose client retries, does not cost the application a
//! request each time. Allows and refusals are both kept (a refusal is as much an answer);
//! errors never are ([`super::hook`] does not offer them).
//!
//! Every entry lives the same time, so the order of insertion is the order of expiry: a queue
//! beside the map drops expired entries from its front in O(1) per insert, and when the cache
//! is full of live entries the oldest goes first. An entry is also checked on read, so an
//! expired answer is never used even before the queue reaches it. The clock is a parameter
//! (`now`) so the tests move it instead of sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whom and where an answer is about.
pub type Key = (Arc<str>, String);

/// Answers of the join hook, bounded in time and number.
#[derive(Debug)]
pub struct HookCache {
    ttl: Duration,
    capacity: usize,
    /// The answer (`true`: allowed) and when it was stored.
    answers: HashMap<Key, (bool, Instant)>,
    /// Keys in the order they were stored. A key stored again after its entry expired also
    /// has its older, stale place here; it is recognised by its time and skipped.
    order: VecDeque<(Key, Instant)>,
}

impl HookCache {
    /// A cache keeping each answer for `ttl` (zero: keeps nothing) and at most `capacity`
    /// answers.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The answer stored for `key` that is still fresh at `now`.
    pub fn get(&self, key: &Key, now: Instant) -> Option<bool> {
        let (allowed, at) = self.answers.get(key)?;
        self.fresh(*at, now).then_some(*allowed)
    }

    /// Stores `allowed` for `key` at `now`, making room first.
    pub fn insert(&mut self, key: Key, allowed: bool, now: Instant) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        self.drop_expired(now);
        while self.answers.len() >= self.capacity && !self.answers.contains_key(&key) {
            if !self.drop_oldest() {
                break;
            }
        }
        // A key stored again leaves its older place in the queue stale: only the newest counts.
        self.answers.insert(key.clone(), (allowed, now));
        self.order.push_back((key, now));
    }

    /// How many answers are held (expired ones not yet dropped included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.answers.len()
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.ttl
    }

    fn drop_expired(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| !self.fresh(*at, now))
        {
            self.drop_oldest();
        }
    }

    /// Drops the front of the queue, and its entry unless the key was stored again since;
    /// `false` when the queue was empty.
    fn drop_oldest(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self
            .answers
            .get(&key)
            .is_some_and(|(_, stored)| *stored == at)
        {
            self.answers.remove(&key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str, room: &str) -> Key {
        (Arc::from(user), room.to_owned())
    }

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn an_answer_is_reused_until_it_expires_refusals_included() {
        let start = Instant::now();
        let mut cache = HookCache::new(TTL, 10);
        cache.insert(key("ann", "match-1"), true, start);
        cache.insert(key("bob", "match-1"), false, start);

        let later = start + TTL - Duration::from_millis(1);
        assert_eq!(cache.get(&key("ann", "match-1"), later), Some(true));
        assert_eq!(cache.get(&key("bob", "match-1"), later), Some(false));
        assert_eq!(cache.get(&key("ann", "match-2"), later), None, "per room");

        let expired = start + TTL;
        assert_eq!(cache.get(&key("ann", "match-1"), expired), None);
        assert_eq!(cache.get(&key("bob", "match-1"), expired), None);
    }

    #[test]
    fn expired_answers_are_dropped_when_something_new_is_stored() {
        let start = Instant::now();
        let mut cache = HookCache::new(TTL, 10);
        for room in ["a", "b", "c"] {
            cache.insert(key("ann", room), true, start);
        }
        cache.insert(key("ann", "d"), true, start + TTL);
        assert_eq!(cache.len(), 1, "the three expired ones went");
    }

    #[test]
    fn a_full_cache_drops_its_oldest_answer() {
        let start = Instant::now();
        let mut cache = HookCache::new(TTL, 2);
        cache.insert(key("ann", "a"), true, start);
        cache.insert(key("ann", "b"), true, start + Duration::from_secs(1));
        cache.insert(key("ann", "c"), false, start + Duration::from_secs(2));
        let now = start + Duration::from_secs(3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key("ann", "a"), now), None, "the oldest went");
        assert_eq!(cache.get(&key("ann", "b"), now), Some(true));
        assert_eq!(cache.get(&key("ann", "c"), now), Some(false));
    }

    #[test]
    fn a_key_stored_again_keeps_its_new_answer_when_its_old_place_is_dropped() {
        let start = Instant::now();
        let mut cache = HookCache::new(TTL, 10);
        cache.insert(key("ann", "a"), true, start);
        // Expired, asked again, refused this time.
        let again = start + TTL + Duration::from_secs(1);
        cache.insert(key("ann", "a"), false, again);
        cache.insert(key("bob", "a"), true, again + Duration::from_secs(1));
        assert_eq!(cache.get(&key("ann", "a"), again), Some(false));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_zero_time_keeps_nothing() {
        let start = Instant::now();
        let mut cache = HookCache::new(Duration::ZERO, 10);
        cache.insert(key("ann", "a"), true, start);
        assert_eq!(cache.get(&key("ann", "a"), start), None);
        assert_eq!(cache.len(), 0);
    }
}
