//! The bus as the cluster code sees it: a place where every node publishes bytes under its
//! sender name and hears everything published, its own messages included, in the order each
//! sender published them. NATS is one such place (`nats.rs`); an in-process hub for
//! tests is another ([`super::memory`]). The publisher, the receiver and the sequencer know
//! only this trait, so the whole cluster logic runs in one process over the memory bus.
//!
//! **Object-safe, not generic.** Startup picks the bus at run time (NATS from `NATS_URL`, or
//! the one an embedder or a test hands to `EmbeddedGateway::build_with_bus`), and
//! [`super::Cluster`] stays one type instead of a generic that would climb through
//! `EmbeddedGateway` and `Gateway` into the public API. The price, a boxed future per publish,
//! is nothing beside the JSON encoding and the network send that come with it.
//!
//! What a bus must provide:
//! - **Echo**: a node hears its own messages. That is how it knows its path works: a half-open
//!   connection looks connected until pings fail (`Receiver::watch_own_link`).
//! - **Order per sender**: messages of one sender arrive in the order it published them (one
//!   subject on NATS). Losses are allowed: the envelope numbering notices them.
//! - **The sender beside the payload** (a header on NATS), so a node recognises its own
//!   messages without parsing them.
//!
//! Time in the cluster code is tokio's (`tokio::time::Instant`), so a test with paused time
//! drives heartbeats, timeouts and the memory bus's delays together.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// One message heard on the bus.
#[derive(Debug, Clone)]
pub struct Heard {
    /// Who published it (`<node>/<run>`), when the bus carried that.
    pub sender: Option<String>,
    /// The envelope, as published.
    pub payload: Bytes,
}

/// Every message published on the bus from the moment of subscribing, in the order each
/// sender published them; ends when the bus is gone for good.
pub type Inbox = BoxStream<'static, Heard>;

/// This node's own connection to the bus: `None` while up, the moment it went down while
/// down. Read at every liveness check (`Receiver::watch_own_link`).
pub type LinkState = watch::Receiver<Option<Instant>>;

/// Why the bus refused something.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct BusError {
    /// What was being done, and where (a NATS URL without credentials, a subject).
    pub context: String,
    /// The cause.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BusError {
    /// `source`, with a sentence saying what failed.
    pub fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// A bus one node is connected to. See the module doc for what an implementation promises.
pub trait Bus: Send + Sync + 'static {
    /// Starts hearing everything published from now on (this node's own messages included).
    /// Called once, before the node reads where message ids stand: every id committed after
    /// that is then either heard or read back.
    fn subscribe(&self) -> BoxFuture<'_, Result<Inbox, BusError>>;

    /// Publishes `payload` under `sender` (`<node>/<run>`).
    fn publish(&self, sender: &str, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>>;

    /// Waits until what was published has left this process (a goodbye before stopping).
    fn flush(&self) -> BoxFuture<'_, ()>;

    /// This node's connection to the bus, as the bus sees it.
    fn link(&self) -> LinkState;
}
