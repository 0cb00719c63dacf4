//! # switchboard
//!
//! A self-hosted real-time gateway: clients connect over Socket.IO or plain WebSocket with
//! a JWT, the gateway tracks who is online, routes messages to everyone, one user, a role or a
//! room, and remembers sessions, room membership and every message in an embedded SQLite file
//! (or a PostgreSQL database).
//!
//! ## Layout
//!
//! - [`config`]: the settings tree, read from the environment (and `.env`), with a default and a
//!   doc line next to every field.
//! - [`telemetry`]: the tracing subscriber (readable or JSON logs).
//! - [`metrics`]: the Prometheus metrics of one gateway (`GET /metrics`).
//! - [`auth`]: where a token is found in a request, how it is verified (the algorithm is fixed by
//!   configuration) and how its claims become an [`auth::Identity`].
//! - [`protocol`]: pure wire types, no I/O: the `/ws` envelope, client events and their
//!   validated payloads, the objects the server sends.
//! - [`hub`]: the one owner of live state (sessions, users, rooms) and the only place that
//!   routes; transports reach connections only through [`hub::Outbound`].
//! - [`commands`]: one file per client event; each turns a parsed event into hub calls.
//! - [`transport`]: the plain WebSocket endpoint `/ws` and the Socket.IO endpoint
//!   `/socket.io/`; both only translate between frames and hub calls.
//! - [`store`]: everything durable (sqlx + SQLite, or PostgreSQL): users and sessions, the
//!   message log, the offline queue and room membership, written by one writer task that
//!   commits in groups.
//! - [`api`]: the REST management API under `/websocket/`, health, and the OpenAPI document
//!   derived from the handlers and their body types.
//! - [`handle`]: [`GatewayHandle`], the embedded Rust API (send to a user, a role, everyone).
//! - [`startup`]: [`EmbeddedGateway`] (routes to mount in your own axum app) and [`Gateway`]
//!   (the same, bound to a listener and run until told to stop).
//! - [`shutdown`]: the one place that knows how the process stops.
//! - [`cli`]: `switchboard serve | token | check-config`.

mod api;
mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
mod commands;
pub mod config;
pub mod handle;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
mod transport;

pub use config::Settings;
pub use handle::GatewayHandle;
pub use hub::Hub;
pub use startup::{EmbeddedGateway, Gateway};
