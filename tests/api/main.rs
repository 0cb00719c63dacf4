//! Integration tests: the real server on port 0, a real SQLite file in a temp dir, real
//! WebSocket clients (tokio-tungstenite). One binary, one module per area.

mod helpers;

mod access;
mod admin;
mod auth;
mod backup;
mod bad_input;
mod catchup;
mod cluster;
mod cluster_bus;
mod cluster_embedded;
mod cluster_failover;
mod cluster_faults;
mod cluster_members;
mod cluster_memory;
mod cluster_webhooks;
mod crash;
mod embedded;
mod events;
mod failures;
mod handshake_gate;
mod history_access;
mod hygiene;
mod join_hook;
mod limits;
mod lingering;
mod logs;
mod membership;
mod messages;
mod metrics;
mod persistence;
mod pipeline;
mod policies;
mod presence;
mod protocol_doc;
mod publish;
mod rest;
mod restart_hint;
mod socketio_connect;
mod socketio_replies;
mod startup;
mod tokens;
mod webhooks;
mod webhooks_rest;
