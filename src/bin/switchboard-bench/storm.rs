//! The reconnect storm: what a restart or a network blip looks like to the server. N distinct
//! users, each with private messages queued while it was away, reconnect at R per second with
//! the `lastMessageId` they last saw; the scenario reports how many got in, how fast the
//! handshakes were, when every client had what it missed, and how many were still connected
//! after a hold (a client dropped as a slow consumer, or by a timeout, is not).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Conn, Frame};
use crate::measure::{CpuWindow, percentiles, round, rss_kib};
use crate::{Common, StormArgs, source_for};

/// How long one client may take to connect and get `connected`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one client.
#[derive(Default)]
struct Outcome {
    /// From the first attempt, retries after a busy refusal included.
    handshake_us: Option<u64>,
    /// Busy refusals followed (the server's admission said when to come back).
    retries: u64,
    presence_summaries: u64,
    timed_out: bool,
    /// Since the storm began, when the client had every message queued for it.
    caught_up_us: Option<u64>,
    /// Still connected when the hold ended.
    alive: bool,
}

pub async fn storm(args: &StormArgs) -> Result<Value, String> {
    let common = &args.common;
    let users = args.users;
    let user = |i: usize| format!("storm{i}");

    // Set-up: every user is known (connected once), then gets its queued messages.
    eprintln!("storm: registering {users} users");
    register(common, users, &user).await?;
    eprintln!("storm: queueing {} messages per user", args.queued);
    let resume_from = queue_messages(common, users, args.queued, &user).await?;

    eprintln!("storm: {users} users reconnecting at {}/s", args.rate);
    let pid = common.server_pid.as_deref();
    let cpu = CpuWindow::start(pid);
    let frames = Arc::new(AtomicU64::new(0));
    let hold_over = CancellationToken::new();
    let started = Instant::now();
    let mut clients = Vec::with_capacity(users);
    for i in 0..users {
        let at = started + Duration::from_secs_f64(i as f64 / args.rate.max(1.0));
        tokio::time::sleep_until(at.into()).await;
        let token = common.token(&user(i), "USER");
        let proto = common.proto;
        let server = common.server();
        let queued = args.queued;
        let frames = frames.clone();
        let hold_over = hold_over.clone();
        clients.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let first_attempt = Instant::now();
            let connect = async {
                loop {
                    let attempt = client::connect_resuming(
                        proto,
                        server,
                        Some(source_for(i)),
                        &token,
                        resume_from,
                    );
                    match attempt.await {
                        Err(e) => match client::retry_hint(&e) {
                            Some(after) => {
                                outcome.retries += 1;
                                tokio::time::sleep(after).await;
                            }
                            None => return Err(e),
                        },
                        done => return done,
                    }
                }
            };
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
                Ok(Ok((conn, _))) => {
                    outcome.handshake_us = Some(first_attempt.elapsed().as_micros() as u64);
                    conn
                }
                Ok(Err(_)) => return outcome,
                Err(_) => {
                    outcome.timed_out = true;
                    return outcome;
                }
            };
            follow(conn, queued, started, &frames, &hold_over, &mut outcome).await;
            outcome
        }));
    }
    let storm_secs = started.elapsed().as_secs_f64();
    // The hold starts once the last client had its chance to connect.
    tokio::time::sleep(HANDSHAKE_TIMEOUT + Duration::from_secs(args.hold)).await;
    let rss = pid.and_then(rss_kib);
    hold_over.cancel();
    let (server_cpu, own_cpu) = cpu.stop();

    let mut outcomes = Vec::with_capacity(users);
    for c in clients {
        outcomes.push(c.await.map_err(|e| e.to_string())?);
    }
    let mut handshakes: Vec<u64> = outcomes.iter().filter_map(|o| o.handshake_us).collect();
    let connected = handshakes.len();
    let lat = percentiles(&mut handshakes);
    let caught_up: Vec<u64> = outcomes.iter().filter_map(|o| o.caught_up_us).collect();
    let all_caught_up_s = (caught_up.len() == users)
        .then(|| caught_up.iter().max().map(|us| *us as f64 / 1e6))
        .flatten();

    let mut m = common.line("storm");
    m.insert("users".into(), users.into());
    m.insert("rate_per_sec".into(), args.rate.into());
    m.insert("queued_per_user".into(), args.queued.into());
    m.insert("connected".into(), connected.into());
    m.insert(
        "timed_out".into(),
        outcomes.iter().filter(|o| o.timed_out).count().into(),
    );
    m.insert(
        "failed".into(),
        (users - connected - outcomes.iter().filter(|o| o.timed_out).count()).into(),
    );
    m.insert("handshake_p50_us".into(), lat.p50_us.into());
    m.insert("handshake_p99_us".into(), lat.p99_us.into());
    m.insert("caught_up".into(), caught_up.len().into());
    m.insert("all_caught_up_s".into(), json!(all_caught_up_s));
    m.insert(
        "alive_after_hold".into(),
        outcomes.iter().filter(|o| o.alive).count().into(),
    );
    m.insert(
        "busy_retries".into(),
        outcomes.iter().map(|o| o.retries).sum::<u64>().into(),
    );
    m.insert(
        "presence_summaries".into(),
        outcomes
            .iter()
            .map(|o| o.presence_summaries)
            .sum::<u64>()
            .into(),
    );
    m.insert(
        "frames_received".into(),
        frames.load(Ordering::Relaxed).into(),
    );
    m.insert("storm_s".into(), round(storm_secs, 2).into());
    m.insert(
        "server_cpu_s".into(),
        json!(server_cpu.map(|v| round(v, 2))),
    );
    m.insert("server_rss_kib".into(), json!(rss));
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 2))));
    Ok(Value::Object(m))
}

