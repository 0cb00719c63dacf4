//! The gateway's Prometheus metrics (`GET /metrics`): one [`Metrics`] per gateway (tests run
//! several gateways in one process, so there is no global registry). Start-up makes it and
//! hands the same `Arc` to the store, the hub and the app state (which the transports and the
//! REST API read it from); each records through methods named by what happened
//! (`connection_opened`, `store_commit`, ...).
//!
//! Cost on the hot path: what happens per message or per event is an atomic add on a handle
//! resolved when the set is built: deliveries (counted once per publish or replayed page,
//! `inc_by(n)`, never per recipient) and every client event that succeeds. Families keyed by
//! something only known later (an error code, a close reason, an event name the store commits)
//! take a read lock on their map once per refusal, per connection or per committed batch.
//! Figures that are state rather than events (live connections, users online, rooms, offline
//! queues) are read from the hub and the store when Prometheus scrapes ([`Metrics::render`]
//! with a [`Live`] snapshot), so nothing has to keep them up to date on the way.
//!
//! The exposition is Prometheus' text format 0.0.4. prometheus-client writes OpenMetrics,
//! whose counter families are named without the `_total` their samples carry and which ends
//! with `# EOF`; [`Metrics::render`] renames those `HELP`/`TYPE` lines and drops the marker
//! (`to_prometheus_text`), so a classic scraper keeps each counter's type and help.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::protocol::events::ClientEvent;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `transport` label values: `sessions.transport` of each door.
const TRANSPORTS: [&str; 2] = ["ws", "socketio"];

/// How a message reached a connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to a connected session as it was published.
    Live,
    /// Stored in a user's offline queue (no session online).
    Queued,
    /// Sent from the store on reconnect or `sync` (catch-up).
    Replayed,
}

impl Delivery {
    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Queued => "queued",
            Self::Replayed => "replayed",
        }
    }
}

/// Which access rule refused a client event (`switchboard_access_refusals_total{reason}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AccessRefusal {
    /// `join-room` refused by the room's join rule or the token's `rooms` claim.
    Join,
    /// `room-message` refused by the room's post rule or a read-only grant.
    Post,
    /// `send-message` to everyone from a role `BROADCAST_ROLES` does not list.
    Broadcast,
    /// `join-room` refused because the application's join hook did not answer.
    HookUnavailable,
}

impl AccessRefusal {
    /// Every kind, in declaration order (a kind's index is its discriminant).
    const ALL: [Self; 4] = [
        Self::Join,
        Self::Post,
        Self::Broadcast,
        Self::HookUnavailable,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Post => "post",
            Self::Broadcast => "broadcast",
            Self::HookUnavailable => "hook_unavailable",
        }
    }
}

/// `transport` is the `sessions.transport` value (`ws`, `socketio`), so that a figure and a
/// row name a door the same way.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    transport: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
    outcome: &'static str,
}

/// Owned: the embedded API publishes under event names of the application's choosing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoredLabel {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What the join hook said to one join that asked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookResult {
    /// A request answered: let in.
    Allow,
    /// A request answered: refused (`allow: false` or HTTP 403).
    Refuse,
    /// A request failed (status, body, unreachable, timeout).
    Error,
    /// No request: a cached answer, or one already under way for the same user and room.
    Cached,
}

impl HookResult {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Refuse => "refuse",
            Self::Error => "error",
            Self::Cached => "cached",
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Live state read at scrape time (gauges).
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Open `/ws` connections.
    pub ws_connections: i64,
    /// Open Socket.IO connections.
    pub socketio_connections: i64,
    /// Distinct users with at least one connection.
    pub users_online: i64,
    /// Rooms with at least one member.
    pub rooms_with_members: i64,
    /// Messages waiting in offline queues, all users.
    pub offline_queue_total: i64,
    /// The longest single user's offline queue.
    pub offline_queue_max: i64,
}

