//! Raw HTTP and Engine.IO long-polling, byte for byte, for what a client library would hide.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// Reads until the server closes the socket (a reset counts as closed); fails after `WAIT`.
pub async fn read_until_closed(stream: &mut TcpStream) -> String {
    read_until_closed_within(stream, WAIT).await
}

/// A long-poll GET may rightly wait until Engine.IO's ping (25 s) when nothing is queued yet,
/// and a loaded machine (a server logging at TRACE among a parallel suite) can take seconds to
/// queue the answer: a poll is bounded by this, not by `WAIT`.
const POLL_WAIT: Duration = Duration::from_secs(30);

/// [`read_until_closed`] with its own bound.
pub async fn read_until_closed_within(stream: &mut TcpStream, bound: Duration) -> String {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the socket within the timeout");
    String::from_utf8_lossy(&received).into_owned()
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// One polling request with `Connection: close` to the server at `addr`; returns the body.
pub async fn poll_at(addr: std::net::SocketAddr, method: &str, query: &str, body: &str) -> String {
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect within the timeout")
        .expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    let response = read_until_closed_within(&mut stream, POLL_WAIT).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    body.to_string()
}

/// A raw Engine.IO polling client's start: the handshake, then the Socket.IO connect with
/// `token` (accepted as posted). Returns the Engine.IO session id and its `&sid=` query.
pub async fn polling_connect(addr: std::net::SocketAddr, token: &str) -> (String, String) {
    let open = poll_at(addr, "GET", "", "").await;
    let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).expect("open");
    let sid = handshake["sid"].as_str().expect("a sid").to_string();
    let with_sid = format!("&sid={sid}");
    let connect = format!("40{{\"token\":\"{token}\"}}");
    assert_eq!(poll_at(addr, "POST", &with_sid, &connect).await, "ok");
    (sid, with_sid)
}

/// Long-polls until a payload containing `needle` arrives (a poll may return other packets
/// first, e.g. `connected` before the answer); bounded.
pub async fn poll_until(addr: std::net::SocketAddr, with_sid: &str, needle: &str) -> String {
    for _ in 0..10 {
        let payload = poll_at(addr, "GET", with_sid, "").await;
        if payload.contains(needle) {
            return payload;
        }
    }
    panic!("no {needle:?} within 10 polls");
}
