//! The `restart` scenario: what N connected clients live through when their server goes away
//! and comes back, and what they missed meanwhile. It owns the server process (the command
//! after `--`), so that it can stop it at a known instant and read its CPU and memory:
//!
//! - switchboard (`--kind switchboard`): SIGTERM, wait for the exit, the same command again
//!   on the same address and SQLite file. Clients come back the client package's way (the
//!   server's retry hint, then exponential backoff with full jitter) with `lastMessageId`
//!   (`/ws` query, Socket.IO auth). A publisher sends to everyone through
//!   `POST /websocket/publish`.
//! - the Node peer (`--kind node-peer`, `bench/peers/node-socketio` with `BENCH_ADMIN=1` and
//!   `BENCH_RECOVERY=1`): a process restart would lose socket.io's in-memory recovery state,
//!   so the event is the one socket.io's connection state recovery is built for: the process
//!   stays and every connection is cut (its bench-only `POST /bench/cut`). Clients come back
//!   socket.io-client's way (1 s doubling to 5 s, ±50 %) with the `pid` and `offset` socket.io
//!   gave them. The publisher is its bench-only `POST /bench/broadcast`.
//!
//! Figures: time from the stop (or cut) until every client is back, handshake latency of the
//! returns, the messages each client missed while away (acknowledged after the last one it
//! had, up to its return) and how many of those it got, duplicates, and the server's peak CPU
//! and RSS (sampled every 100 ms from `/proc`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Conn, Frame, Proto};
use crate::measure::{cpu_seconds, percentiles, round, status_kib};
use crate::{Common, RestartArgs, parse_server, source_for};

/// How long one connection attempt may take to reach `connected`: socket.io-client's default
/// `timeout` (the client package's Socket.IO transport inherits it; its `/ws` one has none).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The event switchboard's publisher sends (the Node peer's is `broadcast-message`).
const TICK_EVENT: &str = "bench-tick";

/// Which server, hence which stop, publisher and way of resuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// switchboard: restarted with SIGTERM, resumed with `lastMessageId`.
    Switchboard,
    /// The Node Socket.IO peer: connections cut, resumed with socket.io's `pid` and `offset`.
    NodePeer,
}

/// How a client waits before coming back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// switchboard's client package (`clients/js/src/backoff.ts`): at least the server's hint,
    /// plus a draw below min(bound, hint); without a hint a draw below the bound; the bound
    /// starts at 500 ms and doubles per failed attempt up to 30 s.
    Package,
    /// socket.io-client's defaults: 1 s doubling per attempt up to 5 s, ±50 % jitter; hints
    /// are ignored.
    SocketioClient,
}

/// A small xorshift generator: jitter only, seeded per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The wait before each attempt, as the client it stands for computes it.
struct Backoff {
    policy: Policy,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    fn next(&mut self, hint_ms: Option<u64>) -> Duration {
        let attempt = self.attempt.min(20);
        self.attempt += 1;
        let ms = match self.policy {
            Policy::Package => {
                let bound = (500.0 * 2f64.powi(attempt as i32)).min(30_000.0);
                match hint_ms {
                    Some(hint) if hint > 0 => {
                        hint as f64 + (self.rng.next() * bound.min(hint as f64)).floor()
                    }
                    _ => (self.rng.next() * bound).floor(),
                }
            }
            Policy::SocketioClient => {
                let ms = 1000.0 * 2f64.powi(attempt as i32);
                let r = self.rng.next();
                let deviation = (r * 0.5 * ms).floor();
                let ms = match ((r * 10.0).floor() as u64) & 1 {
                    0 => ms - deviation,
                    _ => ms + deviation,
                };
                ms.min(5000.0)
            }
        };
        Duration::from_millis(ms as u64)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The server process under test, and the thread draining its stderr.
struct ServerProc {
    child: Child,
    url: String,
}

impl ServerProc {
    /// Runs the command and waits for its `listening on http://...` line.
    async fn spawn(cmd: &[String]) -> Result<Self, String> {
        let (program, args) = cmd.split_first().ok_or("no server command after --")?;
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Keeps reading to the end so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut head = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(tx) = tx.take_if(|_| line.contains("listening on http://")) {
                    let _ = tx.send(Ok(listening_url(&line)));
                } else if tx.is_some() && head.len() < 40 {
                    head.push(line);
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(head.join("\n")));
            }
        });
        let url = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(Ok(url))) => url,
            Ok(Ok(Err(log))) => return Err(format!("the server exited before listening:\n{log}")),
            _ => {
                let _ = child.kill();
                return Err("the server did not print its listening line".into());
            }
        };
        Ok(Self { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit.
    async fn stop(mut self) -> Result<(), String> {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {pid} failed"));
        }
        tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("wait: {e}"))?;
        Ok(())
    }
}