/// Every metric of one gateway. Cheap to share (`Arc<Metrics>`); every method is `&self`.
pub struct Metrics {
    registry: Registry,
    connections: Family<TransportLabel, Gauge>,
    users_online: Gauge,
    rooms_with_members: Gauge,
    offline_queue_total: Gauge,
    offline_queue_max: Gauge,
    connections_opened: Family<TransportLabel, Counter>,
    /// `connections_opened` and `handshake_seconds` of each transport, made at start so that
    /// both series show (at 0) before the first connection.
    opened: Vec<(&'static str, Counter, Histogram)>,
    connections_closed: Family<ClosedLabels, Counter>,
    auth_refusals: Family<ReasonLabel, Counter>,
    /// `access_refusals{reason}` of each [`AccessRefusal`], indexed by it.
    access_refusals: [Counter; 4],
    client_events: Family<EventLabels, Counter>,
    /// `client_events{event, outcome="ok"}` of every known event, in `ClientEvent::NAMES`
    /// order: the common case is an atomic add, with no map lookup.
    events_ok: Vec<(&'static str, Counter)>,
    messages_stored: Family<StoredLabel, Counter>,
    live: Counter,
    queued: Counter,
    replayed: Counter,
    slow_consumer: Counter,
    rate_limited: Counter,
    presence_summed_up: Counter,
    store_batch_size: Histogram,
    store_commit_seconds: Histogram,
    handshake_seconds: HistogramFamily<TransportLabel>,
    handshakes_waiting: Gauge,
    handshakes_in_progress: Gauge,
    handshake_wait_seconds: Histogram,
    /// Unlabelled sums of two families above, for [`Metrics::totals`] (not exported).
    messages_total: Counter,
    opened_total: Counter,
    cluster: ClusterMetrics,
    join_hook: Family<ResultLabel, Counter>,
    webhooks: WebhookMetrics,
}

fn seconds_histogram() -> Histogram {
    // 100 µs .. ~26 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Registers `metric` under `name` and hands back a handle to it.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, all zero, registered under the `switchboard_` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("switchboard");
        let connections = register(
            &mut r,
            "connections",
            "Open connections, by transport",
            Family::default(),
        );
        let users_online = register(
            &mut r,
            "users_online",
            "Distinct users with at least one open connection",
            Gauge::default(),
        );
        let rooms_with_members = register(
            &mut r,
            "rooms_with_members",
            "Rooms with at least one member (members need not be online)",
            Gauge::default(),
        );
        let offline_queue_total = register(
            &mut r,
            "offline_queue_messages",
            "Messages waiting in offline queues, all users",
            Gauge::default(),
        );
        let offline_queue_max = register(
            &mut r,
            "offline_queue_max_per_user",
            "The longest offline queue of any single user",
            Gauge::default(),
        );
        let connections_opened: Family<TransportLabel, Counter> = register(
            &mut r,
            "connections_opened",
            "Connections accepted (authenticated and registered), by transport",
            Family::default(),
        );
        let connections_closed = register(
            &mut r,
            "connections_closed",
            "Connections closed, by transport and disconnect_reason",
            Family::default(),
        );
        let auth_refusals = register(
            &mut r,
            "auth_refusals",
            "Connections refused before they opened, by error code",
            Family::default(),
        );
        let access_refusals = access_refusal_counters(&mut r);
        let client_events: Family<EventLabels, Counter> = register(
            &mut r,
            "client_events",
            "Client events handled, by event name and outcome (ok or the error code)",
            Family::default(),
        );
        let events_ok = ClientEvent::NAMES
            .iter()
            .map(|&event| {
                let labels = EventLabels {
                    event,
                    outcome: "ok",
                };
                (event, client_events.get_or_create(&labels).clone())
            })
            .collect();
        let messages_stored = register(
            &mut r,
            "messages_stored",
            "Messages committed to the store, by the event that carries them",
            Family::default(),
        );
        let deliveries: Family<DeliveryLabel, Counter> = register(
            &mut r,
            "deliveries",
            "Messages delivered: live to a connection, queued for an offline user, or replayed on catch-up",
            Family::default(),
        );
        let delivery = |kind: Delivery| {
            let kind = kind.as_str();
            deliveries.get_or_create(&DeliveryLabel { kind }).clone()
        };
        let (live, queued, replayed) = (
            delivery(Delivery::Live),
            delivery(Delivery::Queued),
            delivery(Delivery::Replayed),
        );
        let slow_consumer = register(
            &mut r,
            "slow_consumer_disconnects",
            "Connections closed because their outbound queue was full",
            Counter::default(),
        );
        let rate_limited = register(
            &mut r,
            "rate_limit_disconnects",
            "Connections closed for too many rate-limited events in a row",
            Counter::default(),
        );
        let presence_summed_up = register(
            &mut r,
            "presence_summed_up_changes",
            "Presence changes sent as counts in a presence-summary instead of one by one (a presence storm)",
            Counter::default(),
        );
        let store_batch_size = register(
            &mut r,
            "store_batch_size",
            "Writes committed per store transaction (group commit)",
            Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        );
        let store_commit_seconds = register(
            &mut r,
            "store_commit_seconds",
            "Time to commit one store transaction",
            seconds_histogram(),
        );
        let handshake_seconds: HistogramFamily<TransportLabel> = register(
            &mut r,
            "handshake_seconds",
            "From the opening request to the `connected` event, by transport",
            HistogramFamily::new_with_constructor(seconds_histogram as fn() -> Histogram),
        );
        let handshakes_waiting = register(
            &mut r,
            "handshakes_waiting",
            "Connections waiting for a handshake turn (HANDSHAKE_QUEUE bounds them)",
            Gauge::default(),
        );
        let handshakes_in_progress = register(
            &mut r,
            "handshakes_in_progress",
            "Handshakes holding a turn (HANDSHAKE_CONCURRENCY bounds them)",
            Gauge::default(),
        );
        let handshake_wait_seconds = register(
            &mut r,
            "handshake_wait_seconds",
            "Time a connection waited for its handshake turn (0 when one was free)",
            seconds_histogram(),
        );
        let bus: Family<DirectionLabel, Counter> = register(
            &mut r,
            "bus_messages",
            "Cluster bus (NATS) messages this node sent or received",
            Family::default(),
        );
        // One statement each: a family's read guard lives to the end of its statement, and
        // creating the second label needs the write lock.
        let direction =
            |direction: &'static str| bus.get_or_create(&DirectionLabel { direction }).clone();
        let (sent, received) = (direction("sent"), direction("received"));
        let cluster = ClusterMetrics {
            nodes: register(
                &mut r,
                "cluster_nodes",
                "Other nodes of the cluster this node hears",
                Gauge::default(),
            ),
            sent,
            received,
            read_back: register(
                &mut r,
                "bus_read_back_messages",
                "Committed messages read back from the database because the bus did not bring them in time",
                Counter::default(),
            ),
            nodes_lost: register(
                &mut r,
                "nodes_lost",
                "Nodes this node declared lost (silent for NODE_TIMEOUT_SECS)",
                Counter::default(),
            ),
        };
        let join_hook = register(
            &mut r,
            "join_hook_requests",
            "Joins that asked the join hook, by result (allow, refuse, error: a request; cached: none)",
            Family::default(),
        );
        let webhooks = WebhookMetrics::register(&mut r);
        let opened = TRANSPORTS
            .iter()
            .map(|&transport| {
                let label = TransportLabel { transport };
                let count = connections_opened.get_or_create(&label).clone();
                let took = handshake_seconds.get_or_create(&label).clone();
                (transport, count, took)
            })
            .collect();
        Self {
            registry: r,
            opened,
            connections,
            users_online,
            rooms_with_members,
            offline_queue_total,
            offline_queue_max,
            connections_opened,
            connections_closed,
            auth_refusals,
            access_refusals,
            client_events,
            events_ok,
            messages_stored,
            live,
            queued,
            replayed,
            slow_consumer,
            rate_limited,
            presence_summed_up,
            store_batch_size,
            store_commit_seconds,
            handshake_seconds,
            handshakes_waiting,
            handshakes_in_progress,
            handshake_wait_seconds,
            messages_total: Counter::default(),
            opened_total: Counter::default(),
            cluster,
            join_hook,
            webhooks,
        }
    }

    /// The webhook sender's figures.
    pub fn webhooks(&self) -> &WebhookMetrics {
        &self.webhooks
    }

    /// A commit wrote `n` webhook outbox rows.
    pub fn webhook_events_written(&self, n: u64) {
        self.webhooks.written.inc_by(n);
    }

    /// The cluster's figures.
    pub fn cluster(&self) -> &ClusterMetrics {
        &self.cluster
    }

    /// A fresh set behind the `Arc` its owners share: start-up makes one per gateway, and a
    /// test or bench that opens a store alone makes its own.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// A connection was registered with the hub, `took` after its opening request arrived
    /// (the handshake); `transport` is its `sessions.transport`.
    pub fn connection_opened(&self, transport: &'static str, took: Duration) {
        match self.opened.iter().find(|(name, ..)| *name == transport) {
            Some((_, count, histogram)) => {
                count.inc();
                histogram.observe(took.as_secs_f64());
            }
            None => {
                let label = TransportLabel { transport };
                self.connections_opened.get_or_create(&label).inc();
                self.handshake_seconds
                    .get_or_create(&label)
                    .observe(took.as_secs_f64());
            }
        }
        self.opened_total.inc();
    }

    /// A connection ended; `reason` is its `disconnect_reason`.
    pub fn connection_closed(&self, transport: &'static str, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ClosedLabels { transport, reason })
            .inc();
        match reason {
            "slow_consumer" => {
                self.slow_consumer.inc();
            }
            "rate_limited" => {
                self.rate_limited.inc();
            }
            _ => {}
        }
    }

    /// A connection began (`1`) or stopped (`-1`) waiting for a handshake turn.
    pub fn handshake_waiting(&self, change: i64) {
        self.handshakes_waiting.inc_by(change);
    }

    /// A connection got its handshake turn after waiting `waited` for it.
    pub fn handshake_turn_taken(&self, waited: Duration) {
        self.handshakes_in_progress.inc();
        self.handshake_wait_seconds.observe(waited.as_secs_f64());
    }

    /// A handshake turn was given back.
    pub fn handshake_turn_ended(&self) {
        self.handshakes_in_progress.dec();
    }

    /// `n` presence changes went out as one `presence-summary` (a presence storm).
    pub fn presence_summed_up(&self, n: u64) {
        self.presence_summed_up.inc_by(n);
    }

    /// A connection was refused before it opened; `reason` is the stable error code.
    pub fn auth_refused(&self, reason: &'static str) {
        self.auth_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A client event was refused by the access rules (a subset of the `forbidden` and
    /// `hook_unavailable` outcomes of `client_events`, by rule rather than by event).
    pub fn access_refused(&self, rule: AccessRefusal) {
        self.access_refusals[rule as usize].inc();
    }

    /// A client event was handled; `outcome` is `"ok"` or the error code.
    pub fn client_event(&self, event: &'static str, outcome: &'static str) {
        if outcome == "ok"
            && let Some((_, counter)) = self.events_ok.iter().find(|(name, _)| *name == event)
        {
            counter.inc();
            return;
        }
        self.client_events
            .get_or_create(&EventLabels { event, outcome })
            .inc();
    }

    /// `count` messages carried by `event` were committed.
    pub fn messages_stored(&self, event: String, count: u64) {
        self.messages_stored
            .get_or_create(&StoredLabel { event })
            .inc_by(count);
        self.messages_total.inc_by(count);
    }

    /// `count` deliveries of one kind.
    pub fn delivered(&self, kind: Delivery, count: u64) {
        match kind {
            Delivery::Live => self.live.inc_by(count),
            Delivery::Queued => self.queued.inc_by(count),
            Delivery::Replayed => self.replayed.inc_by(count),
        };
    }

    /// One store transaction of `writes` writes committed in `took`.
    pub fn store_commit(&self, writes: usize, took: Duration) {
        self.store_batch_size.observe(writes as f64);
        self.store_commit_seconds.observe(took.as_secs_f64());
    }

    /// A join asked the join hook (a join is not a hot path: the label is looked up).
    pub fn join_hook(&self, result: HookResult) {
        self.join_hook
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    /// Totals for the admin dashboard's rate charts: messages stored and connections opened
    /// since start.
    pub fn totals(&self) -> Totals {
        Totals {
            messages_stored: self.messages_total.get(),
            connections_opened: self.opened_total.get(),
        }
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]), with the gauges set
    /// from `live`.
    pub fn render(&self, live: &Live) -> String {
        let by_transport = [
            (TRANSPORTS[0], live.ws_connections),
            (TRANSPORTS[1], live.socketio_connections),
        ];
        for (transport, open) in by_transport {
            self.connections
                .get_or_create(&TransportLabel { transport })
                .set(open);
        }
        self.users_online.set(live.users_online);
        self.rooms_with_members.set(live.rooms_with_members);
        self.offline_queue_total.set(live.offline_queue_total);
        self.offline_queue_max.set(live.offline_queue_max);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        to_prometheus_text(&out)
    }
}

/// The `access_refusals` family, one counter per [`AccessRefusal`] made now: a refusal is an
/// atomic add, and an alert on a rule works before its first refusal.
fn access_refusal_counters(registry: &mut Registry) -> [Counter; 4] {
    let family: Family<ReasonLabel, Counter> = register(
        registry,
        "access_refusals",
        "Client events refused by the access rules, by rule: join, post, broadcast, hook_unavailable",
        Family::default(),
    );
    AccessRefusal::ALL.map(|rule| {
        let reason = rule.as_str();
        family.get_or_create(&ReasonLabel { reason }).clone()
    })
}

/// OpenMetrics text as prometheus-client writes it → Prometheus text 0.0.4: a counter family's
/// `HELP` and `TYPE` lines take the `_total` name its samples carry, and `# EOF` goes.
fn to_prometheus_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            // Held until its TYPE line says whether the family is a counter.
            if let Some(held) = help.replace(line) {
                out.push_str(held);
                out.push('\n');
            }
            continue;
        }
        let counter = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"));
        if let Some(name) = counter {
            if let Some(held) = help.take() {
                let text = held.strip_prefix("# HELP ").unwrap_or(held);
                let text = text.strip_prefix(name).unwrap_or(text);
                out.push_str(&format!("# HELP {name}_total{text}\n"));
            }
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(held) = help.take() {
            out.push_str(held);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(held) = help {
        out.push_str(held);
        out.push('\n');
    }
    out
}

/// What a cluster node counts (all zero on a node that runs alone).
#[derive(Debug)]
pub struct ClusterMetrics {
    nodes: Gauge,
    sent: Counter,
    received: Counter,
    read_back: Counter,
    nodes_lost: Counter,
}

impl ClusterMetrics {
    /// Other nodes heard now.
    pub fn nodes(&self, n: usize) {
        self.nodes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One bus message sent.
    pub fn sent(&self) {
        self.sent.inc();
    }

    /// One bus message received.
    pub fn received(&self) {
        self.received.inc();
    }

    /// `n` committed messages read back from the database.
    pub fn read_back(&self, n: u64) {
        self.read_back.inc_by(n);
    }

    /// A node declared lost.
    pub fn node_lost(&self) {
        self.nodes_lost.inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointResultLabels {
    endpoint: String,
    result: &'static str,
}

/// What the webhook outbox and its sender count, per endpoint (the endpoint's name).
#[derive(Debug)]
pub struct WebhookMetrics {
    written: Counter,
    requests: Family<EndpointResultLabels, Counter>,
    sent: Family<EndpointLabel, Counter>,
    retried: Family<EndpointLabel, Counter>,
    failed: Family<EndpointLabel, Counter>,
    backlog: Family<EndpointLabel, Gauge>,
    failed_now: Family<EndpointLabel, Gauge>,
    latency: HistogramFamily<EndpointLabel>,
}

impl WebhookMetrics {
    fn register(r: &mut Registry) -> Self {
        Self {
            written: register(
                r,
                "webhook_events_written",
                "Webhook events written to the outbox (one per event and endpoint)",
                Counter::default(),
            ),
            requests: register(
                r,
                "webhook_requests",
                "Webhook requests, by endpoint and result (ok: a 2xx; error: anything else)",
                Family::default(),
            ),
            sent: register(
                r,
                "webhook_events_sent",
                "Webhook events their endpoint acknowledged",
                Family::default(),
            ),
            retried: register(
                r,
                "webhook_events_retried",
                "Webhook events carried by a failed request, to be tried again",
                Family::default(),
            ),
            failed: register(
                r,
                "webhook_events_failed",
                "Webhook events given up on after WEBHOOK_GIVE_UP_SECS",
                Family::default(),
            ),
            backlog: register(
                r,
                "webhook_backlog",
                "Webhook events waiting to be sent, per endpoint",
                Family::default(),
            ),
            failed_now: register(
                r,
                "webhook_failed_events",
                "Webhook events marked failed and not sent again yet, per endpoint",
                Family::default(),
            ),
            latency: register(
                r,
                "webhook_delivery_seconds",
                "From the fact to its endpoint's acknowledgement, per event",
                HistogramFamily::new_with_constructor(seconds_histogram as fn() -> Histogram),
            ),
        }
    }

    fn endpoint(endpoint: &str) -> EndpointLabel {
        EndpointLabel {
            endpoint: endpoint.to_owned(),
        }
    }

    /// A request to `endpoint` ended: acknowledged (`ok`) or not.
    pub fn request(&self, endpoint: &str, ok: bool) {
        self.requests
            .get_or_create(&EndpointResultLabels {
                endpoint: endpoint.to_owned(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// `endpoint` acknowledged events, each `latencies` after it happened.
    pub fn sent(&self, endpoint: &str, latencies: impl Iterator<Item = Duration>) {
        let label = Self::endpoint(endpoint);
        let histogram = self.latency.get_or_create(&label);
        let mut n = 0;
        for took in latencies {
            histogram.observe(took.as_secs_f64());
            n += 1;
        }
        self.sent.get_or_create(&label).inc_by(n);
    }

    /// `n` events to `endpoint` will be tried again.
    pub fn retried(&self, endpoint: &str, n: u64) {
        self.retried
            .get_or_create(&Self::endpoint(endpoint))
            .inc_by(n);
    }

    /// `n` events to `endpoint` were given up on.
    pub fn failed(&self, endpoint: &str, n: u64) {
        self.failed
            .get_or_create(&Self::endpoint(endpoint))
            .inc_by(n);
    }

    /// Where `endpoint`'s outbox stands: events waiting, events failed.
    pub fn backlog(&self, endpoint: &str, pending: u64, failed: u64) {
        let label = Self::endpoint(endpoint);
        self.backlog
            .get_or_create(&label)
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.failed_now
            .get_or_create(&label)
            .set(i64::try_from(failed).unwrap_or(i64::MAX));
    }
}

/// Running totals since start, for rate charts.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Messages committed.
    pub messages_stored: u64,
    /// Connections registered.
    pub connections_opened: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_like_their_samples_and_there_is_no_eof() {
        let metrics = Metrics::new();
        metrics.auth_refused("token_expired");
        let text = metrics.render(&Live::default());
        assert!(text.contains("# HELP switchboard_auth_refusals_total Connections refused"));
        assert!(text.contains("# TYPE switchboard_auth_refusals_total counter\n"));
        assert!(text.contains("switchboard_auth_refusals_total{reason=\"token_expired\"} 1\n"));
        assert!(text.contains("# TYPE switchboard_users_online gauge\n"));
        assert!(text.contains("# TYPE switchboard_store_commit_seconds histogram\n"));
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# TYPE switchboard_auth_refusals counter"));
    }

    #[test]
    fn a_successful_event_counts_on_its_resolved_handle_and_an_unknown_one_in_the_family() {
        let metrics = Metrics::new();
        metrics.client_event("join-room", "ok");
        metrics.client_event("join-room", "bad_payload");
        metrics.client_event("unknown", "unknown_event");
        let text = metrics.render(&Live::default());
        for sample in [
            "switchboard_client_events_total{event=\"join-room\",outcome=\"ok\"} 1\n",
            "switchboard_client_events_total{event=\"join-room\",outcome=\"bad_payload\"} 1\n",
            "switchboard_client_events_total{event=\"unknown\",outcome=\"unknown_event\"} 1\n",
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
    }

    #[test]
    fn access_refusals_show_every_rule_at_zero_and_count_by_rule() {
        let metrics = Metrics::new();
        metrics.access_refused(AccessRefusal::Post);
        let text = metrics.render(&Live::default());
        assert!(text.contains("# TYPE switchboard_access_refusals_total counter\n"));
        for (reason, count) in [
            ("join", 0),
            ("post", 1),
            ("broadcast", 0),
            ("hook_unavailable", 0),
        ] {
            let sample =
                format!("switchboard_access_refusals_total{{reason=\"{reason}\"}} {count}\n");
            assert!(text.contains(&sample), "{sample} in {text}");
        }
    }

    #[test]
    fn totals_count_messages_stored_and_connections_opened() {
        let metrics = Metrics::new();
        metrics.messages_stored("room-message".into(), 3);
        metrics.messages_stored("notification".into(), 2);
        metrics.connection_opened("ws", Duration::from_millis(2));
        let totals = metrics.totals();
        assert_eq!(totals.messages_stored, 5);
        assert_eq!(totals.connections_opened, 1);
    }
}
