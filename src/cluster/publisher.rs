//! Everything this node says on the bus, numbered in one sequence per run: the hub's changes,
//! the messages this node committed, its list of users when asked, a heartbeat, and a
//! goodbye. One task, so that the numbering and the order of sending are the same thing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Me;
use super::bus::Bus;
use super::wire::{Body, Envelope, WireMessage};
use crate::hub::{ClusterEvent, Hub, NodeUser};

/// Users per message of a full list (a user is ~100 bytes; NATS takes 1 MiB by default).
const USERS_PER_PART: usize = 1_000;

/// What the publisher is asked to send besides the hub's changes and committed messages.
pub enum Control {
    /// A body as is.
    Send(Body),
    /// This node's full list of users.
    Users,
    /// Goodbye, then answer.
    Bye(oneshot::Sender<()>),
    /// Speak as a new run from now on (numbered from 1): this node was declared lost, and
    /// the others ignore its old run.
    NewRun(u64),
}

/// What the publisher reads from.
pub struct Sources {
    /// The hub's changes.
    pub hub_events: mpsc::Receiver<ClusterEvent>,
    /// This node's commits, from the sequencer's task.
    pub committed: mpsc::Receiver<Vec<WireMessage>>,
    /// The receiver's and `Cluster::leave`'s orders.
    pub control: mpsc::Receiver<Control>,
}

/// Sends everything this node says, numbered in one sequence.
pub struct Publisher {
    bus: Arc<dyn Bus>,
    me: Me,
    /// The number of the last envelope sent.
    seq: u64,
    hub: Hub,
}

impl Publisher {
    /// Nothing sent yet.
    pub fn new(bus: Arc<dyn Bus>, me: Me, hub: Hub) -> Self {
        Self {
            bus,
            me,
            seq: 0,
            hub,
        }
    }

    /// Sends until `stop`, with a heartbeat every `heartbeat`.
    pub async fn run(mut self, mut from: Sources, heartbeat: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(messages) = from.committed.recv() => {
                    self.send(Body::Messages { messages }).await;
                }
                Some(event) = from.hub_events.recv() => self.send(Body::Event(event)).await,
                Some(order) = from.control.recv() => self.obey(order, &mut from.hub_events).await,
                _ = tick.tick() => self.beat(&mut from.hub_events).await,
            }
        }
    }

    async fn obey(&mut self, order: Control, hub_events: &mut mpsc::Receiver<ClusterEvent>) {
        match order {
            Control::Send(body) => self.send(body).await,
            Control::Users => self.send_users().await,
            Control::NewRun(run) => {
                self.me = self.me.with_run(run);
                self.seq = 0;
            }
            Control::Bye(done) => {
                // The departures of the connections just closed go first: heard after the
                // goodbye, they would make this node look alive again.
                while let Ok(event) = hub_events.try_recv() {
                    self.send(Body::Event(event)).await;
                }
                self.send(Body::Bye).await;
                self.bus.flush().await;
                let _ = done.send(());
            }
        }
    }

    /// The heartbeat, after the full list of users if the hub lost changes.
    async fn beat(&mut self, hub_events: &mut mpsc::Receiver<ClusterEvent>) {
        if self.hub.take_resync() {
            // Older changes still queued would land after the list and undo it.
            while hub_events.try_recv().is_ok() {}
            self.send_users().await;
        }
        self.send(Body::Heartbeat).await;
    }

    async fn send(&mut self, body: Body) {
        self.seq += 1;
        let envelope = Envelope {
            cluster: self.me.cluster,
            node: self.me.node.clone(),
            run: self.me.run,
            seq: self.seq,
            body,
        };
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a bus message");
                return;
            }
        };
        // The sender beside the payload: a node reads only that much of what it hears of
        // itself.
        match self.bus.publish(&self.me.sender, bytes.into()).await {
            Ok(()) => self.hub.metrics().cluster().sent(),
            Err(e) => tracing::warn!(error = %e, "could not publish on the bus"),
        }
    }

    async fn send_users(&mut self) {
        let users = self.hub.node_users();
        let parts: Vec<Vec<NodeUser>> = users
            .chunks(USERS_PER_PART)
            .map(<[NodeUser]>::to_vec)
            .collect();
        let count = parts.len().max(1);
        let mut parts = parts.into_iter();
        for i in 0..count {
            let users = parts.next().unwrap_or_default();
            self.send(Body::Users {
                users,
                last: i + 1 == count,
            })
            .await;
        }
    }
}
