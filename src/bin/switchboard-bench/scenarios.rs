//! The scenarios. Each sets up its connections, measures a window (server CPU, own CPU,
//! deliveries, latencies), and returns one JSON line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Conn, Frame, Proto};
use crate::measure::{self, CpuWindow, percentiles, round};
use crate::{Common, FlowArgs, source_for};

/// Builds a client event's data from the message text.
type PayloadFn = Box<dyn Fn(&str) -> String + Send + Sync>;

/// Which message flow to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Fanout,
    Broadcast,
    Private,
}

/// Opens `count` connections with bounded concurrency; `user(i)` names the i-th user.
async fn open_many(
    common: &Common,
    count: usize,
    offset: usize,
    user: impl Fn(usize) -> String,
) -> Result<(Vec<Conn>, Vec<u64>), String> {
    open_many_on(common, &[common.server()], count, offset, user).await
}

/// Like [`open_many`], the i-th connection to `servers[i % servers.len()]`.
async fn open_many_on(
    common: &Common,
    servers: &[SocketAddr],
    count: usize,
    offset: usize,
    user: impl Fn(usize) -> String,
) -> Result<(Vec<Conn>, Vec<u64>), String> {
    let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let token = common.token(&user(i), "USER");
        let proto = common.proto;
        let gate = gate.clone();
        let server = servers[i % servers.len()];
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            client::connect(proto, server, Some(source_for(offset + i)), &token, "").await
        }));
    }
    let mut conns = Vec::with_capacity(count);
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        let (conn, took) = task.await.map_err(|e| e.to_string())??;
        latencies.push(took.as_micros() as u64);
        conns.push(conn);
    }
    Ok((conns, latencies))
}

/// Reads and discards everything (answering pings) until `stop`; returns frames read.
async fn drain(mut conn: Conn, stop: CancellationToken) -> u64 {
    let mut frames = 0;
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => break,
            next = conn.ws.next() => next,
        };
        match next {
            Some(Ok(Message::Text(t))) => {
                frames += 1;
                if conn.proto == Proto::Sio && t.as_str() == "2" {
                    let _ = conn.send("3").await;
                }
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = conn.ws.close(None).await;
    frames
}

/// One HTTP GET round trip on a fresh connection (is the server responsive?).
async fn probe_http(common: &Common) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(common.server()).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(started.elapsed().as_micros() as u64)
}

pub async fn connections(
    common: &Common,
    n: usize,
    users: usize,
    hold: Duration,
) -> Result<Value, String> {
    let pid = common.server_pid.as_deref();
    let rss_before = pid.and_then(measure::rss_kib);
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let users = users.max(1);
    let (conns, mut latencies) = open_many(common, n, 0, |i| format!("idle{}", i % users)).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let stop = CancellationToken::new();
    let drains: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(drain(c, stop.clone())))
        .collect();
    // Let presence fan-out and allocations settle before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = pid.and_then(measure::rss_kib);
    let mut probes = Vec::new();
    let hold_until = Instant::now() + hold;
    while Instant::now() < hold_until {
        if let Some(us) = probe_http(common).await {
            probes.push(us);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (server_cpu, own_cpu) = cpu.stop();
    stop.cancel();
    let mut frames = 0;
    for d in drains {
        frames += d.await.unwrap_or(0);
    }
    let connect = percentiles(&mut latencies);
    let probe = percentiles(&mut probes);
    let mut m = common.line("connections");
    m.insert("connections".into(), n.into());
    m.insert("users".into(), users.into());
    m.insert("connect_seconds".into(), round(connect_secs, 3).into());
    m.insert("connect_p50_us".into(), connect.p50_us.into());
    m.insert("connect_p99_us".into(), connect.p99_us.into());
    m.insert("rss_before_kib".into(), json!(rss_before));
    m.insert("rss_after_kib".into(), json!(rss_after));
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        let per = (a.saturating_sub(b) as f64 * 1024.0) / n.max(1) as f64;
        m.insert(
            "rss_per_connection_bytes".into(),
            (per.round() as u64).into(),
        );
    }
    m.insert("probe_http_p50_us".into(), probe.p50_us.into());
    m.insert("probe_http_max_us".into(), probe.max_us.into());
    m.insert("presence_frames_read".into(), frames.into());
    m.insert(
        "server_cpu_s".into(),
        json!(server_cpu.map(|v| round(v, 3))),
    );
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 3))));
    Ok(Value::Object(m))
}

