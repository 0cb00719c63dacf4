//! Message ids. An id goes out on the wire (live delivery) before its message is committed,
//! so an id must never be handed out twice, even across a crash. Ids are therefore taken from
//! blocks reserved durably in `counters` ahead of use: after a crash the next run starts past
//! the whole reserved block, leaving a gap but never reusing an id a client may have seen.
//!
//! One reservation is asked at a time (`requesting`). The writer settles each request once:
//! [`IdAllocator::reserved`] (or [`IdAllocator::reserved_block`]) when it committed,
//! [`IdAllocator::reservation_failed`] when it did not, and either way the next allocation or
//! waiting publisher may ask again.
//!
//! On PostgreSQL a reservation is one atomic "add a block to the counter, return the new
//! bound", so that nodes sharing the database get disjoint blocks. One node alone gets each
//! block right after the previous one; with several, a block may start past a gap (the ids
//! other nodes took): it is kept aside and used once the current block runs out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

/// Ids reserved per block, unless the store is opened with another size (tests use small
/// blocks to reach the thresholds below in a few allocations).
pub const BLOCK: u64 = 1_000_000;

/// Hands out message ids from durably reserved blocks.
#[derive(Debug)]
pub struct IdAllocator {
    next: AtomicU64,
    reserved: watch::Sender<u64>,
    requesting: AtomicBool,
    /// A block `(first, through)` reserved past a gap, used once the current one runs out. A
    /// std Mutex: taken for a copy, never across an await (allocation runs under the hub lock).
    after_gap: Mutex<Option<(u64, u64)>>,
    /// Ids per reservation; the thresholds below are fractions of it.
    block: u64,
}

impl IdAllocator {
    /// Starts after `last_used` with ids up to `reserved_through` already reserved on disk,
    /// reserving `block` ids at a time (at least 4, so that both thresholds are non-zero).
    pub fn new(last_used: u64, reserved_through: u64, block: u64) -> Self {
        Self {
            next: AtomicU64::new(last_used + 1),
            reserved: watch::Sender::new(reserved_through),
            requesting: AtomicBool::new(false),
            after_gap: Mutex::new(None),
            block: block.max(4),
        }
    }

    /// Ids per reservation.
    pub fn block(&self) -> u64 {
        self.block
    }

    fn after_gap(&self) -> std::sync::MutexGuard<'_, Option<(u64, u64)>> {
        self.after_gap
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ids reserved from `next` on: the rest of the current block, plus a block past a gap.
    fn remaining(&self, next: u64) -> u64 {
        let reserved = *self.reserved.borrow();
        self.remaining_past(reserved, next)
    }

    /// [`Self::remaining`] with the current block's end already read.
    fn remaining_past(&self, reserved: u64, next: u64) -> u64 {
        let current = (reserved + 1).saturating_sub(next);
        let later = self
            .after_gap()
            .map_or(0, |(first, through)| through + 1 - first);
        current + later
    }

    /// A new block is requested when fewer ids than this remain reserved.
    fn request_below(&self) -> u64 {
        self.block / 2
    }

    /// Publishers wait (before taking the hub lock) when fewer ids than this remain reserved,
    /// so that allocation under the lock never runs past the reservation: that would take
    /// this many publishers between their check and the lock.
    fn wait_below(&self) -> u64 {
        self.block / 4
    }