/// Reads the client's frames until the hold ends: counts them, notes when the last queued
/// message arrived, answers Engine.IO pings.
async fn follow(
    mut conn: Conn,
    queued: u64,
    started: Instant,
    frames: &AtomicU64,
    hold_over: &CancellationToken,
    outcome: &mut Outcome,
) {
    let mut missed = queued;
    if missed == 0 {
        outcome.caught_up_us = Some(started.elapsed().as_micros() as u64);
    }
    loop {
        let next = tokio::select! {
            () = hold_over.cancelled() => {
                outcome.alive = true;
                break;
            }
            next = conn.ws.next() => next,
        };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        frames.fetch_add(1, Ordering::Relaxed);
        match client::classify(conn.proto, &text) {
            Frame::Ping => {
                let _ = conn.send("3").await;
            }
            Frame::Event("presence-summary") => outcome.presence_summaries += 1,
            Frame::Event("private-message") if missed > 0 => {
                missed -= 1;
                if missed == 0 {
                    outcome.caught_up_us = Some(started.elapsed().as_micros() as u64);
                }
            }
            _ => {}
        }
    }
    let _ = conn.ws.close(None).await;
}

/// Connects every user once (bounded concurrency), so that messages to them are queued.
async fn register(
    common: &Common,
    users: usize,
    user: &(dyn Fn(usize) -> String + Sync),
) -> Result<(), String> {
    let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(users);
    for i in 0..users {
        let token = common.token(&user(i), "USER");
        let (proto, server, gate) = (common.proto, common.server(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let (mut conn, _) =
                client::connect(proto, server, Some(source_for(i)), &token, "").await?;
            let _ = conn.ws.close(None).await;
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Sends `queued` private messages to every (offline) user from one sender, pipelined in
/// windows; returns the id before the first, which the reconnecting clients resume from.
async fn queue_messages(
    common: &Common,
    users: usize,
    queued: u64,
    user: &(dyn Fn(usize) -> String + Sync),
) -> Result<u64, String> {
    const WINDOW: u64 = 64;
    let token = common.token("storm-sender", "USER");
    let (mut sender, _) = client::connect(common.proto, common.server(), None, &token, "").await?;
    let total = users as u64 * queued;
    let mut first_id = None;
    let mut acked = 0u64;
    let mut sent = 0u64;
    while acked < total {
        while sent < total && sent - acked < WINDOW {
            let to = user((sent % users as u64) as usize);
            let data = json!({"message": format!("missed {sent}"), "to": to}).to_string();
            let frame = client::encode(common.proto, "send-message", &data, Some(sent + 1));
            sender.send(&frame).await?;
            sent += 1;
        }
        let text = sender.next_text().await?;
        if client::classify(common.proto, &text) == Frame::Ack {
            if !text.contains("\"ok\":true") {
                return Err(format!("a queued message was refused: {text}"));
            }
            if first_id.is_none() {
                first_id = ack_id(&text);
            }
            acked += 1;
        }
    }
    let _ = sender.ws.close(None).await;
    Ok(first_id.unwrap_or(1).saturating_sub(1))
}

/// The message id in an ack frame (`"id":N`).
fn ack_id(text: &str) -> Option<u64> {
    let start = text.find("\"id\":")? + "\"id\":".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_read_from_an_ack() {
        assert_eq!(
            ack_id(r#"{"event":"ack","data":{"ack":3,"ok":true,"id":42,"queued":true}}"#),
            Some(42)
        );
        assert_eq!(ack_id(r#"43[{"ok":false}]"#), None);
    }
}
