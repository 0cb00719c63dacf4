//! Delivery of committed messages in id order: the decisions, without I/O. Ids are assigned
//! in commit order without holes (`store/sequence.rs`), so the next id to deliver is always
//! known: an id that has not arrived while a higher one has is a message still on its way (on
//! the bus, or this node's own commit), and after [`GAP_WAIT`] it is read from the database,
//! where it is committed (a higher id is). A lost bus message therefore delays delivery, never
//! skips it; and once nothing has arrived for a [`TAIL_CHECK`], the shared counter is looked
//! at, so that a lost last message is found too.
//!
//! [`Sequencer`] takes what arrived and the time, and answers what to deliver now, when to
//! wake up, and which ids to read back; `delivery.rs` does the reading, the waiting and the
//! delivering. Time comes in as an argument, so the tests below drive it by arithmetic.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::CommittedMessage;

/// How long a hole below a delivered-ready id may wait for its message on the bus.
pub const GAP_WAIT: Duration = Duration::from_millis(50);
/// How often an idle node looks at the shared counter for messages it never heard of.
pub const TAIL_CHECK: Duration = Duration::from_secs(1);
/// Ids at or above this are not from our writers (and would wrap the counting): ignored.
const ID_LIMIT: u64 = u64::MAX / 2;

/// What to hand to the hub now.
#[derive(Debug, Default)]
pub struct Ready {
    /// Messages to deliver, in id order.
    pub messages: Vec<CommittedMessage>,
    /// Every id up to this one is delivered or settled without a message: the horizon.
    pub horizon: Option<u64>,
}

/// The order keeper of one node.
#[derive(Debug)]
pub struct Sequencer {
    /// The next id to deliver.
    next: u64,
    /// Arrived, waiting for the ids below them.
    pending: BTreeMap<u64, CommittedMessage>,
    /// Every id up to this one is settled in the database: one not found there never will be.
    settled_through: u64,
    /// Since when the lowest pending message waits for a hole below it.
    hole_since: Option<Instant>,
    /// Whether anything arrived since the last tail check: a busy node hears of every commit
    /// anyway, and a read of messages on their way would only hold its delivery up.
    heard: bool,
}

impl Sequencer {
    /// Delivers from `head + 1` on (`head`: the last id committed before this node joined).
    pub fn new(head: u64) -> Self {
        Self {
            next: head + 1,
            pending: BTreeMap::new(),
            settled_through: head,
            hole_since: None,
            heard: false,
        }
    }

    /// Messages arrived `now` (this node's commits or another's, heard on the bus).
    pub fn arrived(&mut self, batch: Vec<CommittedMessage>, now: Instant) -> Ready {
        self.heard = true;
        for message in batch {
            // Below `next`: delivered already (a duplicate, or read back before it came).
            if message.id >= self.next && message.id < ID_LIMIT {
                self.pending.insert(message.id, message);
            }
        }
        self.deliver_ready(now)
    }

    /// When the hole below the lowest pending message has waited long enough: then call
    /// [`Sequencer::hole_read_through`]. `None`: no hole.
    pub fn hole_deadline(&self) -> Option<Instant> {
        self.hole_since.map(|since| since + GAP_WAIT)
    }

    /// At the hole deadline, with `head` the database's counter: read back through the
    /// returned id. Up to what the database says is committed, not what the bus claims; when
    /// that leaves nothing to read, waits another [`GAP_WAIT`].
    pub fn hole_read_through(&mut self, head: u64, now: Instant) -> Option<u64> {
        let (&first, _) = self.pending.first_key_value()?;
        let through = (first - 1).min(head);
        if through < self.next {
            self.retry_later(now);
            return None;
        }
        Some(through)
    }

    /// At each [`TAIL_CHECK`]: whether to look at the database's counter (nothing arrived
    /// since the last check and nothing waits).
    pub fn tail_check(&mut self) -> bool {
        !std::mem::take(&mut self.heard) && self.pending.is_empty()
    }

