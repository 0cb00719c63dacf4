//! Cluster mode (`docs/protocol.md` section 13): several nodes on one PostgreSQL database behave as one
//! gateway, exchanging over a bus (NATS, or one in process for tests) what the others must
//! know. The design, in short (the whole of it is "Cluster mode" in `docs/architecture.md`):
//!
//! - **Messages** get their ids in the transaction that stores them, in commit order without
//!   holes (`store/sequence.rs`). Each node publishes what it committed; every node delivers
//!   its own and the others' messages to its connections in id order (`sequencer.rs`), reading
//!   from the database whatever the bus did not bring. So a client's highest id seen is a
//!   safe recovery cursor on any node.
//! - **Presence**: each node announces its users' connection counts as they change, the full
//!   list when asked (a node starting, or one that missed something), and a heartbeat; the
//!   hub merges them with its own (`hub/cluster.rs`). A node silent for `NODE_TIMEOUT_SECS` is
//!   lost (`liveness.rs`): its users leave presence and its open session rows are closed with
//!   reason `node_lost` (one `UPDATE`; whichever node runs it first closes them).
//! - **Rooms, kicks, revocations** travel as events; memberships and revocations are also in
//!   the database, which a starting node reads.
//!
//! On NATS everything goes on one subject, `<NATS_SUBJECT_PREFIX>.bus`, so that NATS keeps
//! each node's messages in the order it sent them (`wire.rs`).
//!
//! The files, one step each:
//! - [`bus`]: the [`Bus`] trait, all the rest knows of the network; `nats.rs` implements it on
//!   NATS, [`memory`] in one process for tests (with faults on demand).
//! - `publisher.rs`: everything this node says, numbered; `receiver.rs`: everything it hears,
//!   and the liveness checks (`liveness.rs` keeps the books).
//! - `sequencer.rs`: the order of delivery, decisions only; `delivery.rs` runs it against the
//!   hub and the store.
//! - This file: joining (the steps in order) and leaving.

pub mod bus;
mod delivery;
mod liveness;
#[doc(hidden)]
pub mod memory;
mod nats;
mod publisher;
mod receiver;
mod sequencer;
mod wire;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::config::{ClusterSettings, NodeId};
use crate::hub::{Hub, OUTBOX_CAPACITY};
use crate::store::{ClusterStore, CommittedMessage, StoreError};
pub use bus::{Bus, BusError};
use publisher::{Control, Publisher, Sources};
use receiver::{Receiver, Wiring};
use wire::Body;

/// Batches of committed messages waiting to be published.
const PUBLISH_QUEUE: usize = 1_024;
/// Batches of other nodes' messages waiting for the sequencer.
const REMOTE_QUEUE: usize = 1_024;
/// Orders waiting for the publisher.
const CONTROL_QUEUE: usize = 64;
/// How long a stopping node waits for its goodbye to leave.
const BYE_WAIT: Duration = Duration::from_secs(2);
/// How long a stopping node waits for its bus tasks to end once told to, before it drops
/// them: a publisher blocked on a bus that is unreachable would otherwise hold the stop, and
/// the store's record of a clean stop after it, until the bus came back.
const TASKS_WAIT: Duration = Duration::from_secs(1);
/// How often the offline-queue lengths are read back from the database: other nodes mark
/// deliveries of what this one queued (`MAX_QUEUED_PER_USER` is checked against them).
const QUEUE_COUNTS_EVERY: Duration = Duration::from_secs(5);

