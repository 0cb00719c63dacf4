//! A minimal, cheap client for both wire protocols: plain `/ws` JSON frames and Socket.IO
//! over websocket with Engine.IO 4 framing done by hand (`0` open, `40` connect with the auth
//! object, `42[...]` events, `42<id>[...]` emits with ack, `43<id>[...]` acks, `2`/`3`
//! ping/pong). Incoming frames are classified by prefix, never fully parsed, so the load
//! generator spends as little CPU per frame as possible.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Which wire protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// Plain WebSocket at `/ws`.
    Ws,
    /// Socket.IO (Engine.IO 4, websocket transport) at `/socket.io/`.
    Sio,
}

/// An open, authenticated connection.
pub struct Conn {
    pub ws: WebSocketStream<TcpStream>,
    pub proto: Proto,
}

/// What an incoming frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A server event: name, and the frame text (payload search happens on the whole text).
    Event(&'a str),
    /// An ack reply.
    Ack,
    /// Engine.IO ping (answer with pong).
    Ping,
    /// Anything else.
    Other,
}

/// Classifies a text frame by its prefix.
pub fn classify(proto: Proto, text: &str) -> Frame<'_> {
    match proto {
        Proto::Ws => {
            let Some(rest) = text.strip_prefix("{\"event\":\"") else {
                return Frame::Other;
            };
            let name = rest.split('"').next().unwrap_or("");
            if name == "ack" {
                Frame::Ack
            } else {
                Frame::Event(name)
            }
        }
        Proto::Sio => {
            if text == "2" {
                return Frame::Ping;
            }
            if let Some(rest) = text.strip_prefix("42[\"") {
                return Frame::Event(rest.split('"').next().unwrap_or(""));
            }
            if text.starts_with("43") {
                return Frame::Ack;
            }
            Frame::Other
        }
    }
}

/// The `/ws` or Socket.IO text frame for a client event, with an ack id when given.
pub fn encode(proto: Proto, event: &str, data_json: &str, ack: Option<u64>) -> String {
    match (proto, ack) {
        (Proto::Ws, Some(id)) => {
            format!("{{\"event\":\"{event}\",\"data\":{data_json},\"ack\":{id}}}")
        }
        (Proto::Ws, None) => format!("{{\"event\":\"{event}\",\"data\":{data_json}}}"),
        (Proto::Sio, Some(id)) => format!("42{id}[\"{event}\",{data_json}]"),
        (Proto::Sio, None) => format!("42[\"{event}\",{data_json}]"),
    }
}

/// Finds `"message":"b<sender>:<seq>:<sent_nanos>"` in a frame.
pub fn probe(text: &str) -> Option<(usize, u64, u128)> {
    let start = text.find("\"message\":\"b")? + "\"message\":\"b".len();
    let rest = &text[start..];
    let end = rest.find('"')?;
    let mut parts = rest[..end].split(':');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nanos = parts.next()?.parse().ok()?;
    Some((sender, seq, nanos))
}

/// Small buffers: the load generator holds thousands of connections.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * 1024 * 1024)
}

/// Opens a connection from `source` (spreading source addresses avoids running out of
/// ephemeral ports), authenticates, and waits for `connected`. Returns it and the time taken.
/// `extra_query` (`&name=value...`) is appended to the URL on both protocols.
pub async fn connect(
    proto: Proto,
    server: SocketAddr,
    source: Option<IpAddr>,
    token: &str,
    extra_query: &str,
) -> Result<(Conn, Duration), String> {
    open(proto, server, source, token, extra_query, None).await
}