    /// After a tail check read `head`: read back through the returned id, if anything was
    /// committed that never arrived.
    pub fn tail_read_through(&self, head: u64) -> Option<u64> {
        (head >= self.next && head < ID_LIMIT).then_some(head)
    }

    /// The first id of the next page to read back on the way to `through`; `None` when every
    /// id up to it is delivered.
    pub fn read_from(&self, through: u64) -> Option<u64> {
        (self.next <= through).then_some(self.next)
    }

    /// A page read back: `page` holds the stored messages with ids up to `read_through`
    /// (every id up to it is now settled). Returns what to deliver and how many of the
    /// messages had not arrived otherwise.
    pub fn read_back(
        &mut self,
        page: Vec<CommittedMessage>,
        read_through: u64,
        now: Instant,
    ) -> (Ready, u64) {
        let mut fresh = 0;
        for message in page {
            if message.id >= self.next && message.id <= read_through {
                fresh += u64::from(!self.pending.contains_key(&message.id));
                self.pending.insert(message.id, message);
            }
        }
        self.settled_through = self.settled_through.max(read_through);
        (self.deliver_ready(now), fresh)
    }

    /// A read failed at `now`: the hole waits another [`GAP_WAIT`] before the next attempt.
    pub fn retry_later(&mut self, now: Instant) {
        self.hole_since = Some(now);
    }

