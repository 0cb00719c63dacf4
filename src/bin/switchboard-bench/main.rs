//! `switchboard-bench`: the load generator. It speaks both `/ws` and Socket.IO (Engine.IO 4
//! framing by hand), mints its own tokens, and runs one scenario, ending with one JSON line of
//! figures (server CPU and RSS read from `/proc/<pid>` when `--server-pid` is given, and the
//! load generator's own CPU time, so a reader can see which side was the bottleneck).
//!
//! ```sh
//! cargo run --release --bin switchboard-bench -- fanout --url http://127.0.0.1:3000 \
//!     --secret "$JWT_SECRET" --server-pid "$(pidof switchboard)" --receivers 1000
//! ```
//! `bench/run.py` starts the servers (switchboard and the Node peer) and runs the matrix;
//! `restart` starts and stops its server itself (`bench/restart.py` drives it).

mod catchup;
mod client;
mod joins;
mod measure;
mod restart;
mod scenarios;
mod storm;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use client::Proto;

/// Load generator for switchboard (and any server speaking its events).
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Hold N idle authenticated connections: RSS per connection, connect latency.
    Connections(ConnectionsArgs),
    /// C receivers in one room, S senders: deliveries/s, latency, loss, CPU per delivery.
    Fanout(FlowArgs),
    /// Public `send-message` to every other connection.
    Broadcast(FlowArgs),
    /// Private messages between pairs.
    Private(FlowArgs),
    /// Authenticated handshakes per second (connect, `connected`, close).
    ConnectRate(ConnectRateArgs),
    /// N distinct users connecting one after the other: the cost of presence fan-out.
    Presence(PresenceArgs),
    /// A reconnect storm: N users with queued messages reconnecting at R/s with
    /// `lastMessageId`.
    Storm(StormArgs),
    /// N clients through a server restart (switchboard) or a cut of every connection (the
    /// Node peer, socket.io's connection state recovery): time until all are back,
    /// handshakes, missed messages delivered, peak CPU and RSS. Runs the server itself: the
    /// command after `--` (its listening line gives the URL; `--url` is not used).
    Restart(RestartArgs),
    /// One client catching up on a large stored history (written by `bench/run.py`):
    /// replayed messages/s, `sync` page latency.
    Catchup(CatchupArgs),
    /// The cost of one join under a room rule: `join-room` → `joined-room` round trips.
    Joins(JoinsArgs),
    /// The application's join hook for `joins`: answers `{"allow": true}` at once.
    HookServer(HookServerArgs),
}

/// Options every scenario shares.
#[derive(Debug, Args, Clone)]
struct Common {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Several servers (nodes of one cluster), comma-separated base URLs, instead of `--url`:
    /// senders connect to the first, receivers round-robin over all of them (fanout,
    /// broadcast, private; the other scenarios use the first).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "ws")]
    proto: Proto,
    /// HS256 secret to mint tokens with (the server's JWT_SECRET).
    #[arg(long, env = "JWT_SECRET")]
    secret: String,
    /// Server process id, for CPU and RSS readings; several comma-separated (one per node)
    /// are summed.
    #[arg(long)]
    server_pid: Option<String>,
    /// Other processes whose CPU time over the measured window is reported beside the
    /// server's, by command name, comma-separated (e.g. `postgres,nats-server`): every process
    /// with that name is counted, whoever else uses it.
    #[arg(long, value_delimiter = ',')]
    aux_process: Vec<String>,
    /// A label copied into the JSON line (e.g. "switchboard" or "node-peer").
    #[arg(long, default_value = "switchboard")]
    target: String,
    /// Concurrent connection attempts.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

#[derive(Debug, Args)]
struct ConnectionsArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Distinct users they belong to (presence frames grow with users x connections).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Seconds to hold them while probing responsiveness.
    #[arg(long, default_value_t = 5)]
    hold: u64,
}

#[derive(Debug, Args)]
struct FlowArgs {
    #[command(flatten)]
    common: Common,
    /// Receiving connections (fanout, broadcast) or pairs (private).
    #[arg(long, default_value_t = 200)]
    receivers: usize,
    /// Sending connections.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Messages per second per sender; 0 = closed loop (next message once the previous ack
    /// arrived), the maximal rate the server sustains for one sender.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Closed loop only: messages a sender keeps waiting for their ack (1: the next message
    /// once the previous ack arrived).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Seconds to send.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Extra bytes of text per message (beyond the probe).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// With `--servers`: receivers only on the servers after the first, so that every
    /// delivery crosses from the senders' node to another.
    #[arg(long)]
    remote_receivers: bool,
}

#[derive(Debug, Args)]
struct ConnectRateArgs {
    #[command(flatten)]
    common: Common,
    /// Handshakes to perform.
    #[arg(long, default_value_t = 5000)]
    total: usize,
}

#[derive(Debug, Args)]
struct PresenceArgs {
    #[command(flatten)]
    common: Common,
    /// Distinct users to connect.
    #[arg(long, default_value_t = 2000)]
    users: usize,
}

#[derive(Debug, Args)]
struct StormArgs {
    #[command(flatten)]
    common: Common,
    /// Distinct users reconnecting.
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// Reconnections started per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Private messages queued for each user while it was away.
    #[arg(long, default_value_t = 1)]
    queued: u64,
    /// Seconds to hold every connection after the last one had its chance to connect.
    #[arg(long, default_value_t = 5)]
    hold: u64,
}