pub async fn connect_rate(common: &Common, total: usize) -> Result<Value, String> {
    let pid = common.server_pid.as_deref();
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let server = common.server();
    let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let token = common.token(&format!("rate{i}"), "USER");
        let gate = gate.clone();
        let proto = common.proto;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let (mut conn, took) =
                client::connect(proto, server, Some(source_for(i)), &token, "").await?;
            let _ = conn.ws.close(None).await;
            Ok::<u64, String>(took.as_micros() as u64)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(us)) => latencies.push(us),
            _ => failed += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = cpu.stop();
    let lat = percentiles(&mut latencies);
    let mut m = common.line("connect-rate");
    m.insert("handshakes".into(), latencies.len().into());
    m.insert("failed".into(), failed.into());
    m.insert(
        "handshakes_per_sec".into(),
        round(latencies.len() as f64 / secs, 0).into(),
    );
    m.insert("connect_p50_us".into(), lat.p50_us.into());
    m.insert("connect_p99_us".into(), lat.p99_us.into());
    m.insert(
        "server_cpu_s".into(),
        json!(server_cpu.map(|v| round(v, 3))),
    );
    if let Some(cpu) = server_cpu {
        m.insert(
            "server_cpu_us_per_handshake".into(),
            round(cpu * 1e6 / latencies.len().max(1) as f64, 1).into(),
        );
    }
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 3))));
    Ok(Value::Object(m))
}

pub async fn presence(common: &Common, users: usize) -> Result<Value, String> {
    let pid = common.server_pid.as_deref();
    let stop = CancellationToken::new();
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let server = common.server();
    let mut drains = Vec::with_capacity(users);
    let mut latencies = Vec::with_capacity(users);
    // One after the other: each new user is announced to everyone already there.
    for i in 0..users {
        let token = common.token(&format!("presence{i}"), "USER");
        let (conn, took) =
            client::connect(common.proto, server, Some(source_for(i)), &token, "").await?;
        latencies.push(took.as_micros() as u64);
        drains.push(tokio::spawn(drain(conn, stop.clone())));
    }
    let secs = started.elapsed().as_secs_f64();
    // Give the last announcements time to be read before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (server_cpu, own_cpu) = cpu.stop();
    stop.cancel();
    let mut frames = 0u64;
    for d in drains {
        frames += d.await.unwrap_or(0);
    }
    let expected = (users as u64) * (users as u64 - 1) / 2;
    let lat = percentiles(&mut latencies);
    let mut m = common.line("presence");
    m.insert("users".into(), users.into());
    m.insert("seconds".into(), round(secs, 3).into());
    m.insert("presence_frames_expected".into(), expected.into());
    m.insert("frames_read".into(), frames.into());
    m.insert("connect_p50_us".into(), lat.p50_us.into());
    m.insert("connect_p99_us".into(), lat.p99_us.into());
    m.insert(
        "server_cpu_s".into(),
        json!(server_cpu.map(|v| round(v, 3))),
    );
    if let Some(cpu) = server_cpu {
        m.insert(
            "server_cpu_us_per_presence_frame".into(),
            round(cpu * 1e6 / expected.max(1) as f64, 3).into(),
        );
    }
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 3))));
    Ok(Value::Object(m))
}

/// Shared between senders and receivers.
struct Progress {
    sent: Vec<AtomicU64>,
    done_sending: AtomicBool,
}

