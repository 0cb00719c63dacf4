//! The cost of one join under each room rule: `joins` opens C connections, one user each,
//! whose tokens suit the rule (`token`: a `rooms` claim of `--claim-patterns` patterns, the
//! one granting the room last, so the check walks them all; `roles`: a listed role), and
//! each times J `join-room` → `joined-room` round trips in a closed loop, leaving the room
//! after each (untimed) so that every join is a new membership (a store write, the room's
//! presence). `hook-server` is the application's join hook for it: an HTTP server on loopback
//! answering `{"allow": true}` at once, so what is measured is the gateway's side of the hook
//! (request, signature, the wait on loopback) and not an application's.
//!
//! `bench/joins.py` starts the hook, the gateway with a policy file naming each rule by room
//! prefix, and runs one `joins` per rule.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{Value, json};

use crate::client::{self, Frame};
use crate::measure::{CpuWindow, percentiles, round};
use crate::{Common, JoinsArgs, source_for};

/// Serves `{"allow": true}` to every POST until killed; prints its URL on stderr.
pub async fn hook_server(listen: SocketAddr) -> Result<Value, String> {
    let router = axum::Router::new().route(
        "/join",
        axum::routing::post(|| async { axum::Json(json!({"allow": true})) }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("hook listening on http://{addr}/join");
    axum::serve(listener, router)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Value::Null)
}

/// The claims a user of `rule` connects with: its role and, for `token`, the `rooms` claim.
fn claims(args: &JoinsArgs) -> (&'static str, Value) {
    match args.rule.as_str() {
        "token" => {
            let mut rooms: Vec<Value> = (1..args.claim_patterns)
                .map(|n| Value::String(format!("team-{n}:*")))
                .collect();
            rooms.push(Value::String(format!("{}-*", args.prefix())));
            ("USER", json!({ "rooms": rooms }))
        }
        "roles" => ("STAFF", json!({})),
        _ => ("USER", json!({})),
    }
}

pub async fn joins(common: &Common, args: &JoinsArgs) -> Result<Value, String> {
    let (role, extra) = claims(args);
    let server = common.server();
    let mut tasks = Vec::with_capacity(args.connections);
    let opened = std::sync::Arc::new(tokio::sync::Barrier::new(args.connections + 1));
    for i in 0..args.connections {
        let user = format!("{}-user-{i}", args.prefix());
        let token = common.token_with(&user, role, &extra);
        let room = format!("{}-c{i}", args.prefix());
        let (proto, count, opened) = (common.proto, args.joins, opened.clone());
        tasks.push(tokio::spawn(async move {
            let (mut conn, _) =
                client::connect(proto, server, Some(source_for(i)), &token, "").await?;
            opened.wait().await;
            let mut took = Vec::with_capacity(count);
            for k in 0..count as u64 {
                let data = json!({ "room": room }).to_string();
                let started = Instant::now();
                conn.send(&client::encode(proto, "join-room", &data, Some(2 * k + 1)))
                    .await?;
                let (mut joined, mut acked) = (false, false);
                while !(joined && acked) {
                    let text = conn.next_text().await?;
                    match client::classify(proto, &text) {
                        Frame::Event("joined-room") => {
                            joined = true;
                            took.push(started.elapsed().as_micros() as u64);
                        }
                        Frame::Event("error") => return Err(format!("join refused: {text}")),
                        Frame::Ack => acked = true,
                        _ => {}
                    }
                }
                conn.send(&client::encode(proto, "leave-room", &data, Some(2 * k + 2)))
                    .await?;
                loop {
                    let text = conn.next_text().await?;
                    if client::classify(proto, &text) == Frame::Ack {
                        break;
                    }
                }
            }
            let _ = conn.ws.close(None).await;
            Ok::<Vec<u64>, String>(took)
        }));
    }
    opened.wait().await;
    let cpu = CpuWindow::start(common.server_pid.as_deref());
    let started = Instant::now();
    let mut took = Vec::with_capacity(args.connections * args.joins);
    for task in tasks {
        took.extend(task.await.map_err(|e| e.to_string())??);
    }
    let secs = started.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = cpu.stop();
    let lat = percentiles(&mut took);
    let mut m = common.line("joins");
    m.insert("rule".into(), args.rule.clone().into());
    m.insert("connections".into(), args.connections.into());
    m.insert("joins".into(), took.len().into());
    m.insert("join_p50_us".into(), lat.p50_us.into());
    m.insert("join_p99_us".into(), lat.p99_us.into());
    m.insert("join_max_us".into(), lat.max_us.into());
    // Each timed join is followed by an untimed leave: the rate is of both.
    m.insert(
        "joins_per_sec".into(),
        round(took.len() as f64 / secs, 0).into(),
    );
    if let Some(cpu) = server_cpu {
        m.insert(
            "server_cpu_us_per_join_and_leave".into(),
            round(cpu * 1e6 / took.len().max(1) as f64, 1).into(),
        );
    }
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 3))));
    Ok(Value::Object(m))
}