    /// The id the next message will get.
    pub fn peek_next(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// The last id handed out (0 if none).
    pub fn last_allocated(&self) -> u64 {
        self.peek_next() - 1
    }

    /// Takes the next id. Returns it and, when the reservation runs low, the new bound to
    /// reserve (the caller sends it to the writer).
    pub fn allocate(&self) -> (u64, Option<u64>) {
        let mut id = self.next.fetch_add(1, Ordering::AcqRel);
        let reserved = *self.reserved.borrow();
        if id > reserved {
            if let Some((first, through)) = self.after_gap().take() {
                // The current block ran out: continue in the one past the gap. Callers are
                // serialized by the hub lock, so nobody allocates between these two steps.
                id = first;
                self.next.store(first + 1, Ordering::Release);
                self.reserved.send_modify(|r| *r = (*r).max(through));
            } else {
                tracing::error!(id, reserved, "message id allocated past its reservation");
            }
        }
        (id, self.request_if_low(id))
    }

    fn request_if_low(&self, id: u64) -> Option<u64> {
        if self.remaining(id + 1) < self.request_below()
            && !self.requesting.swap(true, Ordering::AcqRel)
        {
            Some(id + self.block)
        } else {
            None
        }
    }

    /// Whether a publisher must wait for a reservation, and the bound to request if so.
    pub fn needs_headroom(&self) -> Option<Option<u64>> {
        let next = self.peek_next();
        if self.remaining(next) > self.wait_below() {
            return None;
        }
        Some(self.request_if_low(next))
    }

    /// Waits until the reservation covers `wait_below` ids past the next one. Does not
    /// return while a request fails: the caller bounds the wait and asks again.
    pub async fn wait_for_headroom(&self) {
        let mut rx = self.reserved.subscribe();
        let _ = rx
            .wait_for(|r| self.remaining_past(*r, self.peek_next()) > self.wait_below())
            .await;
    }

    /// Called by the writer once a reservation up to `through` is committed.
    pub fn reserved(&self, through: u64) {
        self.reserved.send_modify(|r| *r = (*r).max(through));
        self.requesting.store(false, Ordering::Release);
    }

    /// Called by the writer once a reservation of the ids `first..=through` is committed:
    /// right after the current block (one node), or past a gap that other nodes' blocks
    /// took, kept for when the current block runs out.
    pub fn reserved_block(&self, first: u64, through: u64) {
        if first <= *self.reserved.borrow() + 1 {
            self.reserved(through);
            return;
        }
        *self.after_gap() = Some((first, through));
        self.requesting.store(false, Ordering::Release);
        // Wakes the publishers waiting for headroom: they count this block too.
        self.reserved.send_modify(|_| {});
    }

    /// Called by the writer when a reservation could not be committed: the reservation stays
    /// where it was, and the next allocation or waiting publisher asks again.
    pub fn reservation_failed(&self) {
        self.requesting.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_and_a_new_block_is_requested_once_when_half_is_used() {
        let ids = IdAllocator::new(10, 10 + BLOCK, BLOCK);
        assert_eq!(ids.allocate(), (11, None));
        let ids = IdAllocator::new(10, 10 + BLOCK / 2, BLOCK);
        let (id, request) = ids.allocate();
        assert_eq!(id, 11);
        assert_eq!(request, Some(11 + BLOCK));
        assert_eq!(ids.allocate().1, None, "one request at a time");
        ids.reserved(11 + BLOCK);
        assert_eq!(ids.allocate().1, None, "plenty reserved again");
    }

    #[test]
    fn a_failed_reservation_is_requested_again_by_the_next_allocation() {
        let ids = IdAllocator::new(10, 10 + BLOCK / 2, BLOCK);
        assert_eq!(ids.allocate(), (11, Some(11 + BLOCK)));
        assert_eq!(ids.allocate().1, None, "one request at a time");

        ids.reservation_failed();

        assert_eq!(ids.allocate(), (13, Some(13 + BLOCK)));
    }

    #[test]
    fn a_block_past_a_gap_is_used_once_the_current_one_runs_out() {
        // Arrange: ids 11..=14 reserved, then a block that another node's reservation pushed
        // past ids 15..=99.
        let ids = IdAllocator::new(10, 14, 8);
        let (_, request) = ids.allocate();
        assert!(request.is_some(), "few ids left: a block is requested");
        ids.reserved_block(100, 107);

        // Act
        let taken: Vec<u64> = (0..8).map(|_| ids.allocate().0).collect();

        // Assert
        assert_eq!(taken, [12, 13, 14, 100, 101, 102, 103, 104]);
        assert_eq!(ids.last_allocated(), 104);
    }

    #[test]
    fn a_block_right_after_the_current_one_extends_it() {
        let ids = IdAllocator::new(10, 14, 8);
        ids.reserved_block(15, 22);
        let taken: Vec<u64> = (0..6).map(|_| ids.allocate().0).collect();
        assert_eq!(taken, [11, 12, 13, 14, 15, 16]);
    }

    #[test]
    fn publishers_wait_only_when_the_reservation_runs_out() {
        let ids = IdAllocator::new(0, BLOCK, BLOCK);
        assert_eq!(ids.needs_headroom(), None);
        let low = IdAllocator::new(0, BLOCK / 4 - 1, BLOCK);
        assert!(low.needs_headroom().is_some());
    }
}
