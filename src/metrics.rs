//! The gateway's Prometheus metrics (`GET /metrics`, contract section 13): one [`Metrics`] per
//! gateway (tests run several gateways in one process, so there is no global registry), shared
//! by the store, the hub, the transports and the REST API through [`Metrics::record`] calls
//! named by what happened.
//!
//! Cost on the hot path: every counter is an atomic add on a handle resolved once (no label
//! lookup, no lock per delivery). Families keyed by an event name or an error code take a read
//! lock on their map once per client event, never per delivery. Figures that are state rather
//! than events (live connections, users online, rooms, offline queues) are read from the hub
//! and the store when Prometheus scrapes ([`Metrics::render`] with a [`Live`] snapshot), so
//! nothing has to keep them up to date on the way.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which door a connection came through.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Transport {
    /// Plain WebSocket at `/ws`.
    Ws,
    /// Socket.IO at `/socket.io/`.
    Socketio,
}

/// How a message reached a connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Delivery {
    /// Handed to a connected session as it was published.
    Live,
    /// Stored in a user's offline queue (no session online).
    Queued,
    /// Sent from the store on reconnect or `sync` (catch-up).
    Replayed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: Transport,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    transport: Transport,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoredLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabel {
    kind: Delivery,
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
    connections_closed: Family<ClosedLabels, Counter>,
    auth_refusals: Family<ReasonLabel, Counter>,
    client_events: Family<EventLabels, Counter>,
    messages_stored: Family<StoredLabel, Counter>,
    live: Counter,
    queued: Counter,
    replayed: Counter,
    slow_consumer: Counter,
    rate_limited: Counter,
    store_batch_size: Histogram,
    store_commit_seconds: Histogram,
    handshake_seconds: HistogramFamily<TransportLabel>,
    /// Unlabelled sums of two families above, for [`Metrics::totals`] (not exported).
    messages_total: Counter,
    opened_total: Counter,
}

fn seconds_histogram() -> Histogram {
    // 100 µs .. ~26 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, all zero, registered under the `switchboard_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let connections = Family::<TransportLabel, Gauge>::default();
        registry.register(
            "connections",
            "Open connections, by transport",
            connections.clone(),
        );
        let users_online = Gauge::default();
        registry.register(
            "users_online",
            "Distinct users with at least one open connection",
            users_online.clone(),
        );
        let rooms_with_members = Gauge::default();
        registry.register(
            "rooms_with_members",
            "Rooms with at least one member (members need not be online)",
            rooms_with_members.clone(),
        );
        let offline_queue_total = Gauge::default();
        registry.register(
            "offline_queue_messages",
            "Messages waiting in offline queues, all users",
            offline_queue_total.clone(),
        );
        let offline_queue_max = Gauge::default();
        registry.register(
            "offline_queue_max_per_user",
            "The longest offline queue of any single user",
            offline_queue_max.clone(),
        );
        let connections_opened = Family::<TransportLabel, Counter>::default();
        registry.register(
            "connections_opened",
            "Connections accepted (authenticated and registered), by transport",
            connections_opened.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections closed, by transport and disconnect_reason",
            connections_closed.clone(),
        );
        let auth_refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "auth_refusals",
            "Handshakes refused, by error code",
            auth_refusals.clone(),
        );
        let client_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "client_events",
            "Client events handled, by event name and outcome (ok or the error code)",
            client_events.clone(),
        );
        let messages_stored = Family::<StoredLabel, Counter>::default();
        registry.register(
            "messages_stored",
            "Messages committed to the store, by the event that carries them",
            messages_stored.clone(),
        );
        let deliveries = Family::<DeliveryLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Messages delivered to a session: live, queued for an offline user, or replayed on catch-up",
            deliveries.clone(),
        );
        let live = deliveries
            .get_or_create(&DeliveryLabel {
                kind: Delivery::Live,
            })
            .clone();
        let queued = deliveries
            .get_or_create(&DeliveryLabel {
                kind: Delivery::Queued,
            })
            .clone();
        let replayed = deliveries
            .get_or_create(&DeliveryLabel {
                kind: Delivery::Replayed,
            })
            .clone();
        let slow_consumer = Counter::default();
        registry.register(
            "slow_consumer_disconnects",
            "Connections closed because their outbound queue was full",
            slow_consumer.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limit_disconnects",
            "Connections closed for too many rate-limited events in a row",
            rate_limited.clone(),
        );
        let store_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "store_batch_size",
            "Writes committed per store transaction (group commit)",
            store_batch_size.clone(),
        );
        let store_commit_seconds = seconds_histogram();
        registry.register(
            "store_commit_seconds",
            "Time to commit one store transaction",
            store_commit_seconds.clone(),
        );
        let handshake_seconds: HistogramFamily<TransportLabel> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "handshake_seconds",
            "From the upgrade request to the `connected` event, by transport",
            handshake_seconds.clone(),
        );
        Self {
            registry,
            connections,
            users_online,
            rooms_with_members,
            offline_queue_total,
            offline_queue_max,
            connections_opened,
            connections_closed,
            auth_refusals,
            client_events,
            messages_stored,
            live,
            queued,
            replayed,
            slow_consumer,
            rate_limited,
            store_batch_size,
            store_commit_seconds,
            handshake_seconds,
            messages_total: Counter::default(),
            opened_total: Counter::default(),
        }
    }

    /// A shared, fresh set.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// A connection was registered with the hub.
    pub fn connection_opened(&self, transport: Transport) {
        self.connections_opened
            .get_or_create(&TransportLabel { transport })
            .inc();
        self.opened_total.inc();
    }

    /// A connection ended; `reason` is its `disconnect_reason`.
    pub fn connection_closed(&self, transport: Transport, reason: &'static str) {
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

    /// A handshake was refused; `reason` is the stable error code.
    pub fn auth_refused(&self, reason: &'static str) {
        self.auth_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A client event was handled; `outcome` is `"ok"` or the error code.
    pub fn client_event(&self, event: &'static str, outcome: &'static str) {
        self.client_events
            .get_or_create(&EventLabels { event, outcome })
            .inc();
    }

    /// `count` messages carried by `event` were committed.
    pub fn messages_stored(&self, event: &'static str, count: u64) {
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

    /// A handshake completed (the client got `connected`) after `took`.
    pub fn handshake(&self, transport: Transport, took: Duration) {
        self.handshake_seconds
            .get_or_create(&TransportLabel { transport })
            .observe(took.as_secs_f64());
    }

    /// Totals for the admin dashboard's rate charts: messages stored and connections opened
    /// since start.
    pub fn totals(&self) -> Totals {
        Totals {
            messages_stored: self.messages_total.get(),
            connections_opened: self.opened_total.get(),
        }
    }

    /// The Prometheus text exposition, with the gauges set from `live`.
    pub fn render(&self, live: &Live) -> String {
        self.connections
            .get_or_create(&TransportLabel {
                transport: Transport::Ws,
            })
            .set(live.ws_connections);
        self.connections
            .get_or_create(&TransportLabel {
                transport: Transport::Socketio,
            })
            .set(live.socketio_connections);
        self.users_online.set(live.users_online);
        self.rooms_with_members.set(live.rooms_with_members);
        self.offline_queue_total.set(live.offline_queue_total);
        self.offline_queue_max.set(live.offline_queue_max);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
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
