//! Cluster mode (`docs/protocol.md` section 13): several nodes on one PostgreSQL database behave as
//! one gateway, exchanging over NATS what the others must know. The design, in short (the whole of
//! it is "Cluster mode" in `docs/architecture.md`):
//!
//! - **Messages** get their ids in the transaction that stores them, in commit order without
//!   holes (`store/sequence.rs`). Each node publishes what it committed; every node delivers
//!   its own and the others' messages to its connections in id order ([`sequencer`]), reading
//!   from the database whatever the bus did not bring. So a client's highest id seen is a
//!   safe recovery cursor on any node.
//! - **Presence**: each node announces its users' connection counts as they change, the full
//!   list when asked (a node starting, or one that missed something), and a heartbeat; the
//!   hub merges them with its own (`hub/cluster.rs`). A node silent for `NODE_TIMEOUT_SECS` is
//!   lost ([`liveness`]): its users leave presence and its open session rows are closed with
//!   reason `node_lost` (one `UPDATE`; whichever node runs it first closes them).
//! - **Rooms, kicks, revocations** travel as events; memberships and revocations are also in
//!   the database, which a starting node reads.
//!
//! Everything goes on one subject, `<NATS_SUBJECT_PREFIX>.bus`, so that NATS keeps each node's
//! messages in the order it sent them ([`wire`]).

mod liveness;
mod sequencer;
mod wire;

use std::time::{Duration, Instant, SystemTime};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::config::{ClusterSettings, NodeId};
use crate::hub::{CloseReason, ClusterEvent, Hub, NodeUser, OUTBOX_CAPACITY};
use crate::protocol::wire::timestamp;
use crate::store::{ClusterStore, StoreError};
use liveness::{Heard, Nodes};
use wire::{Body, Envelope, WireMessage};

/// Users per message of a full list (a user is ~100 bytes; NATS takes 1 MiB by default).
const USERS_PER_PART: usize = 1_000;
/// Batches of committed messages waiting to be published.
const PUBLISH_QUEUE: usize = 1_024;
/// Batches of other nodes' messages waiting for the sequencer.
const REMOTE_QUEUE: usize = 1_024;
/// How long `NATS_URL` gets to answer at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The NATS header naming a bus message's sender (`<node>/<run>`).
const SENDER_HEADER: &str = "Switchboard-Sender";
/// Least time between two complaints about another cluster on the subject.
const FOREIGN_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Bus messages already arrived that are taken before the liveness checks.
const DRAIN_BEFORE_CHECK: usize = 10_000;
/// How long a stopping node waits for its goodbye to reach NATS.
const BYE_WAIT: Duration = Duration::from_secs(2);
/// How often the offline-queue lengths are read back from the database: other nodes mark
/// deliveries of what this one queued (`MAX_QUEUED_PER_USER` is checked against them).
const QUEUE_COUNTS_EVERY: Duration = Duration::from_secs(5);

/// Why this node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// NATS did not answer.
    #[error("could not connect to the NATS server at {url} (NATS_URL): {source}")]
    Connect {
        /// The URL, without credentials.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// NATS refused the subscription.
    #[error("could not subscribe to {subject} on the NATS server: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The cause.
        source: async_nats::SubscribeError,
    },
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

/// What the publisher is asked to send besides the hub's changes and committed messages.
enum Control {
    /// A body as is.
    Send(Body),
    /// This node's full list of users.
    Users,
    /// Goodbye, then answer.
    Bye(oneshot::Sender<()>),
}

/// Whether this node's NATS connection is up, as its events say.
#[derive(Default)]
struct BusLink {
    down_since: std::sync::Mutex<Option<Instant>>,
}

impl BusLink {
    fn set(&self, down: bool) {
        let mut since = self
            .down_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *since = match down {
            true => Some(since.unwrap_or_else(Instant::now)),
            false => None,
        };
    }