    /// The run of messages that continues from `next`, skipping ids known to be settled
    /// without a message (deleted by retention, or never used).
    fn deliver_ready(&mut self, now: Instant) -> Ready {
        let from = self.next;
        let mut ready = Ready::default();
        loop {
            match self.pending.first_key_value() {
                Some((&id, _)) if id == self.next => {
                    ready
                        .messages
                        .extend(self.pending.pop_first().map(|(_, m)| m));
                    self.next += 1;
                }
                Some((&id, _)) if self.next <= self.settled_through => {
                    self.next = id.min(self.settled_through + 1);
                }
                None if self.next <= self.settled_through => {
                    self.next = self.settled_through + 1;
                }
                _ => break,
            }
        }
        // Past the ids skipped too (no message has them, so no connection is owed one).
        ready.horizon = (self.next > from).then(|| self.next - 1);
        // A hole is timed from when delivery last moved, not from the first hole ever seen.
        self.hole_since = match (self.pending.is_empty(), self.next > from) {
            (true, _) => None,
            (false, true) => Some(now),
            (false, false) => Some(self.hole_since.unwrap_or(now)),
        };
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Target;

    fn message(id: u64) -> CommittedMessage {
        CommittedMessage {
            id,
            event: "message".into(),
            target: Target::All,
            payload: format!(r#"{{"id":{id}}}"#),
            sender_session: None,
        }
    }

    fn ids(ready: &Ready) -> Vec<u64> {
        ready.messages.iter().map(|m| m.id).collect()
    }

    #[test]
    fn messages_arriving_in_order_are_delivered_at_once_and_move_the_horizon() {
        let mut s = Sequencer::new(10);
        let t = Instant::now();

        let ready = s.arrived(vec![message(11), message(12)], t);

        assert_eq!((ids(&ready), ready.horizon), (vec![11, 12], Some(12)));
        assert_eq!(s.hole_deadline(), None, "nothing waits");
        let ready = s.arrived(vec![message(13)], t);
        assert_eq!((ids(&ready), ready.horizon), (vec![13], Some(13)));
    }

    #[test]
    fn a_hole_holds_later_messages_back_then_asks_for_a_read_back_after_the_gap_wait() {
        let mut s = Sequencer::new(10);
        let t = Instant::now();

        let ready = s.arrived(vec![message(13)], t);
        assert!(ids(&ready).is_empty(), "13 waits for 11 and 12");
        assert_eq!(ready.horizon, None);
        assert_eq!(s.hole_deadline(), Some(t + GAP_WAIT));

        // 11 arrives meanwhile: delivered, and the wait for 12 starts over.
        let later = t + GAP_WAIT / 2;
        let ready = s.arrived(vec![message(11)], later);
        assert_eq!(ids(&ready), vec![11]);
        assert_eq!(s.hole_deadline(), Some(later + GAP_WAIT));

        // At the deadline: read 12 back (not past what the database holds, nor past 12).
        let deadline = later + GAP_WAIT;
        assert_eq!(s.hole_read_through(20, deadline), Some(12));
        assert_eq!(s.read_from(12), Some(12));
        let (ready, fresh) = s.read_back(vec![message(12)], 12, deadline);
        assert_eq!(
            (ids(&ready), ready.horizon, fresh),
            (vec![12, 13], Some(13), 1)
        );
        assert_eq!(s.read_from(12), None, "nothing left to read");
        assert_eq!(s.hole_deadline(), None);
    }

    #[test]
    fn an_id_settled_without_a_message_is_skipped_once_read_back() {
        let mut s = Sequencer::new(0);
        let t = Instant::now();
        s.arrived(vec![message(3)], t);

        // 1 and 2 were deleted by retention: the page is empty, and they are settled.
        let (ready, fresh) = s.read_back(Vec::new(), 2, t + GAP_WAIT);

        assert_eq!((ids(&ready), ready.horizon, fresh), (vec![3], Some(3), 0));
    }

    #[test]
    fn the_tail_is_checked_only_after_a_quiet_period_with_nothing_waiting() {
        let mut s = Sequencer::new(5);
        let t = Instant::now();
        assert!(s.tail_check(), "nothing heard since start");
        s.arrived(vec![message(6)], t);
        assert!(!s.tail_check(), "something arrived since the last check");
        assert!(s.tail_check(), "quiet since");
        assert_eq!(
            s.tail_read_through(6),
            None,
            "the counter shows nothing new"
        );
        assert_eq!(s.tail_read_through(8), Some(8), "7 and 8 never arrived");

        s.arrived(vec![message(9)], t);
        s.tail_check();
        assert!(
            !s.tail_check(),
            "9 waits for 7 and 8: the hole deadline reads them"
        );
    }

    #[test]
    fn duplicates_and_messages_already_read_back_are_delivered_once() {
        let mut s = Sequencer::new(0);
        let t = Instant::now();
        s.arrived(vec![message(2)], t);
        let (ready, fresh) = s.read_back(vec![message(1), message(2)], 2, t);
        assert_eq!(
            (ids(&ready), fresh),
            (vec![1, 2], 1),
            "2 had arrived already"
        );

        let again = s.arrived(vec![message(1), message(2)], t);
        assert!(ids(&again).is_empty() && again.horizon.is_none());
        let ready = s.arrived(vec![message(4), message(4)], t);
        assert!(ids(&ready).is_empty());
        let ready = s.arrived(vec![message(3)], t);
        assert_eq!(ids(&ready), vec![3, 4], "4 once");
    }

    #[test]
    fn an_id_beyond_any_real_one_is_ignored_instead_of_wrapping_the_count() {
        let mut s = Sequencer::new(0);
        let t = Instant::now();

        let ready = s.arrived(vec![message(u64::MAX), message(u64::MAX / 2)], t);

        assert!(ids(&ready).is_empty());
        assert_eq!(s.hole_deadline(), None, "nothing waits for them");
        assert_eq!(
            s.tail_read_through(u64::MAX),
            None,
            "nor for a counter that high"
        );
        let ready = s.arrived(vec![message(1)], t);
        assert_eq!((ids(&ready), ready.horizon), (vec![1], Some(1)));
    }

    #[test]
    fn a_hole_the_database_does_not_cover_yet_waits_again_instead_of_reading_nothing() {
        let mut s = Sequencer::new(0);
        let t = Instant::now();
        s.arrived(vec![message(5)], t);

        // The counter says nothing above 0 is committed (5 came from a confused sender).
        let at = t + GAP_WAIT;
        assert_eq!(s.hole_read_through(0, at), None);

        assert_eq!(s.hole_deadline(), Some(at + GAP_WAIT));
    }
}
