//! The bus on NATS: everything NATS-specific lives here (connect options, the one subject
//! `<NATS_SUBJECT_PREFIX>.bus`, the sender header, pings, reconnect events); the rest of the
//! cluster sees only [`Bus`].
//!
//! One subject per cluster, so that NATS keeps each node's messages in the order it sent them.
//! Echo stays on (NATS's default): hearing its own heartbeats is how a node knows its path
//! works, since a half-open connection looks connected until pings fail.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use super::bus::{Bus, BusError, Heard, Inbox, LinkState};
use crate::config::{ClusterSettings, NatsUrl, NodeId};

/// How long `NATS_URL` gets to answer at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The NATS header naming a bus message's sender (`<node>/<run>`).
const SENDER_HEADER: &str = "Switchboard-Sender";
/// Bus messages NATS holds for this node before it drops some (they are then read back).
const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// A node's connection to NATS.
pub struct NatsBus {
    client: async_nats::Client,
    subject: String,
    link: LinkState,
}

impl NatsBus {
    /// Connects to `NATS_URL` as `node`. Fails when NATS does not answer within
    /// [`CONNECT_TIMEOUT`] (twice that for the whole attempt).
    pub async fn connect(
        url: &NatsUrl,
        node: &NodeId,
        settings: &ClusterSettings,
    ) -> Result<Self, BusError> {
        let failed = |source| {
            let context = format!(
                "could not connect to the NATS server at {} (NATS_URL)",
                url.redacted()
            );
            BusError::new(context, Box::new(source) as Box<_>)
        };
        let servers: Vec<&str> = url.expose().split(',').map(str::trim).collect();
        let (down_since, link) = watch::channel(None);
        let connect = async_nats::ConnectOptions::new()
            .name(format!("switchboard {node}"))
            // A half-open connection is found by its pings failing: a few per timeout.
            .ping_interval((settings.node_timeout / 4).max(Duration::from_secs(1)))
            .connection_timeout(CONNECT_TIMEOUT)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .event_callback(move |event| {
                on_event(&down_since, &event);
                async {}
            })
            .connect(servers);
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, connect)
            .await
            .map_err(|_| {
                failed(async_nats::ConnectError::from(
                    async_nats::ConnectErrorKind::TimedOut,
                ))
            })?
            .map_err(failed)?;
        Ok(Self {
            client,
            subject: format!("{}.bus", settings.subject_prefix),
            link,
        })
    }
}

/// Records and logs what NATS says about the connection.
fn on_event(down_since: &watch::Sender<Option<Instant>>, event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            down_since.send_replace(None);
            tracing::info!("connected to NATS");
        }
        async_nats::Event::Disconnected => {
            down_since.send_if_modified(|since| {
                let first = since.is_none();
                since.get_or_insert_with(Instant::now);
                first
            });
            tracing::warn!("disconnected from NATS; reconnecting");
        }
        // Closed: this node is stopping.
        async_nats::Event::Closed => tracing::info!("NATS connection closed"),
        other => tracing::warn!(event = %other, "NATS connection"),
    }
}

impl Bus for NatsBus {
    fn subscribe(&self) -> BoxFuture<'_, Result<Inbox, BusError>> {
        async move {
            let subscriber =
                self.client
                    .subscribe(self.subject.clone())
                    .await
                    .map_err(|source| {
                        let context =
                            format!("could not subscribe to {} on the NATS server", self.subject);
                        BusError::new(context, source)
                    })?;
            let inbox = subscriber.map(|message| Heard {
                sender: message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(SENDER_HEADER))
                    .map(|v| v.as_str().to_owned()),
                payload: message.payload,
            });
            Ok(inbox.boxed())
        }
        .boxed()
    }

    fn publish(&self, sender: &str, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SENDER_HEADER, sender);
        async move {
            self.client
                .publish_with_headers(self.subject.clone(), headers, payload)
                .await
                .map_err(|source| BusError::new("could not publish on the bus", source))
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        async move {
            let _ = self.client.flush().await;
        }
        .boxed()
    }

    fn link(&self) -> LinkState {
        self.link.clone()
    }
}