#[derive(Default)]
struct Received {
    deliveries: u64,
    lost: u64,
    duplicated: u64,
    /// Deliveries whose message id was not above the previous one's on this connection
    /// (every server delivers a connection's messages in id order).
    out_of_order: u64,
    latencies: Vec<u64>,
}

impl Received {
    fn add(&mut self, other: Received) {
        self.deliveries += other.deliveries;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.latencies.extend(other.latencies);
    }
}

/// The message id of a delivered frame: the `id` its data object starts with.
fn message_id(text: &str) -> Option<u64> {
    let start = text.find("{\"id\":")? + "{\"id\":".len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

async fn receive(
    mut conn: Conn,
    event: &'static str,
    only_sender: Option<usize>,
    progress: Arc<Progress>,
) -> Received {
    let senders = progress.sent.len();
    let mut expected = vec![0u64; senders];
    let mut got = Received::default();
    let mut last_id = 0u64;
    let mut grace: Option<Instant> = None;
    loop {
        if progress.done_sending.load(Ordering::Acquire) {
            let complete = (0..senders)
                .filter(|s| only_sender.is_none_or(|o| o == *s))
                .all(|s| expected[s] >= progress.sent[s].load(Ordering::Acquire));
            let deadline = *grace.get_or_insert_with(|| Instant::now() + Duration::from_secs(3));
            if complete || Instant::now() > deadline {
                break;
            }
        }
        let next = match tokio::time::timeout(Duration::from_millis(100), conn.ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            Ok(_) => break,
        };
        match client::classify(conn.proto, &next) {
            Frame::Ping => {
                let _ = conn.send("3").await;
            }
            Frame::Event(name) if name == event => {
                let Some((sender, seq, nanos)) = client::probe(&next) else {
                    continue;
                };
                if sender >= senders {
                    continue;
                }
                got.deliveries += 1;
                if let Some(id) = message_id(&next) {
                    if id <= last_id {
                        got.out_of_order += 1;
                    }
                    last_id = id;
                }
                got.latencies
                    .push(((measure::now_nanos().saturating_sub(nanos)) / 1000) as u64);
                let exp = &mut expected[sender];
                if seq == *exp {
                    *exp += 1;
                } else if seq > *exp {
                    got.lost += seq - *exp;
                    *exp = seq + 1;
                } else {
                    got.duplicated += 1;
                }
            }
            _ => {}
        }
    }
    for (s, exp) in expected.iter().enumerate() {
        if only_sender.is_none_or(|o| o == s) {
            got.lost += progress.sent[s]
                .load(Ordering::Acquire)
                .saturating_sub(*exp);
        }
    }
    let _ = conn.ws.close(None).await;
    got
}

struct Sent {
    acked: u64,
    ack_latencies: Vec<u64>,
    /// Its own messages delivered back to it (a sender is left out of its own message's
    /// recipients).
    own_echoes: u64,
}

/// How a sender paces its messages: `rate` per second (open loop), or, at 0, closed loop with
/// up to `window` messages waiting for their ack.
struct Pace {
    rate: f64,
    window: usize,
}

#[allow(clippy::too_many_arguments)]
async fn send(
    mut conn: Conn,
    index: usize,
    event: &'static str,
    delivered_as: &'static str,
    data: impl Fn(&str) -> String,
    Pace { rate, window }: Pace,
    until: Instant,
    pad: String,
    progress: Arc<Progress>,
) -> Sent {
    let mut out = Sent {
        acked: 0,
        ack_latencies: Vec::new(),
        own_echoes: 0,
    };
    let mut pending: std::collections::VecDeque<Instant> = Default::default();
    let mut seq = 0u64;
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut tick = interval.map(|i| {
        let mut t = tokio::time::interval(i);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    loop {
        let now = Instant::now();
        if now >= until && pending.is_empty() {
            break;
        }
        let may_send = now < until && (interval.is_some() || pending.len() < window);
        if may_send && interval.is_none() {
            // Closed loop: the next message as soon as fewer than `window` wait for an ack.
            let text = format!("b{index}:{seq}:{}:{pad}", measure::now_nanos());
            let frame = client::encode(conn.proto, event, &data(&text), Some(seq + 1));
            if conn.send(&frame).await.is_err() {
                break;
            }
            seq += 1;
            progress.sent[index].store(seq, Ordering::Release);
            pending.push_back(Instant::now());
        }
        let frame = tokio::select! {
            _ = async { tick.as_mut().expect("open loop").tick().await }, if may_send && interval.is_some() => {
                let text = format!("b{index}:{seq}:{}:{pad}", measure::now_nanos());
                let frame = client::encode(conn.proto, event, &data(&text), Some(seq + 1));
                if conn.send(&frame).await.is_err() {
                    break;
                }
                seq += 1;
                progress.sent[index].store(seq, Ordering::Release);
                pending.push_back(Instant::now());
                continue;
            }
            next = tokio::time::timeout(Duration::from_secs(5), conn.ws.next()) => next,
        };
        let text = match frame {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        match client::classify(conn.proto, &text) {
            Frame::Ack => {
                if let Some(at) = pending.pop_front() {
                    out.ack_latencies.push(at.elapsed().as_micros() as u64);
                }
                out.acked += 1;
            }
            Frame::Ping => {
                let _ = conn.send("3").await;
            }
            Frame::Event(name)
                if name == delivered_as
                    && client::probe(&text).is_some_and(|(sender, _, _)| sender == index) =>
            {
                out.own_echoes += 1;
            }
            _ => {}
        }
    }
    let _ = conn.ws.close(None).await;
    out
}

/// Joins the bench room: waits for `joined-room` and for the join's ack (an ack left unread
/// here would be taken by a sender for its first message's). Returns whether the ack came
/// within 5 s of the event: a server that drops an ack must show in the results, not hang
/// the run.
async fn join(conn: &mut client::Conn) -> Result<bool, String> {
    let frame = client::encode(conn.proto, "join-room", r#"{"room":"bench"}"#, Some(1));
    conn.send(&frame).await?;
    let (mut joined, mut acked) = (false, false);
    let mut deadline = None;
    while !(joined && acked) {
        let next = match deadline {
            None => conn.next_text().await?,
            Some(at) => match tokio::time::timeout_at(at, conn.next_text()).await {
                Ok(text) => text?,
                Err(_) => return Ok(false),
            },
        };
        match client::classify(conn.proto, &next) {
            Frame::Event("joined-room") => {
                joined = true;
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
            }
            Frame::Ack => acked = true,
            _ => {}
        }
    }
    Ok(true)
}

pub async fn flow(common: &Common, kind: Flow, args: &FlowArgs) -> Result<Value, String> {
    let pid = common.server_pid.as_deref();
    let receivers_n = args.receivers;
    let senders_n = if kind == Flow::Private {
        args.receivers
    } else {
        args.senders.max(1)
    };
    // Senders on the first server; receivers round-robin over all of them (or, with
    // `--remote-receivers`, over the others), each remembered by its server's index.
    let servers = common.all_servers();
    let receiver_nodes: Vec<usize> = match args.remote_receivers {
        true if servers.len() < 2 => {
            return Err("--remote-receivers needs at least two --servers".into());
        }
        true => (1..servers.len()).collect(),
        false => (0..servers.len()).collect(),
    };
    let receiver_servers: Vec<SocketAddr> = receiver_nodes.iter().map(|&n| servers[n]).collect();
    let node_of = |i: usize| receiver_nodes[i % receiver_nodes.len()];
    let (receivers, _) = open_many_on(common, &receiver_servers, receivers_n, 0, |i| {
        format!("recv{i}")
    })
    .await?;
    let (mut senders, _) =
        open_many(common, senders_n, receivers_n, |i| format!("send{i}")).await?;
    let mut receivers = receivers;
    // Joins whose ack never came (the event did): see `join`.
    let mut join_acks_missing = 0u64;
    if kind == Flow::Fanout {
        for conn in receivers.iter_mut().chain(senders.iter_mut()) {
            if !join(conn).await? {
                join_acks_missing += 1;
            }
        }
    }
    // Presence and join announcements may still be in flight; they are skipped by event name.
    let progress = Arc::new(Progress {
        sent: (0..senders_n).map(|_| AtomicU64::new(0)).collect(),
        done_sending: AtomicBool::new(false),
    });
    let event: &'static str = match kind {
        Flow::Fanout => "room-message",
        Flow::Broadcast => "broadcast-message",
        Flow::Private => "private-message",
    };
    let cpu = CpuWindow::start_with(pid, &common.aux_process);
    let started = Instant::now();
    let receiving: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let only = (kind == Flow::Private).then_some(i);
            tokio::spawn(receive(c, event, only, progress.clone()))
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(args.duration);
    let pad = "x".repeat(args.payload);
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let progress = progress.clone();
            let pad = pad.clone();
            let (client_event, data): (&'static str, PayloadFn) = match kind {
                Flow::Fanout => (
                    "room-message",
                    Box::new(|m: &str| format!(r#"{{"room":"bench","message":"{m}"}}"#)),
                ),
                Flow::Broadcast => (
                    "send-message",
                    Box::new(|m: &str| format!(r#"{{"message":"{m}"}}"#)),
                ),
                Flow::Private => {
                    let to = format!("recv{i}");
                    (
                        "send-message",
                        Box::new(move |m: &str| format!(r#"{{"message":"{m}","to":"{to}"}}"#)),
                    )
                }
            };
            tokio::spawn(send(
                c,
                i,
                client_event,
                event,
                data,
                Pace {
                    rate: args.rate,
                    window: args.window.max(1),
                },
                until,
                pad,
                progress,
            ))
        })
        .collect();
    let mut acked = 0;
    let mut own_echoes = 0;
    let mut ack_latencies = Vec::new();
    for s in sending {
        let s = s.await.map_err(|e| e.to_string())?;
        acked += s.acked;
        own_echoes += s.own_echoes;
        ack_latencies.extend(s.ack_latencies);
    }
    let send_secs = started.elapsed().as_secs_f64();
    progress.done_sending.store(true, Ordering::Release);
    // Per receivers' server (index in `--servers`).
    let mut by_node: Vec<Received> = servers.iter().map(|_| Received::default()).collect();
    for (i, r) in receiving.into_iter().enumerate() {
        let r = r.await.map_err(|e| e.to_string())?;
        by_node[node_of(i)].add(r);
    }
    let secs = started.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = cpu.stop();
    let server_cpus = cpu.servers();
    let aux_cpu = cpu.aux();
    // Same node as the senders (index 0) and cross-node, before they are merged.
    let mut same_node = std::mem::take(&mut by_node[0].latencies);
    let mut cross_node: Vec<u64> = by_node[1..]
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.latencies))
        .collect();
    let node_counts: Vec<(u64, u64)> = by_node.iter().map(|r| (r.deliveries, r.lost)).collect();
    let mut total = Received::default();
    for r in by_node {
        total.add(r);
    }
    total.latencies.extend_from_slice(&same_node);
    total.latencies.extend_from_slice(&cross_node);
    let sent: u64 = progress
        .sent
        .iter()
        .map(|s| s.load(Ordering::Acquire))
        .sum();
    let lat = percentiles(&mut total.latencies);
    let ack = percentiles(&mut ack_latencies);
    let mut m = common.line(match kind {
        Flow::Fanout => "fanout",
        Flow::Broadcast => "broadcast",
        Flow::Private => "private",
    });
    m.insert("receivers".into(), receivers_n.into());
    m.insert("senders".into(), senders_n.into());
    m.insert(
        "rate_per_sender".into(),
        if args.rate > 0.0 {
            json!(args.rate)
        } else {
            json!("closed-loop")
        },
    );
    m.insert("payload_bytes".into(), args.payload.into());
    m.insert("sent".into(), sent.into());
    m.insert("acked".into(), acked.into());
    m.insert(
        "messages_per_sec".into(),
        round(sent as f64 / send_secs, 0).into(),
    );
    m.insert("deliveries".into(), total.deliveries.into());
    m.insert(
        "deliveries_per_sec".into(),
        round(total.deliveries as f64 / secs, 0).into(),
    );
    m.insert("latency_p50_us".into(), lat.p50_us.into());
    m.insert("latency_p99_us".into(), lat.p99_us.into());
    m.insert("latency_max_us".into(), lat.max_us.into());
    m.insert("ack_p50_us".into(), ack.p50_us.into());
    m.insert("ack_p99_us".into(), ack.p99_us.into());
    m.insert(
        "acked_per_sec".into(),
        round(acked as f64 / send_secs, 0).into(),
    );
    m.insert("lost".into(), total.lost.into());
    m.insert("join_acks_missing".into(), join_acks_missing.into());
    m.insert("duplicated".into(), total.duplicated.into());
    m.insert("out_of_order".into(), total.out_of_order.into());
    m.insert("own_echoes".into(), own_echoes.into());
    if servers.len() > 1 {
        m.insert("servers".into(), servers.len().into());
        m.insert("remote_receivers".into(), args.remote_receivers.into());
        let same = percentiles(&mut same_node);
        let cross = percentiles(&mut cross_node);
        m.insert("same_node_deliveries".into(), same_node.len().into());
        m.insert("latency_same_node_p50_us".into(), same.p50_us.into());
        m.insert("latency_same_node_p99_us".into(), same.p99_us.into());
        m.insert("cross_node_deliveries".into(), cross_node.len().into());
        m.insert("latency_cross_node_p50_us".into(), cross.p50_us.into());
        m.insert("latency_cross_node_p99_us".into(), cross.p99_us.into());
        m.insert("latency_cross_node_max_us".into(), cross.max_us.into());
        m.insert(
            "deliveries_by_server".into(),
            json!(node_counts.iter().map(|c| c.0).collect::<Vec<_>>()),
        );
        m.insert(
            "lost_by_server".into(),
            json!(node_counts.iter().map(|c| c.1).collect::<Vec<_>>()),
        );
    }
    if server_cpus.len() > 1 {
        m.insert(
            "server_cpu_s_by_pid".into(),
            json!(
                server_cpus
                    .iter()
                    .map(|c| c.map(|v| round(v, 3)))
                    .collect::<Vec<_>>()
            ),
        );
    }
    for (name, used) in &aux_cpu {
        m.insert(format!("aux_cpu_s_{name}"), round(*used, 3).into());
        m.insert(
            format!("aux_cpu_us_per_delivery_{name}"),
            round(used * 1e6 / total.deliveries.max(1) as f64, 3).into(),
        );
    }
    m.insert(
        "server_cpu_s".into(),
        json!(server_cpu.map(|v| round(v, 3))),
    );
    if let Some(cpu) = server_cpu {
        m.insert(
            "server_cpu_us_per_delivery".into(),
            round(cpu * 1e6 / total.deliveries.max(1) as f64, 3).into(),
        );
    }
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 3))));
    if let Some(cpu) = own_cpu {
        m.insert(
            "loadgen_cpu_us_per_delivery".into(),
            round(cpu * 1e6 / total.deliveries.max(1) as f64, 3).into(),
        );
    }
    m.insert("rss_kib".into(), json!(pid.and_then(measure::rss_kib)));
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn the_message_id_is_read_from_either_protocol() {
        let ws =
            r#"{"event":"room-message","data":{"id":42,"from":{"userId":"u"},"message":"b0:1:2"}}"#;
        assert_eq!(message_id(ws), Some(42));
        let sio = r#"42["private-message",{"id":7,"from":{"userId":"u"}}]"#;
        assert_eq!(message_id(sio), Some(7));
        assert_eq!(message_id(r#"{"event":"user-connected","data":{}}"#), None);
    }
}
