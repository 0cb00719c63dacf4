//! The sequencer's task: feeds the [`Sequencer`] this node's commits and the others' (as the
//! receiver passes them on), sleeps until its deadlines, reads back from the database the ids
//! it asks for, and hands what is ready to the hub. This node's own commits are also passed
//! to the publisher from here, so that they go on the bus in commit order.

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::sequencer::{Ready, Sequencer, TAIL_CHECK};
use super::wire::WireMessage;
use crate::hub::Hub;
use crate::store::{ClusterStore, CommittedMessage};

/// Messages read from the database per query when filling a hole.
const FILL_PAGE: u32 = 1_000;

/// The task's inputs.
pub struct Inputs {
    /// This node's commits.
    pub local: mpsc::UnboundedReceiver<Vec<CommittedMessage>>,
    /// Other nodes' commits, as heard on the bus.
    pub remote: mpsc::Receiver<Vec<CommittedMessage>>,
    /// Where this node's commits go to be published.
    pub publish: mpsc::Sender<Vec<WireMessage>>,
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
    let mut delivery = Delivery {
        hub,
        db,
        order: Sequencer::new(head),
    };
    let mut tail_check = tokio::time::interval(TAIL_CHECK);
    loop {
        let hole_deadline = delivery.order.hole_deadline();
        tokio::select! {
            () = stop.cancelled() => break,
            batch = inputs.local.recv() => {
                let Some(batch) = batch else { break };
                publish(&inputs.publish, &batch);
                delivery.arrived(batch);
            }
            Some(batch) = inputs.remote.recv() => delivery.arrived(batch),
            () = sleep_until(hole_deadline.unwrap_or_else(Instant::now)), if hole_deadline.is_some() => {
                delivery.fill_hole().await;
            }
            _ = tail_check.tick() => {
                if delivery.order.tail_check() {
                    delivery.check_tail().await;
                }
            }
        }
    }
}

/// Passes this node's commits to the publisher, without waiting.
fn publish(publisher: &mpsc::Sender<Vec<WireMessage>>, batch: &[CommittedMessage]) {
    let wire: Vec<WireMessage> = batch
        .iter()
        .filter_map(WireMessage::from_committed)
        .collect();
    if publisher.try_send(wire).is_err() {
        // The others read these from the database when they notice the hole.
        tracing::warn!("the bus publisher is behind; committed messages go unannounced");
    }
}

/// The [`Sequencer`] with the hub it delivers to and the store it reads back from.
struct Delivery {
    hub: Hub,
    db: ClusterStore,
    order: Sequencer,
}

impl Delivery {
    fn arrived(&mut self, batch: Vec<CommittedMessage>) {
        let ready = self.order.arrived(batch, Instant::now());
        self.deliver(ready);
    }

    /// A hole waited past `GAP_WAIT`: reads it back from the database.
    async fn fill_hole(&mut self) {
        match self.db.sequence_head().await {
            Ok(head) => {
                if let Some(through) = self.order.hole_read_through(head, Instant::now()) {
                    self.fill(through).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read where ids stand");
                self.order.retry_later(Instant::now());
            }
        }
    }

    /// Nothing arrived for a while: reads back what was committed and never announced.
    async fn check_tail(&mut self) {
        match self.db.sequence_head().await {
            Ok(head) => {
                if let Some(through) = self.order.tail_read_through(head) {
                    self.fill(through).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for unannounced messages"),
        }
    }

    /// Reads the messages up to `through` (all committed or never to be) page by page, and
    /// delivers.
    async fn fill(&mut self, through: u64) {
        while let Some(from) = self.order.read_from(through) {
            let page = self.db.committed_between(from, through, FILL_PAGE).await;
            let (page, stopped_at) = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, from, through,
                        "could not read missed messages; trying again shortly");
                    self.order.retry_later(Instant::now());
                    return;
                }
            };
            let read_through = stopped_at.unwrap_or(through);
            tracing::debug!(
                from,
                through = read_through,
                found = page.len(),
                "read messages the bus did not bring"
            );
            let (ready, fresh) = self.order.read_back(page, read_through, Instant::now());
            self.hub.metrics().cluster().read_back(fresh);
            self.deliver(ready);
            if self.order.read_from(through) == Some(from) {
                // A page that settles nothing (a stop short of `from`) would loop here.
                self.order.retry_later(Instant::now());
                return;
            }
        }
    }

    fn deliver(&self, ready: Ready) {
        if !ready.messages.is_empty() {
            self.hub.deliver_committed(ready.messages);
        }
        if let Some(horizon) = ready.horizon {
            self.hub.store().advance_horizon(horizon);
        }
    }
}