/// Why this node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The bus did not answer or refused (NATS unreachable, a subscription refused).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A cluster needs PostgreSQL.
    #[error("NATS_URL needs a PostgreSQL DATABASE_URL")]
    NotPostgres,
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// This node's membership of a cluster: the bus tasks, until [`Cluster::leave`].
pub struct Cluster {
    control: mpsc::Sender<Control>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Who this node is on the bus.
#[derive(Clone)]
struct Me {
    /// The cluster's identity, from the database.
    cluster: i64,
    /// `<node>/<run>`, the sender of everything this node publishes.
    sender: String,
    node: String,
    run: u64,
}

impl Me {
    /// The same node as run `run`.
    fn with_run(&self, run: u64) -> Self {
        Self {
            cluster: self.cluster,
            sender: format!("{}/{run}", self.node),
            node: self.node.clone(),
            run,
        }
    }
}

/// The bus this node joins: `given` (an embedder's or a test's), else NATS at `NATS_URL`,
/// else none (the node runs alone).
pub async fn choose_bus(
    given: Option<Arc<dyn Bus>>,
    node_id: &NodeId,
    settings: &ClusterSettings,
) -> Result<Option<Arc<dyn Bus>>, ClusterError> {
    if given.is_some() {
        return Ok(given);
    }
    let Some(url) = &settings.nats_url else {
        return Ok(None);
    };
    let bus = nats::NatsBus::connect(url, node_id, settings).await?;
    Ok(Some(Arc::new(bus)))
}

/// The channels between the four tasks of a node's membership.
struct Channels {
    publish: mpsc::Sender<Vec<wire::WireMessage>>,
    remote: mpsc::Sender<Vec<CommittedMessage>>,
    control: mpsc::Sender<Control>,
    sources: Sources,
    remote_rx: mpsc::Receiver<Vec<CommittedMessage>>,
}

impl Cluster {
    /// Subscribes to `bus`, switches the store to ids at commit and the hub to cluster
    /// delivery, and starts the bus tasks.
    pub async fn join(
        hub: Hub,
        verifier: Verifier,
        node_id: &NodeId,
        settings: &ClusterSettings,
        bus: Arc<dyn Bus>,
    ) -> Result<Self, ClusterError> {
        // The cluster's door into the store, taken once: SQLite has none.
        let db = hub.store().cluster().ok_or(ClusterError::NotPostgres)?;
        let me = introduce(&db, node_id).await?;
        let inbox = bus.subscribe().await?;
        // After subscribing: every id above `head` is either heard or read back.
        let (head, local) = db
            .sequence_at_commit()
            .await?
            .ok_or(ClusterError::NotPostgres)?;
        let channels = channels(&hub);
        let heartbeat = (settings.node_timeout / 5).max(Duration::from_millis(100));
        tracing::info!(node = %me.node, head, "joined the cluster");
        let stop = CancellationToken::new();
        let receiver = Receiver::new(
            me.clone(),
            hub.clone(),
            verifier,
            Wiring {
                remote: channels.remote,
                control: channels.control.clone(),
                link: bus.link(),
                db: db.clone(),
            },
            heartbeat,
            settings.node_timeout,
        );
        let publisher = Publisher::new(bus, me, hub.clone());
        let inputs = delivery::Inputs {
            local,
            remote: channels.remote_rx,
            publish: channels.publish,
        };
        let tasks = vec![
            tokio::spawn(publisher.run(channels.sources, heartbeat, stop.clone())),
            tokio::spawn(receiver.run(inbox, stop.clone())),
            tokio::spawn(refresh_queue_counts(db.clone(), stop.clone())),
            tokio::spawn(delivery::run(hub, db, head, inputs, stop.clone())),
        ];
        say_hello(&channels.control).await;
        Ok(Self {
            control: channels.control,
            stop,
            tasks,
        })
    }

    /// Says goodbye (the others drop this node's users at once instead of at the timeout)
    /// and stops the bus tasks. Call after the connections are closed. Bounded whatever the
    /// bus does: [`BYE_WAIT`] for the goodbye, then [`TASKS_WAIT`] for the tasks, which are
    /// dropped past it (with the bus unreachable, the others count this node lost at the
    /// timeout instead; its sessions are closed already).
    pub async fn leave(self) {
        let (done, said) = oneshot::channel();
        let goodbye = async {
            if self.control.send(Control::Bye(done)).await.is_ok() {
                let _ = said.await;
            }
        };
        if tokio::time::timeout(BYE_WAIT, goodbye).await.is_err() {
            tracing::warn!("the goodbye did not leave in time (is the bus unreachable?)");
        }
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + TASKS_WAIT;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// Who this node is: its `NODE_ID`, a new run, and the cluster of its database.
async fn introduce(db: &ClusterStore, node_id: &NodeId) -> Result<Me, ClusterError> {
    let me = Me {
        cluster: db.cluster_identity().await?,
        sender: String::new(),
        node: node_id.as_str().to_owned(),
        run: 0,
    };
    Ok(me.with_run(run_id()))
}

/// The channels between the tasks; the hub's outbox is switched on here.
fn channels(hub: &Hub) -> Channels {
    let (outbox, hub_events) = mpsc::channel(OUTBOX_CAPACITY);
    hub.join_cluster(outbox);
    let (publish, committed) = mpsc::channel(PUBLISH_QUEUE);
    let (remote, remote_rx) = mpsc::channel(REMOTE_QUEUE);
    let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
    Channels {
        publish,
        remote,
        control,
        sources: Sources {
            hub_events,
            committed,
            control: control_rx,
        },
        remote_rx,
    }
}

/// Asks the others for their users, and tells them this node has none yet.
async fn say_hello(control: &mpsc::Sender<Control>) {
    let _ = control.send(Control::Send(Body::Hello)).await;
    let _ = control.send(Control::Users).await;
}

/// A number that grows from one run of a node to the next (the start time, in nanoseconds,
/// with the process id in the low bits), so that a straggler from an older run is told apart.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos & !0xffff) | u64::from(std::process::id() & 0xffff)
}

/// Reads every user's offline-queue length back from the database every
/// [`QUEUE_COUNTS_EVERY`], until `stop`.
async fn refresh_queue_counts(store: ClusterStore, stop: CancellationToken) {
    let mut every = tokio::time::interval(QUEUE_COUNTS_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                if let Err(e) = store.reload_queue_counts().await {
                    tracing::warn!(error = %e, "could not refresh the offline-queue lengths");
                }
            }
        }
    }
}
