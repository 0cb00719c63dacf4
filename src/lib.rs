//! # switchboard
//!
//! A self-hosted real-time gateway: clients connect over WebSocket (and, later, Socket.IO) with
//! a JWT, the gateway tracks who is online, routes messages to everyone, one user, a role or a
//! room, and remembers session history in an embedded SQLite file.
//!
//! ## Layout
//!
//! - [`config`]: the settings tree, read from the environment (and `.env`), with a default and a
//!   doc line next to every field.
//! - [`telemetry`]: the tracing subscriber (readable or JSON logs).
//! - [`auth`]: where a token is found in a request, how it is verified (the algorithm is fixed by
//!   configuration) and how its claims become an [`auth::Identity`].
//! - [`protocol`]: pure wire types, no I/O: the `/ws` envelope, client events and their
//!   validated payloads, the objects the server sends.
//! - [`hub`]: the one owner of live state (sessions, users, rooms) and the only place that
//!   routes; transports reach connections only through [`hub::Outbound`].
//! - [`commands`]: one file per client event; each turns a parsed event into hub calls.
//! - [`transport`]: the plain WebSocket endpoint `/ws` (reader and writer task per connection).
//! - [`store`]: everything durable (sqlx + SQLite): users seen and session history, written by
//!   one writer task that commits in groups.
//! - [`startup`]: [`startup::Gateway`] binds, builds the router and runs until told to stop.
//! - [`shutdown`]: the one place that knows how the process stops.
//! - [`cli`]: `switchboard serve | token | check-config`.

pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod hub;
pub mod protocol;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod transport;

pub use config::Settings;
pub use hub::Hub;
pub use startup::Gateway;