/// Like [`connect`], asking for everything after `last_message_id` (the query on `/ws`, the
/// auth object on Socket.IO).
/// The admission's "come back later" hint in a refusal (`retry after N ms`), if it is one.
pub fn retry_hint(refusal: &str) -> Option<Duration> {
    let at = refusal.find("retry after ")? + "retry after ".len();
    let digits: String = refusal[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().map(Duration::from_millis)
}

pub async fn connect_resuming(
    proto: Proto,
    server: SocketAddr,
    source: Option<IpAddr>,
    token: &str,
    last_message_id: u64,
) -> Result<(Conn, Duration), String> {
    let query = format!("&lastMessageId={last_message_id}");
    open(proto, server, source, token, &query, Some(last_message_id)).await
}

async fn open(
    proto: Proto,
    server: SocketAddr,
    source: Option<IpAddr>,
    token: &str,
    extra_query: &str,
    resume: Option<u64>,
) -> Result<(Conn, Duration), String> {
    let started = Instant::now();
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = match proto {
        Proto::Ws => format!("ws://{server}/ws?token={token}{extra_query}"),
        Proto::Sio => format!("ws://{server}/socket.io/?EIO=4&transport=websocket{extra_query}"),
    };
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config()))
        .await
        .map_err(|e| match e {
            // A refusal before the upgrade: its body says why (and, when busy, when to retry).
            tokio_tungstenite::tungstenite::Error::Http(response) => format!(
                "refused: {} {}",
                response.status(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
            ),
            e => format!("handshake: {e}"),
        })?;
    if proto == Proto::Sio {
        expect_prefix(&mut ws, "0").await?;
        let resume = resume
            .map(|id| format!(",\"lastMessageId\":{id}"))
            .unwrap_or_default();
        ws.send(Message::text(format!(
            "40{{\"token\":\"{token}\"{resume}}}"
        )))
        .await
        .map_err(|e| format!("send connect: {e}"))?;
        let reply = expect_prefix(&mut ws, "4").await?;
        if !reply.starts_with("40") {
            return Err(format!("refused: {reply}"));
        }
    }
    let mut conn = Conn { ws, proto };
    loop {
        let text = conn.next_text().await?;
        if classify(proto, &text) == Frame::Event("connected") {
            break;
        }
    }
    Ok((conn, started.elapsed()))
}

/// The next frame starting with `prefix`, answering Engine.IO pings meanwhile.
async fn expect_prefix(
    ws: &mut WebSocketStream<TcpStream>,
    prefix: &str,
) -> Result<String, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                ws.send(Message::text("3"))
                    .await
                    .map_err(|e| format!("pong: {e}"))?;
            }
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with(prefix) => return Ok(t.to_string()),
            other => {
                return Err(format!(
                    "expected a frame starting with {prefix:?}, got {other:?}"
                ));
            }
        }
    }
}

impl Conn {
    /// The next text frame (answering Engine.IO pings on the way).
    pub async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if self.proto == Proto::Sio && t.as_str() == "2" {
                        self.send("3").await?;
                        continue;
                    }
                    return Ok(t.to_string());
                }
                Ok(Some(Ok(Message::Close(f)))) => return Err(format!("closed: {f:?}")),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(format!("read: {e}")),
                Ok(None) => return Err("closed".into()),
                Err(_) => return Err("timed out waiting for a frame".into()),
            }
        }
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) -> Result<(), String> {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_refusal_says_when_to_retry() {
        let refusal = r#"refused: 503 Service Unavailable {"error":"server busy; retry after 1834 ms","code":"busy","retryAfterMs":1834}"#;
        assert_eq!(retry_hint(refusal), Some(Duration::from_millis(1834)));
        assert_eq!(
            retry_hint("refused: 401 Unauthorized {\"error\":\"invalid token\"}"),
            None
        );
    }

    #[test]
    fn frames_are_classified_by_prefix() {
        assert_eq!(
            classify(Proto::Ws, r#"{"event":"room-message","data":{}}"#),
            Frame::Event("room-message")
        );
        assert_eq!(
            classify(Proto::Ws, r#"{"event":"ack","data":{}}"#),
            Frame::Ack
        );
        assert_eq!(
            classify(Proto::Sio, r#"42["room-message",{}]"#),
            Frame::Event("room-message")
        );
        assert_eq!(classify(Proto::Sio, r#"437[{"ok":true}]"#), Frame::Ack);
        assert_eq!(classify(Proto::Sio, "2"), Frame::Ping);
    }

    #[test]
    fn the_probe_finds_sender_sequence_and_send_time() {
        let frame = r#"{"event":"room-message","data":{"id":4,"message":"b3:17:1795676462345000000","room":"r"}}"#;
        assert_eq!(probe(frame), Some((3, 17, 1_795_676_462_345_000_000)));
    }
}
