//! Delivery of committed messages in id order, on every node. Ids are assigned in commit
//! order without holes (`store/sequence.rs`), so the next id to deliver is always known: an
//! id that has not arrived while a higher one has is a message still on its way (on the bus,
//! or this node's own commit), and after [`GAP_WAIT`] it is read from the database, where it
//! is committed (a higher id is). A lost bus message therefore delays delivery, never skips
//! it; and once nothing has arrived for a [`TAIL_CHECK`], the shared counter is looked at, so
//! that a lost last message is found too.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::wire::WireMessage;
use crate::hub::Hub;
use crate::store::{ClusterStore, CommittedMessage};

/// How long a hole below a delivered-ready id may wait for its message on the bus.
pub const GAP_WAIT: Duration = Duration::from_millis(50);
/// How often an idle node looks at the shared counter for messages it never heard of.
pub const TAIL_CHECK: Duration = Duration::from_secs(1);
/// Messages read from the database per query when filling a hole.
const FILL_PAGE: u32 = 1_000;

/// The sequencer's inputs.
pub struct Inputs {
    /// This node's commits.
    pub local: mpsc::UnboundedReceiver<Vec<CommittedMessage>>,
    /// Other nodes' commits, as heard on the bus.
    pub remote: mpsc::Receiver<Vec<CommittedMessage>>,
    /// Where this node's commits go to be published.
    pub publish: mpsc::Sender<Vec<WireMessage>>,
}

struct Sequencer {
    hub: Hub,
    /// Where missed messages are read back from, and the shared counter.
    db: ClusterStore,
    /// The next id to deliver.
    next: u64,
    /// Arrived, waiting for the ids below them.
    pending: BTreeMap<u64, CommittedMessage>,
    /// Every id up to this one is settled in the database: one not found there never will be.
    settled_through: u64,
    /// Since when the lowest pending message waits for a hole below it.
    hole_since: Option<Instant>,
}

/// Runs until `stop`: delivers every committed message once, in id order, starting after
/// `head` (the last id committed before this node joined).
pub async fn run(
    hub: Hub,
    db: ClusterStore,
    head: u64,
    mut inputs: Inputs,
    stop: CancellationToken,
) {
    let mut s = Sequencer {
        hub,
        db,
        next: head + 1,
        pending: BTreeMap::new(),
        settled_through: head,
        hole_since: None,
    };
    let mut tail_check = tokio::time::interval(TAIL_CHECK);
    // Whether anything arrived since the last tail check: a busy node hears of every commit
    // anyway, and a read of messages on their way would only hold its delivery up.
    let mut heard = false;
    loop {
        let hole_deadline = s.hole_since.map(|since| since + GAP_WAIT);
        tokio::select! {
            () = stop.cancelled() => break,
            batch = inputs.local.recv() => {
                let Some(batch) = batch else { break };
                let wire: Vec<WireMessage> =
                    batch.iter().filter_map(WireMessage::from_committed).collect();
                if inputs.publish.try_send(wire).is_err() {
                    // The others read these from the database when they notice the hole.
                    tracing::warn!("the bus publisher is behind; committed messages go unannounced");
                }
                heard = true;
                s.take(batch);
            }
            Some(batch) = inputs.remote.recv() => {
                heard = true;
                s.take(batch);
            }
            () = sleep_until(hole_deadline.unwrap_or_else(Instant::now)), if hole_deadline.is_some() => {
                // Up to what the database says is committed, not what the bus claims.
                match (s.pending.keys().next(), s.db.sequence_head().await) {
                    (Some(&first), Ok(head)) => s.fill((first - 1).min(head)).await,
                    (_, Err(e)) => {
                        tracing::warn!(error = %e, "could not read where ids stand");
                        s.hole_since = Some(Instant::now());
                    }
                    (None, _) => {}
                }
            }
            _ = tail_check.tick() => {
                if !std::mem::take(&mut heard) && s.pending.is_empty() {
                    match s.db.sequence_head().await {
                        Ok(head) if head >= s.next => s.fill(head).await,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "could not look for unannounced messages"),
                    }
                }
            }
        }
    }
}

impl Sequencer {
    /// Takes arrived messages and delivers what is now in order.
    fn take(&mut self, batch: Vec<CommittedMessage>) {
        for message in batch {
            // An id beyond any real one would wrap the counting below: not from our writers.
            if message.id >= self.next && message.id < u64::MAX / 2 {
                self.pending.insert(message.id, message);
            }
        }
        self.deliver_ready();
    }

    /// Delivers the run of messages that continues from `next`, skipping ids known to be
    /// settled without a message (deleted by retention, or never used).
    fn deliver_ready(&mut self) {
        let from = self.next;
        let mut ready = Vec::new();
        loop {
            match self.pending.first_key_value() {
                Some((&id, _)) if id == self.next => {
                    if let Some((_, message)) = self.pending.pop_first() {
                        ready.push(message);
                    }
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
        if !ready.is_empty() {
            self.hub.deliver_committed(ready);
        }
        if self.next > from {
            // Past the ids skipped too (no message has them, so no connection is owed one).
            self.hub.store().advance_horizon(self.next - 1);
        }
        // A hole is timed from when delivery last moved, not from the first hole ever seen.
        self.hole_since = match (self.pending.is_empty(), self.next > from) {
            (true, _) => None,
            (false, true) => Some(Instant::now()),
            (false, false) => Some(self.hole_since.unwrap_or_else(Instant::now)),
        };
    }

    /// Reads the messages with ids from `next` through `through` (all committed or never to
    /// be) from the database, and delivers.
    async fn fill(&mut self, through: u64) {
        while self.next <= through {
            let page = self
                .db
                .committed_between(self.next, through, FILL_PAGE)
                .await;
            let (page, stopped_at) = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, from = self.next, through,
                        "could not read missed messages; trying again shortly");
                    self.hole_since = Some(Instant::now());
                    return;
                }
            };
            let read_through = stopped_at.unwrap_or(through);
            tracing::debug!(
                from = self.next,
                through = read_through,
                found = page.len(),
                "read messages the bus did not bring"
            );
            let fresh = page
                .iter()
                .filter(|m| !self.pending.contains_key(&m.id))
                .count();
            self.hub.metrics().cluster().read_back(fresh as u64);
            for message in page {
                self.pending.insert(message.id, message);
            }
            self.settled_through = self.settled_through.max(read_through);
            self.deliver_ready();
        }
    }
}