/// `http://ip:port` out of a log line containing `listening on http://ip:port`.
fn listening_url(line: &str) -> String {
    let at = line.find("listening on http://").unwrap_or(0) + "listening on ".len();
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/'))
        .collect()
}

/// One `/proc` reading of the server.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    pid: u32,
    cpu_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Reads the current server's CPU time and memory every 100 ms (`pid` 0: none running).
fn sampler(pid: Arc<AtomicU32>, over: CancellationToken) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !over.is_cancelled() {
            tick.tick().await;
            let pid = pid.load(Ordering::Relaxed);
            if pid == 0 {
                continue;
            }
            let p = pid.to_string();
            if let (Some(cpu_s), Some(rss_kib)) = (cpu_seconds(&p), status_kib(&p, "VmRSS:")) {
                samples.push(Sample {
                    at: Instant::now(),
                    pid,
                    cpu_s,
                    rss_kib,
                    hwm_kib: status_kib(&p, "VmHWM:").unwrap_or(rss_kib),
                });
            }
        }
        samples
    })
}

/// Peak CPU % over 500 ms windows of one process, among windows ending after `from`.
fn peak_cpu_pct(samples: &[Sample], from: Instant) -> Option<f64> {
    samples
        .windows(6)
        .filter(|w| w[0].pid == w[5].pid && w[5].at > from)
        .map(|w| (w[5].cpu_s - w[0].cpu_s) / (w[5].at - w[0].at).as_secs_f64() * 100.0)
        .reduce(f64::max)
}

/// What the run shares with every client.
struct Shared {
    kind: Kind,
    proto: Proto,
    policy: Policy,
    server: SocketAddr,
    /// The run's clock: receive times are milliseconds since this.
    start: Instant,
    /// Set at the stop (or cut).
    stop_at: std::sync::OnceLock<Instant>,
    /// The newest id the publisher had acknowledged.
    latest_acked: AtomicU64,
    /// Clients whose first connection is settled, either way.
    connected: AtomicUsize,
    /// Of those, the ones that failed: they are not waited for.
    initial_failed: AtomicUsize,
    /// Clients back after the stop (one that is cut again leaves this count).
    back: AtomicUsize,
    over: CancellationToken,
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    /// Ids received, with milliseconds since the run's start.
    received: Vec<(u64, u32)>,
    initial_failed: bool,
    /// The highest id it had when its connection ended after the stop.
    cursor_at_cut: Option<u64>,
    cut_at: Option<Instant>,
    back_at: Option<Instant>,
    /// The return's handshake: from the attempt's start to `connected`.
    handshake_us: Option<u64>,
    /// The publisher's newest acknowledged id when it was back.
    acked_at_back: u64,
    /// Attempts from its cut to its return (1 when the first succeeded).
    attempts: u32,
    /// Disconnections (1 expected).
    drops: u32,
    /// Cut again after a return (the return is then not counted).
    redrops: u32,
    /// socket.io reported the state recovered on return (`pid` kept).
    recovered: bool,
}

/// Where a client resumes from.
#[derive(Default)]
struct Cursor {
    max_id: u64,
    /// socket.io's private session id and the last broadcast offset (the Node peer).
    pid: Option<String>,
    offset: Option<String>,
}

/// What a frame asks of the client.
enum Action {
    Nothing,
    Pong,
    /// `sync-complete` with `more`: ask for the next page from this id.
    Sync(u64),
}

