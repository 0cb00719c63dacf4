//! # switchboard
//!
//! A self-hosted real-time gateway: clients connect over Socket.IO or plain WebSocket with
//! a JWT, the gateway tracks who is online, routes messages to everyone, one user, a role or a
//! room, and remembers sessions, room membership and every message in an embedded SQLite file
//! (or a PostgreSQL database).
//!
//! ## The public surface
//!
//! Exactly the embedding API (README "Embedding in your Rust service",
//! `examples/notification_service.rs`):
//!
//! - At the root: [`EmbeddedGateway`] (routes to mount in your own axum app), [`Gateway`] (the
//!   same, bound to a listener and run until told to stop), [`GatewayHandle`] (send to a user, a
//!   role, everyone; who is online; room members), [`Settings`], and what their methods take
//!   and return ([`StartupError`], [`SendError`], [`Target`], [`Published`], [`PublishError`],
//!   [`HubError`], [`MembershipError`], [`MemberInfo`]).
//! - [`config`]: the settings tree, read from the environment (and `.env`), with a default and a
//!   doc line next to every field; its path is part of the API, as you build [`Settings`] from
//!   its types.
//! - [`protocol::wire`]: the objects the server sends (what [`GatewayHandle::active_users`] and
//!   [`GatewayHandle::stats`] return).
//! - [`telemetry`]: the tracing subscriber (readable or JSON logs), and [`shutdown`]: the one
//!   place that knows how the process stops (the binary's, and an embedder's if it likes).
//!
//! Everything else is `pub(crate)`. Two doors stay open but hidden from the documentation:
//! `cli` (the binary, `src/main.rs`, is a crate of its own) and `internals`, the one place
//! from which the benches, the integration tests and `switchboard-bench` reach inside; it is
//! not API.
//!
//! ## Layout
//!
//! - `config`, `telemetry`, `shutdown`: as above.
//! - `metrics`: the Prometheus metrics of one gateway (`GET /metrics`).
//! - `auth`: where a token is found in a request, how it is verified (the algorithm is fixed by
//!   configuration) and how its claims become an `auth::Identity`.
//! - `protocol`: pure wire types, no I/O: the `/ws` envelope, client events and their
//!   validated payloads, the objects the server sends.
//! - `access`: who may join a room, post in it, broadcast, and which history a member
//!   replays (room policies, the `rooms` claim, server-side members, the join hook).
//! - `webhooks`: the senders that deliver the store's webhook outbox to the application's
//!   endpoints, signed, in order, retried.
//! - `hub`: the one owner of live state (sessions, users, rooms) and the only place that
//!   routes; transports reach connections only through `hub::Outbound`.
//! - `commands`: one file per client event; each turns a parsed event into hub calls.
//! - `transport`: the plain WebSocket endpoint `/ws` and the Socket.IO endpoint
//!   `/socket.io/`; both only translate between frames and hub calls.
//! - `store`: everything durable (sqlx + SQLite, or PostgreSQL): users and sessions, the
//!   message log, the offline queue and room membership, written by one writer task that
//!   commits in groups.
//! - `cluster`: several gateways over one PostgreSQL database and NATS (`NATS_URL`).
//! - `api`: the REST management API under `/websocket/`, health, and the OpenAPI document
//!   derived from the handlers and their body types.
//! - `handle`: [`GatewayHandle`], the embedded Rust API.
//! - `startup`: [`EmbeddedGateway`] and [`Gateway`]: build, router, run, shutdown order.
//! - `cli`: `switchboard serve | token | check-config | backup`.

pub(crate) mod access;
mod api;
mod app;
pub(crate) mod auth;
// The binary's commands (`src/main.rs` is a crate of its own and sees only `pub`): not part
// of the embedding API.
#[doc(hidden)]
pub mod cli;
pub(crate) mod cluster;
mod commands;
pub mod config;
mod handle;
pub(crate) mod hub;
pub(crate) mod metrics;
pub mod protocol;
pub mod shutdown;
mod startup;
pub(crate) mod store;
pub mod telemetry;
mod transport;
pub(crate) mod webhooks;

pub use config::Settings;
pub use handle::{GatewayHandle, MembershipError, SendError};
pub use hub::{Forbidden, HubError, MemberInfo, PublishError, Published, Target};
pub use startup::{EmbeddedGateway, Gateway, StartupError};

/// What the benches, the integration tests and `switchboard-bench` reach inside the crate.
/// Not API: it follows the internals and may change with any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::access::{RoomAccess, load_policies};
    pub use crate::auth::claims::Claims;
    pub use crate::auth::keys::Minter;
    pub use crate::auth::{AuthError, Identity, Verifier, find_token};
    pub use crate::cluster::{Bus, memory};
    pub use crate::hub::{
        CloseReason, Event, HookAnswer, Hub, Outbound, OutboundQueue, Publish, SessionId,
        SessionMeta, Transport,
    };
    pub use crate::metrics::Metrics;
    pub use crate::protocol::envelope::{ClientFrame, encode_server_frame};
    pub use crate::protocol::error::ProtocolErrorKind;
    pub use crate::protocol::events::{ClientEvent, ParseLimits};
    pub use crate::protocol::payloads::RoomName;
    pub use crate::store::{MessageRecord, Store, retention};
}