#[derive(Debug, Args)]
struct RestartArgs {
    #[command(flatten)]
    common: Common,
    /// Which server: its stop (SIGTERM and start again, or a cut), its publisher and how
    /// clients resume.
    #[arg(long, value_enum, default_value = "switchboard")]
    kind: restart::Kind,
    /// How clients wait before coming back (default: `package` for switchboard,
    /// `socketio-client` for the Node peer).
    #[arg(long, value_enum)]
    policy: Option<restart::Policy>,
    /// Clients, one user each.
    #[arg(long, default_value_t = 5000)]
    clients: usize,
    /// Messages per second published to everyone.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of publishing before the stop.
    #[arg(long, default_value_t = 3)]
    warm: u64,
    /// Seconds of publishing after the last client is back.
    #[arg(long, default_value_t = 3)]
    after: u64,
    /// Seconds to wait for every client to be back.
    #[arg(long, default_value_t = 90)]
    return_timeout: u64,
    /// The server command (environment inherited); it must print `listening on http://...`
    /// and, for a restart, listen on the same address again.
    #[arg(last = true, required = true)]
    server: Vec<String>,
}

#[derive(Debug, Args)]
struct CatchupArgs {
    #[command(flatten)]
    common: Common,
    /// The user that catches up (a member of the rooms its history was written for).
    #[arg(long, default_value = "catchup-reader")]
    user: String,
    /// Its role.
    #[arg(long, default_value = "USER")]
    role: String,
    /// The last message id it saw: it connects with `lastMessageId` set to this.
    #[arg(long)]
    last_message_id: u64,
    /// Messages it may see after that id (the run fails if fewer are replayed).
    #[arg(long)]
    missed: u64,
    /// Messages stored: `sync` cursors are spread over ids 0..stored.
    #[arg(long)]
    stored: u64,
    /// Cursors to time a `sync` page at.
    #[arg(long, default_value_t = 20)]
    cursors: usize,
    /// Rounds over the cursors.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Debug, Args)]
struct JoinsArgs {
    #[command(flatten)]
    common: Common,
    /// The rule the rooms follow (`anyone`, `token`, `roles`, `hook`): picks the tokens'
    /// claims; the server's policy file must send rooms `<prefix>-*` to it.
    #[arg(long)]
    rule: String,
    /// Room-name prefix (default: the rule's name).
    #[arg(long)]
    room_prefix: Option<String>,
    /// Connections (one user each), joining concurrently.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Timed joins per connection (each followed by a leave).
    #[arg(long, default_value_t = 300)]
    joins: usize,
    /// Patterns in the `rooms` claim of the `token` rule.
    #[arg(long, default_value_t = 10)]
    claim_patterns: usize,
}

impl JoinsArgs {
    fn prefix(&self) -> &str {
        self.room_prefix.as_deref().unwrap_or(&self.rule)
    }
}

#[derive(Debug, Args)]
struct HookServerArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

impl Common {
    /// The start of a scenario's JSON line: its name, the target's label and the protocol.
    fn line(&self, scenario: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), scenario.into());
        m.insert("target".into(), self.target.clone().into());
        m.insert(
            "proto".into(),
            format!("{:?}", self.proto).to_lowercase().into(),
        );
        m
    }

    /// The server senders (and every single-server scenario) connect to: the first of
    /// `--servers`, else `--url`.
    fn server(&self) -> SocketAddr {
        parse_server(self.servers.first().unwrap_or(&self.url))
    }

    /// Every server, the first being [`Common::server`].
    fn all_servers(&self) -> Vec<SocketAddr> {
        match self.servers.is_empty() {
            true => vec![self.server()],
            false => self.servers.iter().map(|s| parse_server(s)).collect(),
        }
    }

    fn token(&self, sub: &str, role: &str) -> String {
        self.token_with(sub, role, &serde_json::json!({}))
    }

    /// A token with `extra` claims beside the usual ones.
    fn token_with(&self, sub: &str, role: &str, extra: &serde_json::Value) -> String {
        let mut claims = serde_json::json!({
            "sub": sub, "username": sub, "role": role,
            "exp": measure::now_nanos() / 1_000_000_000 + 24 * 3600,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("cannot sign a token: {e}"))
    }
}

fn parse_server(url: &str) -> SocketAddr {
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    host.parse()
        .unwrap_or_else(|e| panic!("--url and --servers take http://ip:port ({host}: {e})"))
}

/// Source address for the `i`-th connection: 127.0.0.1 .. 127.0.0.250, so each source has
/// its own ephemeral port range and 100,000 connections never exhaust one.
fn source_for(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 250) as u8))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let line = match cli.scenario {
        Scenario::Connections(a) => {
            scenarios::connections(
                &a.common,
                a.connections,
                a.users,
                Duration::from_secs(a.hold),
            )
            .await
        }
        Scenario::Fanout(a) => scenarios::flow(&a.common, scenarios::Flow::Fanout, &a).await,
        Scenario::Broadcast(a) => scenarios::flow(&a.common, scenarios::Flow::Broadcast, &a).await,
        Scenario::Private(a) => scenarios::flow(&a.common, scenarios::Flow::Private, &a).await,
        Scenario::ConnectRate(a) => scenarios::connect_rate(&a.common, a.total).await,
        Scenario::Presence(a) => scenarios::presence(&a.common, a.users).await,
        Scenario::Storm(a) => storm::storm(&a).await,
        Scenario::Restart(a) => restart::restart(&a).await,
        Scenario::Catchup(a) => catchup::catchup(&a.common, &a).await,
        Scenario::Joins(a) => joins::joins(&a.common, &a).await,
        Scenario::HookServer(a) => joins::hook_server(a.listen).await,
    };
    match line {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