/// `"key":<digits>` in a frame.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `"key":"<value>"` in a frame.
fn string_after(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

impl ClientLog {
    /// Notes what a frame carries: a message id (and socket.io's offset), a retry hint, the
    /// end of a replay page.
    fn on_text(
        &mut self,
        shared: &Shared,
        cursor: &mut Cursor,
        hint: &mut Option<u64>,
        text: &str,
    ) -> Action {
        match client::classify(shared.proto, text) {
            Frame::Ping => Action::Pong,
            Frame::Event(TICK_EVENT | "broadcast-message") => {
                if let Some(id) = number_after(text, "\"id\":") {
                    let ms = shared.start.elapsed().as_millis() as u32;
                    self.received.push((id, ms));
                    cursor.max_id = cursor.max_id.max(id);
                }
                // socket.io appends the offset as a last string argument of broadcasts.
                if shared.kind == Kind::NodePeer
                    && let Some(body) = text.strip_suffix("\"]")
                    && let Some(at) = body.rfind(",\"")
                {
                    cursor.offset = Some(body[at + 2..].to_owned());
                }
                Action::Nothing
            }
            Frame::Event("error") => {
                if let Some(ms) = number_after(text, "\"retryAfterMs\":") {
                    *hint = Some(ms);
                }
                Action::Nothing
            }
            Frame::Event("sync-complete") if text.contains("\"more\":true") => {
                Action::Sync(number_after(text, "\"lastMessageId\":").unwrap_or(cursor.max_id))
            }
            _ => Action::Nothing,
        }
    }
}

/// Opens a connection, resuming from `cursor` when `resume`, and reads until `connected`
/// (frames before it, such as socket.io's recovered packets, are noted as they come).
async fn connect(
    i: usize,
    shared: &Shared,
    token: &str,
    resume: bool,
    log: &mut ClientLog,
    cursor: &mut Cursor,
    hint: &mut Option<u64>,
) -> Result<Conn, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source_for(i), 0))
        .map_err(|e| format!("bind: {e}"))?;
    let stream = socket
        .connect(shared.server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let server = shared.server;
    let url = match (shared.proto, resume && shared.kind == Kind::Switchboard) {
        (Proto::Ws, true) => format!(
            "ws://{server}/ws?token={token}&lastMessageId={}",
            cursor.max_id
        ),
        (Proto::Ws, false) => format!("ws://{server}/ws?token={token}"),
        (Proto::Sio, _) => format!("ws://{server}/socket.io/?EIO=4&transport=websocket"),
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(client::config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut conn = Conn {
        ws,
        proto: shared.proto,
    };
    let mut socket_connected = shared.proto == Proto::Ws;
    if shared.proto == Proto::Sio {
        let open = conn.next_text().await?;
        if !open.starts_with('0') {
            return Err(format!("expected the Engine.IO open packet, got {open}"));
        }
        let mut auth = json!({ "token": token });
        if resume {
            match shared.kind {
                Kind::Switchboard => auth["lastMessageId"] = cursor.max_id.into(),
                Kind::NodePeer => {
                    if let (Some(pid), Some(offset)) = (&cursor.pid, &cursor.offset) {
                        auth["pid"] = pid.clone().into();
                        auth["offset"] = offset.clone().into();
                    }
                }
            }
        }
        conn.send(&format!("40{auth}")).await?;
    }
    loop {
        let text = conn.next_text().await?;
        if shared.proto == Proto::Sio && !socket_connected {
            if let Some(reply) = text.strip_prefix("40") {
                socket_connected = true;
                let pid = string_after(reply, "\"pid\":");
                log.recovered = resume && pid.is_some() && pid == cursor.pid;
                cursor.pid = pid.or(cursor.pid.take());
                continue;
            }
            if text.starts_with("44") {
                return Err(format!("refused: {text}"));
            }
        }
        if client::classify(shared.proto, &text) == Frame::Event("connected") {
            return Ok(conn);
        }
        match log.on_text(shared, cursor, hint, &text) {
            Action::Pong => conn.send("3").await?,
            Action::Sync(since) => sync(&mut conn, since).await?,
            Action::Nothing => {}
        }
    }
}

async fn sync(conn: &mut Conn, since: u64) -> Result<(), String> {
    let data = json!({ "since": since }).to_string();
    conn.send(&client::encode(conn.proto, "sync", &data, None))
        .await
}

/// One client for the whole run: connects, follows, comes back after each cut.
async fn run_client(
    i: usize,
    shared: Arc<Shared>,
    token: String,
    gate: Arc<Semaphore>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut cursor = Cursor::default();
    let mut backoff = Backoff {
        policy: shared.policy,
        attempt: 0,
        rng: Rng::new(i as u64 + 1),
    };
    let mut hint = None;
    let mut resume = false;
    loop {
        let attempt_started = Instant::now();
        let permit = match resume {
            false => gate.clone().acquire_owned().await.ok(),
            true => None,
        };
        let cut = shared.stop_at.get().is_some();
        if cut && log.back_at.is_none() {
            log.attempts += 1;
        }
        let attempt = tokio::select! {
            () = shared.over.cancelled() => return log,
            a = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                connect(i, &shared, &token, resume, &mut log, &mut cursor, &mut hint),
            ) => a,
        };
        drop(permit);
        let mut conn = match attempt {
            Ok(Ok(conn)) => conn,
            _ if !resume => {
                log.initial_failed = true;
                shared.initial_failed.fetch_add(1, Ordering::Relaxed);
                shared.connected.fetch_add(1, Ordering::Relaxed);
                return log;
            }
            _ => {
                let wait = backoff.next(None);
                tokio::select! {
                    () = shared.over.cancelled() => return log,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        backoff.reset();
        hint = None;
        if !resume {
            shared.connected.fetch_add(1, Ordering::Relaxed);
        } else if log.cut_at.is_some() && log.back_at.is_none() {
            log.back_at = Some(Instant::now());
            log.handshake_us = Some(attempt_started.elapsed().as_micros() as u64);
            log.acked_at_back = shared.latest_acked.load(Ordering::Relaxed);
            shared.back.fetch_add(1, Ordering::Relaxed);
        }
        resume = true;
        // Follows the connection until it ends or the run is over.
        loop {
            let next = tokio::select! {
                () = shared.over.cancelled() => {
                    let _ = conn.ws.close(None).await;
                    return log;
                }
                next = conn.ws.next() => next,
            };
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    if let Some(f) = frame {
                        hint = number_after(&f.reason, "retry after ").or(hint);
                    }
                    // Reading on sends tungstenite's queued reply, as a browser answers a
                    // close at once; a server stopping gracefully waits for it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while conn.ws.next().await.is_some() {}
                    })
                    .await;
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            let sent = match log.on_text(&shared, &mut cursor, &mut hint, &text) {
                Action::Pong => conn.send("3").await,
                Action::Sync(since) => sync(&mut conn, since).await,
                Action::Nothing => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        log.drops += 1;
        // Back too early, on a server still stopping: not back yet.
        if log.back_at.take().is_some() {
            log.handshake_us = None;
            log.redrops += 1;
            shared.back.fetch_sub(1, Ordering::Relaxed);
        }
        if shared.stop_at.get().is_some() && log.cut_at.is_none() {
            log.cut_at = Some(Instant::now());
            log.cursor_at_cut = Some(cursor.max_id);
        }
        let hint_ms = match shared.policy {
            Policy::Package => hint,
            Policy::SocketioClient => None,
        };
        let wait = backoff.next(hint_ms);
        tokio::select! {
            () = shared.over.cancelled() => return log,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Publishes to everyone at `rate` per second until `over`; returns the acknowledged ids with
/// their times and the number of failed attempts.
fn publisher(
    common: &Common,
    kind: Kind,
    url: String,
    rate: f64,
    shared: Arc<Shared>,
    over: CancellationToken,
) -> tokio::task::JoinHandle<(Vec<(u64, Instant)>, u64)> {
    let token = common.token("restart-publisher", "ADMIN");
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        let mut acked = Vec::new();
        let mut failed = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut seq = 0u64;
        while !over.is_cancelled() {
            tick.tick().await;
            seq += 1;
            let request = match kind {
                Kind::Switchboard => http
                    .post(format!("{url}/websocket/publish"))
                    .bearer_auth(&token)
                    .json(&json!({"event": TICK_EVENT, "data": {"seq": seq}, "everyone": true})),
                Kind::NodePeer => http
                    .post(format!("{url}/bench/broadcast"))
                    .json(&json!({"message": format!("tick {seq}")})),
            };
            let id = match request.send().await {
                Ok(r) if r.status().is_success() => {
                    r.json::<Value>().await.ok().and_then(|v| v["id"].as_u64())
                }
                _ => None,
            };
            match id {
                Some(id) => {
                    acked.push((id, Instant::now()));
                    shared.latest_acked.fetch_max(id, Ordering::Relaxed);
                }
                None => failed += 1,
            }
        }
        (acked, failed)
    })
}

/// Waits until `done()` or `limit` passes, checking every 20 ms.
async fn until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

pub async fn restart(args: &RestartArgs) -> Result<Value, String> {
    let common = &args.common;
    let policy = args.policy.unwrap_or(match args.kind {
        Kind::Switchboard => Policy::Package,
        Kind::NodePeer => Policy::SocketioClient,
    });
    let mut server = ServerProc::spawn(&args.server).await?;
    let url = server.url.clone();
    let pid = Arc::new(AtomicU32::new(server.pid()));
    let sampling_over = CancellationToken::new();
    let samples = sampler(pid.clone(), sampling_over.clone());
    let own_cpu_start = cpu_seconds("self");

    let shared = Arc::new(Shared {
        kind: args.kind,
        proto: common.proto,
        policy,
        server: parse_server(&url),
        start: Instant::now(),
        stop_at: std::sync::OnceLock::new(),
        latest_acked: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        initial_failed: AtomicUsize::new(0),
        back: AtomicUsize::new(0),
        over: CancellationToken::new(),
    });
    let n = args.clients;
    eprintln!("restart: connecting {n} clients to {url}");
    let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let token = common.token(&format!("restart{i}"), "USER");
            tokio::spawn(run_client(i, shared.clone(), token, gate.clone()))
        })
        .collect();
    if !until(Duration::from_secs(300), || {
        shared.connected.load(Ordering::Relaxed) == n
    })
    .await
    {
        return Err("the clients did not all finish connecting in 300 s".into());
    }

    let publishing_over = CancellationToken::new();
    let publishing = publisher(
        common,
        args.kind,
        url.clone(),
        args.rate,
        shared.clone(),
        publishing_over.clone(),
    );
    eprintln!("restart: publishing at {}/s for {} s", args.rate, args.warm);
    let warm_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.warm)).await;

    let stop_at = Instant::now();
    let _ = shared.stop_at.set(stop_at);
    let mut shutdown_s = None;
    let mut start_s = None;
    match args.kind {
        Kind::Switchboard => {
            eprintln!("restart: SIGTERM");
            server.stop().await?;
            pid.store(0, Ordering::Relaxed);
            shutdown_s = Some(stop_at.elapsed().as_secs_f64());
            let spawned = Instant::now();
            server = ServerProc::spawn(&args.server).await?;
            start_s = Some(spawned.elapsed().as_secs_f64());
            pid.store(server.pid(), Ordering::Relaxed);
            if server.url != url {
                return Err(format!(
                    "the server came back on {} instead of {url}: give it a fixed address",
                    server.url
                ));
            }
        }
        Kind::NodePeer => {
            eprintln!("restart: cutting every connection");
            reqwest::Client::new()
                .post(format!("{url}/bench/cut"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("POST /bench/cut: {e}"))?;
        }
    }
    let down_s = stop_at.elapsed().as_secs_f64();
    let expected_back = n - shared.initial_failed.load(Ordering::Relaxed);
    let all_back = until(Duration::from_secs(args.return_timeout), || {
        shared.back.load(Ordering::Relaxed) >= expected_back
    })
    .await;
    eprintln!(
        "restart: {} of {n} back in {:.1} s",
        shared.back.load(Ordering::Relaxed),
        stop_at.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(args.after)).await;
    publishing_over.cancel();
    let (acked, publish_failed) = publishing.await.map_err(|e| e.to_string())?;
    // Whatever was acknowledged last has a moment to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.over.cancel();
    let mut logs = Vec::with_capacity(n);
    for c in clients {
        logs.push(c.await.map_err(|e| e.to_string())?);
    }
    sampling_over.cancel();
    let samples = samples.await.map_err(|e| e.to_string())?;
    let own_cpu = own_cpu_start.and_then(|s| cpu_seconds("self").map(|e| e - s));
    server.stop().await?;

    let mut m = common.line("restart");
    m.insert(
        "kind".into(),
        format!("{:?}", args.kind).to_lowercase().into(),
    );
    m.insert(
        "event".into(),
        match args.kind {
            Kind::Switchboard => "SIGTERM, then started again on the same file",
            Kind::NodePeer => "every connection cut, the process stays (socket.io recovery)",
        }
        .into(),
    );
    m.insert("policy".into(), format!("{policy:?}").to_lowercase().into());
    m.insert("clients".into(), n.into());
    m.insert("rate_per_sec".into(), args.rate.into());
    figures(&mut m, &shared, &logs, &acked, stop_at, all_back);
    m.insert("published".into(), acked.len().into());
    m.insert("publish_failed".into(), publish_failed.into());
    m.insert("down_s".into(), round(down_s, 3).into());
    m.insert("shutdown_s".into(), json!(shutdown_s.map(|v| round(v, 3))));
    m.insert("start_s".into(), json!(start_s.map(|v| round(v, 3))));
    let before: Vec<_> = samples
        .iter()
        .filter(|s| s.at >= warm_from && s.at <= stop_at)
        .collect();
    if let (Some(a), Some(b)) = (before.first(), before.last())
        && b.at > a.at
    {
        m.insert(
            "steady_cpu_pct".into(),
            round((b.cpu_s - a.cpu_s) / (b.at - a.at).as_secs_f64() * 100.0, 1).into(),
        );
        m.insert("steady_rss_kib".into(), b.rss_kib.into());
    }
    m.insert(
        "peak_cpu_pct".into(),
        json!(peak_cpu_pct(&samples, stop_at).map(|v| round(v, 1))),
    );
    // The process measured after the stop: the new one (restart) or the same (cut); its
    // high-water mark covers every moment between two samples.
    let after: Vec<_> = samples.iter().filter(|s| s.at >= stop_at).collect();
    m.insert(
        "peak_rss_kib".into(),
        json!(after.iter().map(|s| s.rss_kib.max(s.hwm_kib)).max()),
    );
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 2))));
    Ok(Value::Object(m))
}

