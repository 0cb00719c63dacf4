//! The `catchup` scenario: a client that missed a lot catching up against a large stored
//! history. The history is not made here: `bench/run.py` writes it into the server's SQLite
//! file before the server starts (sending a million messages through the server would take
//! longer than the measurement and measure something else). This side measures two things:
//! - the replay on connect: one client connects with `lastMessageId` and reads until
//!   `sync-complete` (calling `sync` again while it says `more`): replayed messages per
//!   second and server CPU per replayed message;
//! - `sync` pages: `sync { since }` at cursors spread over the whole history, each timed from
//!   the request to its `sync-complete` (the query, and writing the page to the socket).

use std::time::Instant;

use serde_json::{Value, json};

use crate::client::{self, Conn, Frame, Proto};
use crate::measure::{CpuWindow, percentiles, round};
use crate::{CatchupArgs, Common};

/// What one `sync-complete` said, and how many replayed frames came before it.
struct Done {
    replayed: u64,
    last_message_id: u64,
    more: bool,
}

/// Reads replayed frames until `sync-complete`.
async fn until_complete(conn: &mut Conn) -> Result<Done, String> {
    let mut replayed = 0;
    loop {
        let text = conn.next_text().await?;
        match client::classify(conn.proto, &text) {
            Frame::Event("sync-complete") => {
                let done = complete_data(conn.proto, &text)?;
                return Ok(Done {
                    replayed,
                    last_message_id: done["lastMessageId"].as_u64().unwrap_or(0),
                    more: done["more"].as_bool().unwrap_or(false),
                });
            }
            Frame::Event("error") => return Err(format!("the server refused: {text}")),
            Frame::Event(_) => replayed += 1,
            Frame::Ack | Frame::Ping | Frame::Other => {}
        }
    }
}

/// The data of a `sync-complete` frame.
fn complete_data(proto: Proto, text: &str) -> Result<Value, String> {
    let json = match proto {
        Proto::Ws => text,
        Proto::Sio => text.strip_prefix("42").unwrap_or(text),
    };
    let frame: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {text}"))?;
    Ok(match proto {
        Proto::Ws => frame["data"].clone(),
        Proto::Sio => frame[1].clone(),
    })
}

/// Asks for one `sync` page from `since`.
async fn sync(conn: &mut Conn, since: u64) -> Result<(), String> {
    let data = json!({ "since": since }).to_string();
    conn.send(&client::encode(conn.proto, "sync", &data, None))
        .await
}

pub async fn catchup(common: &Common, args: &CatchupArgs) -> Result<Value, String> {
    let pid = common.server_pid.as_deref();
    let token = common.token(&args.user, &args.role);
    let resume = format!("&lastMessageId={}", args.last_message_id);

    // The replay on connect, then `sync` while the server says there is more.
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let (mut conn, _) =
        client::connect(common.proto, common.server(), None, &token, &resume).await?;
    let mut done = until_complete(&mut conn).await?;
    let mut replayed = done.replayed;
    while done.more {
        sync(&mut conn, done.last_message_id).await?;
        done = until_complete(&mut conn).await?;
        replayed += done.replayed;
    }
    let replay_secs = started.elapsed().as_secs_f64();
    let (replay_cpu, _) = cpu.stop();

    // `sync` pages at cursors spread over the whole history, each cursor once per round.
    let cpu = CpuWindow::start(pid);
    let cursors: Vec<u64> = (0..args.cursors)
        .map(|i| args.stored * i as u64 / args.cursors.max(1) as u64)
        .collect();
    let mut latencies = Vec::with_capacity(cursors.len() * args.rounds);
    let mut page_sizes = Vec::with_capacity(cursors.len() * args.rounds);
    for _ in 0..args.rounds {
        for &since in &cursors {
            let sent = Instant::now();
            sync(&mut conn, since).await?;
            let page = until_complete(&mut conn).await?;
            latencies.push(sent.elapsed().as_micros() as u64);
            page_sizes.push(page.replayed);
        }
    }
    let (pages_cpu, own_cpu) = cpu.stop();
    let _ = conn.ws.close(None).await;

    let pages = latencies.len();
    let page = percentiles(&mut latencies);
    let mut m = common.line("catchup");
    m.insert("stored_messages".into(), args.stored.into());
    m.insert("missed".into(), args.missed.into());
    m.insert("replayed".into(), replayed.into());
    m.insert("replay_seconds".into(), round(replay_secs, 3).into());
    m.insert(
        "replayed_per_sec".into(),
        round(replayed as f64 / replay_secs.max(1e-9), 0).into(),
    );
    m.insert(
        "replay_server_cpu_s".into(),
        json!(replay_cpu.map(|v| round(v, 3))),
    );
    if let Some(cpu) = replay_cpu {
        m.insert(
            "server_cpu_us_per_replayed".into(),
            round(cpu * 1e6 / replayed.max(1) as f64, 2).into(),
        );
    }
    m.insert("pages".into(), pages.into());
    m.insert(
        "full_pages".into(),
        page_sizes.iter().filter(|&&n| n == 1000).count().into(),
    );
    m.insert("page_p50_us".into(), page.p50_us.into());
    m.insert("page_p99_us".into(), page.p99_us.into());
    m.insert("page_max_us".into(), page.max_us.into());
    m.insert(
        "pages_server_cpu_s".into(),
        json!(pages_cpu.map(|v| round(v, 3))),
    );
    if let Some(cpu) = pages_cpu {
        m.insert(
            "server_cpu_us_per_page".into(),
            round(cpu * 1e6 / pages.max(1) as f64, 0).into(),
        );
    }
    m.insert("loadgen_cpu_s".into(), json!(own_cpu.map(|v| round(v, 3))));
    if replayed < args.missed {
        return Err(format!(
            "replayed {replayed} of the {} missed messages: {}",
            args.missed,
            Value::Object(m)
        ));
    }
    Ok(Value::Object(m))
}