    fn down_since(&self) -> Option<Instant> {
        *self
            .down_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Who this node is on the bus.
#[derive(Clone)]
struct Me {
    /// The cluster's identity, from the database.
    cluster: i64,
    /// `<node>/<run>`, the [`SENDER_HEADER`] of everything this node sends.
    sender: String,
    node: String,
    run: u64,
    subject: String,
}

impl Cluster {
    /// Connects to NATS, subscribes, switches the store to ids at commit and the hub to
    /// cluster delivery, and starts the bus tasks. Fails when NATS cannot be reached.
    pub async fn join(
        hub: Hub,
        verifier: Verifier,
        node_id: &NodeId,
        settings: &ClusterSettings,
    ) -> Result<Self, ClusterError> {
        let Some(url) = &settings.nats_url else {
            return Err(ClusterError::NotPostgres);
        };
        let db = hub.store().cluster().ok_or(ClusterError::NotPostgres)?;
        let run = run_id();
        let me = Me {
            cluster: db.cluster_identity().await?,
            sender: format!("{node_id}/{run}"),
            node: node_id.as_str().to_owned(),
            run,
            subject: format!("{}.bus", settings.subject_prefix),
        };
        let servers: Vec<&str> = url.expose().split(',').map(str::trim).collect();
        let link = std::sync::Arc::new(BusLink::default());
        let events = link.clone();
        let connect = async_nats::ConnectOptions::new()
            .name(format!("switchboard {}", me.node))
            // Echo on: hearing its own heartbeats is how a node knows its bus path works
            // (a half-open connection looks connected until pings fail).
            .ping_interval((settings.node_timeout / 4).max(Duration::from_secs(1)))
            .connection_timeout(CONNECT_TIMEOUT)
            .subscription_capacity(65_536)
            .event_callback(move |event| {
                let link = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            link.set(false);
                            tracing::info!("connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            link.set(true);
                            tracing::warn!("disconnected from NATS; reconnecting");
                        }
                        // Closed: this node is stopping.
                        async_nats::Event::Closed => tracing::info!("NATS connection closed"),
                        other => tracing::warn!(event = %other, "NATS connection"),
                    }
                }
            })
            .connect(servers);
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, connect)
            .await
            .map_err(|_| ClusterError::Connect {
                url: url.redacted(),
                source: async_nats::ConnectError::from(async_nats::ConnectErrorKind::TimedOut),
            })?
            .map_err(|source| ClusterError::Connect {
                url: url.redacted(),
                source,
            })?;
        let subscriber = client
            .subscribe(me.subject.clone())
            .await
            .map_err(|source| ClusterError::Subscribe {
                subject: me.subject.clone(),
                source,
            })?;
        // After subscribing: every id above `head` is either heard or read back.
        let (head, local) = db
            .sequence_at_commit()
            .await?
            .ok_or(ClusterError::NotPostgres)?;
        let (outbox, hub_events) = mpsc::channel(OUTBOX_CAPACITY);
        hub.join_cluster(outbox);
        let (publish, committed) = mpsc::channel(PUBLISH_QUEUE);
        let (remote_tx, remote) = mpsc::channel(REMOTE_QUEUE);
        let (control, control_rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let heartbeat = (settings.node_timeout / 5).max(Duration::from_millis(100));
        tracing::info!(node = %me.node, subject = %me.subject, head, "joined the cluster");

        let publisher = Publisher {
            client,
            me: me.clone(),
            seq: 0,
            hub: hub.clone(),
        };
        let receiver = Receiver {
            me: me.clone(),
            hub: hub.clone(),
            db: db.clone(),
            verifier,
            nodes: Nodes::new(settings.node_timeout),
            remote: remote_tx,
            control: control.clone(),
            asked_at: None,
            ask_every: heartbeat,
            link,
            timeout: settings.node_timeout,
            started: Instant::now(),
            orphans_checked: false,
            heard_self: Instant::now(),
            foreign_warned: None,
        };
        let tasks = vec![
            tokio::spawn(publisher.run(hub_events, committed, control_rx, heartbeat, stop.clone())),
            tokio::spawn(receiver.run(subscriber, stop.clone())),
            tokio::spawn(refresh_queue_counts(db.clone(), stop.clone())),
            tokio::spawn(sequencer::run(
                hub,
                db,
                head,
                sequencer::Inputs {
                    local,
                    remote,
                    publish,
                },
                stop.clone(),
            )),
        ];
        // Ask the others for their users, and tell them this node has none yet.
        let _ = control.send(Control::Send(Body::Hello)).await;
        let _ = control.send(Control::Users).await;
        Ok(Self {
            control,
            stop,
            tasks,
        })
    }