/// The per-client figures: returns, handshakes, missed messages, duplicates.
fn figures(
    m: &mut serde_json::Map<String, Value>,
    shared: &Shared,
    logs: &[ClientLog],
    acked: &[(u64, Instant)],
    stop_at: Instant,
    all_back: bool,
) {
    let mut acked_ids: Vec<u64> = acked.iter().map(|(id, _)| *id).collect();
    acked_ids.sort_unstable();
    let mut returns_us = Vec::new();
    let mut handshakes = Vec::new();
    let mut caught_up_ms: Vec<u64> = Vec::new();
    let (mut expected, mut delivered, mut duplicates, mut lost, mut unacked) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let stop_ms = (stop_at - shared.start).as_millis() as u64;
    for log in logs.iter().filter(|l| !l.initial_failed) {
        if let Some(back) = log.back_at {
            returns_us.push((back - stop_at).as_micros() as u64);
        }
        handshakes.extend(log.handshake_us);
        let mut got: Vec<(u64, u32)> = log.received.clone();
        got.sort_unstable();
        let before = got.len();
        got.dedup_by_key(|(id, _)| *id);
        duplicates += (before - got.len()) as u64;
        let has = |id: u64| {
            got.binary_search_by_key(&id, |(i, _)| *i)
                .ok()
                .map(|at| got[at].1)
        };
        for &id in &acked_ids {
            if has(id).is_none() {
                lost += 1;
            }
        }
        unacked += got
            .iter()
            .filter(|(id, _)| acked_ids.binary_search(id).is_err())
            .count() as u64;
        // Missed: acknowledged after the last it had at the cut, up to its return.
        let (Some(cursor), Some(_)) = (log.cursor_at_cut, log.back_at) else {
            continue;
        };
        let mut last_ms = None;
        for &id in acked_ids
            .iter()
            .filter(|&&id| id > cursor && id <= log.acked_at_back)
        {
            expected += 1;
            if let Some(ms) = has(id) {
                delivered += 1;
                last_ms = Some(last_ms.unwrap_or(0).max(u64::from(ms)));
            }
        }
        let back_ms = log
            .back_at
            .map(|b| (b - shared.start).as_millis() as u64)
            .unwrap_or(0);
        caught_up_ms.push(
            last_ms
                .unwrap_or(back_ms)
                .max(back_ms)
                .saturating_sub(stop_ms),
        );
    }
    let ret = percentiles(&mut returns_us.clone());
    let hs = percentiles(&mut handshakes);
    let connected = logs.iter().filter(|l| !l.initial_failed).count();
    m.insert("connected".into(), connected.into());
    m.insert(
        "cut".into(),
        logs.iter().filter(|l| l.cut_at.is_some()).count().into(),
    );
    m.insert("back".into(), returns_us.len().into());
    m.insert("all_back".into(), all_back.into());
    m.insert(
        "all_back_s".into(),
        json!(all_back.then(|| round(ret.max_us as f64 / 1e6, 3))),
    );
    m.insert(
        "return_p50_s".into(),
        round(ret.p50_us as f64 / 1e6, 3).into(),
    );
    m.insert(
        "return_p99_s".into(),
        round(ret.p99_us as f64 / 1e6, 3).into(),
    );
    m.insert("handshake_p50_us".into(), hs.p50_us.into());
    m.insert("handshake_p99_us".into(), hs.p99_us.into());
    m.insert("handshake_max_us".into(), hs.max_us.into());
    m.insert(
        "attempts".into(),
        logs.iter()
            .map(|l| u64::from(l.attempts))
            .sum::<u64>()
            .into(),
    );
    m.insert(
        "drops".into(),
        logs.iter().map(|l| u64::from(l.drops)).sum::<u64>().into(),
    );
    m.insert(
        "redrops".into(),
        logs.iter()
            .map(|l| u64::from(l.redrops))
            .sum::<u64>()
            .into(),
    );
    m.insert(
        "recovered".into(),
        logs.iter().filter(|l| l.recovered).count().into(),
    );
    m.insert("missed_expected".into(), expected.into());
    m.insert("missed_delivered".into(), delivered.into());
    m.insert("duplicates".into(), duplicates.into());
    m.insert("lost".into(), lost.into());
    m.insert("unacked_received".into(), unacked.into());
    m.insert(
        "all_caught_up_s".into(),
        json!(
            caught_up_ms
                .iter()
                .max()
                .map(|ms| round(*ms as f64 / 1e3, 3))
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_url_is_read_from_either_server_log() {
        assert_eq!(
            listening_url(
                "2026-01-01T00:00:00Z INFO switchboard::startup: listening on http://127.0.0.1:4001 (sqlite)"
            ),
            "http://127.0.0.1:4001"
        );
        assert_eq!(
            listening_url("listening on http://127.0.0.1:39999"),
            "http://127.0.0.1:39999"
        );
    }

    #[test]
    fn hints_and_ids_are_read_from_frames() {
        assert_eq!(
            number_after("server shutting down; retry after 4312 ms", "retry after "),
            Some(4312)
        );
        assert_eq!(
            number_after(
                r#"{"event":"bench-tick","data":{"seq":3,"id":77,"from":{"userId":"a"}}}"#,
                "\"id\":"
            ),
            Some(77)
        );
        assert_eq!(
            string_after(r#"{"sid":"abc","pid":"xyz"}"#, "\"pid\":"),
            Some("xyz".into())
        );
    }

    #[test]
    fn the_package_policy_waits_at_least_the_hint() {
        let mut b = Backoff {
            policy: Policy::Package,
            attempt: 0,
            rng: Rng::new(7),
        };
        for _ in 0..100 {
            b.reset();
            let wait = b.next(Some(2000)).as_millis();
            assert!((2000..2500).contains(&wait), "{wait}");
        }
    }
}
