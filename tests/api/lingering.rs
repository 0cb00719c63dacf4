//! Lingering close: when the server hangs up first (a flood, a frame over the cap, a REST
//! body over its limit) while the client is still sending, the client reads what the server
//! wrote last (the `error`, the close frame, the 413) and then a clean end of stream, never a
//! reset. These tests use raw TCP so that a FIN (`read` returns 0) and a reset
//! (`ECONNRESET`) can be told apart: each client writes everything first, then reads.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A raw `/ws` connection, upgraded by hand.
async fn raw_ws(app: &TestApp, token: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(app.addr).await.expect("connects");
    let request = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, tcp.read_exact(&mut byte))
            .await
            .expect("handshake in time")
            .expect("handshake readable");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// A masked client frame header (FIN set) for `len` payload bytes, mask key zero.
fn frame_header(opcode: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A masked text frame (with a zero mask the payload goes as is).
fn text_frame(text: &str) -> Vec<u8> {
    let mut out = frame_header(0x1, text.len());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Writes everything, ignoring a failure (the server may have hung up: that is the point).
async fn write_all_then_stop(tcp: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(WAIT, tcp.write_all(bytes)).await;
}

/// How the stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// `read` returned 0: the server's FIN.
    Clean,
    /// A reset or another error.
    Error(std::io::ErrorKind),
}

/// Reads until the stream ends; returns what was read and how it ended.
async fn read_to_end(tcp: &mut TcpStream) -> (Vec<u8>, End) {
    let mut all = Vec::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("the server ends the stream in time");
        match read {
            Ok(0) => return (all, End::Clean),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => return (all, End::Error(e.kind())),
        }
    }
}

/// A server frame: opcode and payload.
type Frame = (u8, Vec<u8>);

/// Splits unmasked server frames; a truncated last frame is dropped.
fn server_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, start) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => {
                let mut n = [0_u8; 8];
                n.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if bytes.len() < start + len {
            break;
        }
        frames.push((opcode, bytes[start..start + len].to_vec()));
        bytes = &bytes[start + len..];
    }
    frames
}

/// The events among the frames, as `(name, data)`.
fn events(frames: &[Frame]) -> Vec<(String, Value)> {
    frames
        .iter()
        .filter(|(op, _)| *op == 0x1)
        .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
        .map(|v| {
            (
                v["event"].as_str().unwrap_or_default().to_owned(),
                v["data"].clone(),
            )
        })
        .collect()
}

/// The close frame's code and reason.
fn close_of(frames: &[Frame]) -> Option<(u16, String)> {
    let (_, payload) = frames.iter().find(|(op, _)| *op == 0x8)?;
    let code = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()))
}

#[tokio::test]
async fn a_flooder_reads_the_rate_limit_error_and_the_1008_close_then_a_clean_end() {
    let app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 1;
        s.limits.rate_limit_burst = 3;
        s.limits.rate_limit_max_strikes = 20;
    })
    .await;
    let mut tcp = raw_ws(&app, &app.token("flooder", "USER")).await;

    // Far more events than the limit lets through, all written before reading anything.
    let event = text_frame(r#"{"event":"get-active-users"}"#);
    let flood: Vec<u8> = std::iter::repeat_n(event, 5000).flatten().collect();
    write_all_then_stop(&mut tcp, &flood).await;
    let (bytes, end) = read_to_end(&mut tcp).await;

    let frames = server_frames(&bytes);
    let errors: Vec<_> = events(&frames)
        .into_iter()
        .filter(|(name, _)| name == "error")
        .collect();
    assert!(!errors.is_empty(), "no error before the close");
    assert_eq!(errors[0].1["code"], "rate_limited", "{:?}", errors[0]);
    assert!(
        errors[0].1["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit")),
        "{:?}",
        errors[0]
    );
    let (code, reason) = close_of(&frames).expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(end, End::Clean);
}

#[tokio::test]
async fn a_frame_over_the_cap_gets_1009_and_a_clean_end_while_the_client_keeps_sending() {
    let app = spawn_app_with(|s| s.limits.max_frame_bytes = 1024).await;
    let mut tcp = raw_ws(&app, &app.token("big", "USER")).await;

    // One frame of 300 KB against a 1 KiB cap: the server stops at the header.
    let len = 300 * 1024;
    let mut frame = frame_header(0x1, len);
    frame.resize(frame.len() + len, b'x');
    write_all_then_stop(&mut tcp, &frame).await;
    let (bytes, end) = read_to_end(&mut tcp).await;

    let frames = server_frames(&bytes);
    assert_eq!(events(&frames)[0].0, "connected");
    let (code, reason) = close_of(&frames).expect("a close frame");
    assert_eq!(code, 1009);
    assert!(reason.contains("too large"), "{reason}");
    assert_eq!(end, End::Clean);
}

#[tokio::test]
async fn a_rest_body_over_the_limit_gets_413_while_the_client_keeps_sending() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 1024).await;
    let mut tcp = TcpStream::connect(app.addr).await.expect("connects");
    let body = json!({"userId": "u", "message": "m".repeat(300 * 1024)}).to_string();
    let request = format!(
        "POST /websocket/send-notification HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        app.addr,
        app.token("root", "ADMIN"),
        body.len()
    );
    write_all_then_stop(&mut tcp, request.as_bytes()).await;
    let (bytes, end) = read_to_end(&mut tcp).await;

    let response = String::from_utf8_lossy(&bytes);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("MAX_BODY_BYTES") || response.contains("too large"),
        "{response}"
    );
    assert_eq!(end, End::Clean);
}

#[tokio::test]
async fn a_client_past_the_linger_budget_is_cut_off_in_bounded_time() {
    let app = spawn_app_with(|s| s.limits.max_frame_bytes = 1024).await;
    let mut tcp = raw_ws(&app, &app.token("hose", "USER")).await;
    let mut frame = frame_header(0x1, 64 * 1024 * 1024);
    frame.resize(frame.len() + 4096, b'x');
    tcp.write_all(&frame).await.expect("the header goes out");

    // Keep sending without end: the server drains for a bounded time and size, then closes.
    let started = tokio::time::Instant::now();
    let chunk = vec![b'x'; 64 * 1024];
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if tcp.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "still accepting bytes after 10 s");
    assert!(started.elapsed() < Duration::from_secs(10));
}