    /// Says goodbye (the others drop this node's users at once instead of at the timeout)
    /// and stops the bus tasks. Call after the connections are closed.
    pub async fn leave(self) {
        let (done, said) = oneshot::channel();
        if self.control.send(Control::Bye(done)).await.is_ok() {
            let _ = tokio::time::timeout(BYE_WAIT, said).await;
        }
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A number that grows from one run of a node to the next (the start time, in nanoseconds,
/// with the process id in the low bits), so that a straggler from an older run is told apart.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos & !0xffff) | u64::from(std::process::id() & 0xffff)
}

/// Sends everything this node says, numbered in one sequence.
struct Publisher {
    client: async_nats::Client,
    me: Me,
    seq: u64,
    hub: Hub,
}

impl Publisher {
    async fn run(
        mut self,
        mut hub_events: mpsc::Receiver<ClusterEvent>,
        mut committed: mpsc::Receiver<Vec<WireMessage>>,
        mut control: mpsc::Receiver<Control>,
        heartbeat: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(messages) = committed.recv() => {
                    self.send(Body::Messages { messages }).await;
                }
                Some(event) = hub_events.recv() => self.send(Body::Event(event)).await,
                Some(order) = control.recv() => match order {
                    Control::Send(body) => self.send(body).await,
                    Control::Users => self.send_users().await,
                    Control::Bye(done) => {
                        // The departures of the connections just closed go first: heard
                        // after the goodbye, they would make this node look alive again.
                        while let Ok(event) = hub_events.try_recv() {
                            self.send(Body::Event(event)).await;
                        }
                        self.send(Body::Bye).await;
                        let _ = self.client.flush().await;
                        let _ = done.send(());
                    }
                },
                _ = tick.tick() => {
                    if self.hub.take_resync() {
                        // Older changes still queued would land after the list and undo it.
                        while hub_events.try_recv().is_ok() {}
                        self.send_users().await;
                    }
                    self.send(Body::Heartbeat).await;
                }
            }
        }
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
        // The sender in a header: a node reads only that much of what it hears of itself.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SENDER_HEADER, self.me.sender.as_str());
        match self
            .client
            .publish_with_headers(self.me.subject.clone(), headers, bytes.into())
            .await
        {
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

/// Applies what the other nodes say, and notices the ones that fell silent.
struct Receiver {
    me: Me,
    hub: Hub,
    /// The store's cluster door, opened once at join.
    db: ClusterStore,
    verifier: Verifier,
    nodes: Nodes,
    remote: mpsc::Sender<Vec<crate::store::CommittedMessage>>,
    control: mpsc::Sender<Control>,
    /// When this node last asked everyone for their users.
    asked_at: Option<Instant>,
    ask_every: Duration,
    /// This node's own connection to NATS.
    link: std::sync::Arc<BusLink>,
    /// `NODE_TIMEOUT_SECS`.
    timeout: Duration,
    /// When this node joined.
    started: Instant,
    /// Whether nodes that left open sessions behind and were never heard were looked for.
    orphans_checked: bool,
    /// When this node last heard its own heartbeat come back.
    heard_self: Instant,
    /// When another cluster on the subject was last complained about.
    foreign_warned: Option<Instant>,
}

impl Receiver {
    async fn run(mut self, mut subscriber: async_nats::Subscriber, stop: CancellationToken) {
        let mut check = tokio::time::interval(self.ask_every / 2);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                message = subscriber.next() => {
                    let Some(message) = message else {
                        tracing::error!("the bus subscription ended: this node counts its bus as gone");
                        self.link.set(true);
                        break;
                    };
                    self.receive(&message);
                }
                _ = check.tick() => {
                    // What already arrived first: after a stall, the silence is this node's.
                    for _ in 0..DRAIN_BEFORE_CHECK {
                        match subscriber.next().now_or_never() {
                            Some(Some(message)) => self.receive(&message),
                            _ => break,
                        }
                    }
                    self.watch_own_link();
                    self.declare_lost();
                    self.close_orphans();
                    self.hub.metrics().cluster().nodes(self.nodes.count());
                }
            }
        }
    }

    fn receive(&mut self, message: &async_nats::Message) {
        self.hub.metrics().cluster().received();
        let sender = message
            .headers
            .as_ref()
            .and_then(|h| h.get(SENDER_HEADER))
            .map(|v| v.as_str());
        if sender == Some(self.me.sender.as_str()) {
            // Its own message, heard back: the bus works; nothing else to read in it.
            self.heard_self = Instant::now();
            return;
        }
        match serde_json::from_slice::<Envelope>(&message.payload) {
            Ok(envelope) => self.apply(envelope),
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable bus message"),
        }
    }

    fn apply(&mut self, envelope: Envelope) {
        let Envelope {
            cluster,
            node,
            run,
            seq,
            body,
        } = envelope;
        if cluster != self.me.cluster {
            let now = Instant::now();
            if self
                .foreign_warned
                .is_none_or(|at| now.duration_since(at) > FOREIGN_WARNING_EVERY)
            {
                self.foreign_warned = Some(now);
                tracing::error!(
                    node,
                    "another cluster (another database) publishes on this \
                    NATS subject: give each cluster its own NATS_SUBJECT_PREFIX; ignoring it"
                );
            }
            return;
        }
        if node == self.me.node {
            if run == self.me.run {
                self.heard_self = Instant::now();
            } else {
                tracing::error!(
                    node,
                    "another process uses this NODE_ID: give each node its own"
                );
            }
            return;
        }
        let heard = self.nodes.heard(&node, run, seq, Instant::now());
        if heard == Heard::Departed {
            return;
        }
        if heard != Heard::Known {
            // What it said while unheard may include revocations: the database has them all.
            self.reload_revocations();
        }
        match heard {
            Heard::Known | Heard::Departed => {}
            Heard::Restarted => {
                tracing::info!(node, "node restarted");
                self.hub.remote_node_gone(&node);
                self.ask_for_users(seq);
            }
            Heard::New => {
                tracing::info!(node, "node joined");
                self.ask_for_users(seq);
            }
            Heard::Gap => {
                tracing::warn!(
                    node,
                    seq,
                    "missed bus messages from a node; asking for its users"
                );
                self.ask_for_users(0);
            }
        }
        match body {
            Body::Messages { messages } => {
                let batch: Vec<_> = messages
                    .into_iter()
                    .filter_map(WireMessage::into_committed)
                    .collect();
                // Never waits (liveness is watched on this loop): a batch the sequencer has
                // no room for is read back from the database as a hole.
                if self.remote.try_send(batch).is_err() {
                    tracing::debug!(node, "sequencer behind; a batch will be read back");
                }
            }
            Body::Users { users, last } => {
                if let Some(all) = self.nodes.users_part(&node, users, last) {
                    self.hub.remote_node_users(&node, all);
                }
            }
            Body::Hello => {
                let _ = self.control.try_send(Control::Users);
            }
            Body::Heartbeat => {}
            Body::Event(event) => self.apply_event(&node, event),
            Body::Bye => {
                tracing::info!(node, "node left");
                self.nodes.departed(&node);
                self.hub.remote_node_gone(&node);
            }
        }
    }

    /// Applies a change another node announced.
    fn apply_event(&self, node: &str, event: ClusterEvent) {
        match event {
            ClusterEvent::User(user) => self.hub.remote_user(node, user),
            ClusterEvent::Room {
                room,
                user,
                joined,
                at,
            } => self.hub.remote_room_change(&room, &user, joined, at),
            ClusterEvent::Kick { user_id } => {
                self.hub.close_local_user(&user_id, CloseReason::Kicked);
            }
            ClusterEvent::Revoked {
                user_id,
                not_before,
            } => {
                self.verifier.revocations().revoke(&user_id, not_before);
                self.hub.close_local_user(&user_id, CloseReason::Revoked);
            }
        }
    }

    /// Reads every token revocation from the database into the verifier (revoking is
    /// idempotent): a revocation announced while this node was not listening is not missed.
    /// In a task of its own: this loop never waits for the database.
    fn reload_revocations(&self) {
        let (store, verifier) = (self.hub.store().clone(), self.verifier.clone());
        tokio::spawn(async move {
            match store.token_revocations().await {
                Ok(revocations) => {
                    for (user_id, not_before) in revocations {
                        verifier.revocations().revoke(&user_id, not_before);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not reload token revocations"),
            }
        });
    }

    /// Asks every node for its users, unless this is a node's first message (it sends its
    /// list itself as it starts) or this node asked a moment ago.
    fn ask_for_users(&mut self, seq: u64) {
        if seq == 1 {
            return;
        }
        let now = Instant::now();
        if self
            .asked_at
            .is_some_and(|at| now.duration_since(at) < self.ask_every)
        {
            return;
        }
        self.asked_at = Some(now);
        let _ = self.control.try_send(Control::Send(Body::Hello));
    }

    /// Cuts this node off once its own bus has been gone for the timeout (the others count it
    /// lost by then: its connections would be invisible to them), and takes it back when the
    /// bus returns. The bus counts as gone while NATS says disconnected, or while this node
    /// does not hear its own heartbeats (a half-open connection, a stalled subscription).
    fn watch_own_link(&mut self) {
        let now = Instant::now();
        let echo_silent = now.saturating_duration_since(self.heard_self);
        let down_for = match self.link.down_since() {
            Some(since) => Some(now.saturating_duration_since(since).max(echo_silent)),
            None if echo_silent > self.timeout / 2 => Some(echo_silent),
            None => None,
        };
        if down_for.is_some() {
            // Nobody is heard while this node's own bus is down: that silence is not theirs.
            self.nodes.heard_all(now);
        }
        match down_for {
            Some(down) if down > self.timeout && !self.hub.is_cut_off() => {
                tracing::error!(
                    "the NATS bus has been unreachable for NODE_TIMEOUT_SECS: closing every \
                     connection (node_lost) and refusing new ones until it is back"
                );
                self.hub.cut_off();
                for node in self.nodes.forget_all() {
                    self.hub.remote_node_gone(&node);
                }
            }
            None if self.hub.is_cut_off() => {
                tracing::info!("the NATS bus is back: taking connections again");
                self.reload_revocations();
                self.hub.rejoin();
                self.asked_at = None;
                let _ = self.control.try_send(Control::Send(Body::Hello));
            }
            _ => {}
        }
    }

    /// Once, a timeout after joining: closes the open sessions of nodes that were never heard
    /// (a node that died while no other was running) with reason `node_lost`.
    fn close_orphans(&mut self) {
        if self.orphans_checked || self.started.elapsed() <= self.timeout || self.hub.is_cut_off() {
            return;
        }
        self.orphans_checked = true;
        let store = self.db.clone();
        let me = self.me.node.clone();
        let alive: std::collections::HashSet<String> = self.nodes.alive().collect();
        tokio::spawn(async move {
            let nodes = match store.nodes_with_open_sessions(&me).await {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for sessions left open by lost nodes");
                    return;
                }
            };
            for node in nodes.into_iter().filter(|n| !alive.contains(n)) {
                close_lost_node(&store, &node, "a node not heard since this one joined").await;
            }
        });
    }

    /// Declares the nodes silent past the timeout lost: their users leave presence, their
    /// open sessions are closed with reason `node_lost` (in a task: this loop never waits for
    /// the database). Not while this node's own bus is down (`watch_own_link` counts them
    /// heard meanwhile).
    fn declare_lost(&mut self) {
        for node in self.nodes.take_lost(Instant::now()) {
            self.hub.metrics().cluster().node_lost();
            let users = self.hub.remote_node_gone(&node);
            tracing::warn!(node, users, "node lost: silent past NODE_TIMEOUT_SECS");
            let store = self.db.clone();
            tokio::spawn(async move {
                close_lost_node(&store, &node, "a node lost").await;
            });
        }
    }
}

/// Closes the open sessions of `node` with reason `node_lost`; whichever node gets there
/// first closes them, the others find none.
async fn close_lost_node(store: &ClusterStore, node: &str, why: &'static str) {
    let at = timestamp(SystemTime::now());
    match store.close_node_sessions(node, "node_lost", &at).await {
        Ok(closed) => tracing::warn!(node, closed, "closed the open sessions of {why}"),
        Err(e) => tracing::error!(node, error = %e, "could not close the sessions of {why}"),
    }
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
