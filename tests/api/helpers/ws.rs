//! A real `/ws` client (tokio-tungstenite) whose every wait has a bound.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{QUIET, WAIT};

/// A real WebSocket client with timeouts on every wait.
pub struct WsClient {
    pub(super) stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Sends `{"event", "data"}`.
    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send_json(json!({"event": event, "data": data})).await;
    }

    /// Sends `{"event", "data", "ack"}`.
    pub async fn emit_ack(&mut self, event: &str, data: Value, ack: u64) {
        self.send_json(json!({"event": event, "data": data, "ack": ack}))
            .await;
    }

    /// Sends `send-message` (with ack) and returns the ack once it arrives, skipping other
    /// events on the way.
    pub async fn say(&mut self, data: Value, ack: u64) -> Value {
        self.emit_ack("send-message", data, ack).await;
        self.wait_for_ack(ack).await
    }

    /// Skips events until the ack for `id` arrives.
    pub async fn wait_for_ack(&mut self, id: u64) -> Value {
        loop {
            let data = self.wait_for("ack").await;
            if data["ack"] == id {
                return data;
            }
        }
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// Sends any frame.
    pub async fn send(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.stream.send(message))
            .await
            .expect("send within the timeout")
            .expect("send succeeds");
    }

    /// The next server event `(name, data)`, skipping pings.
    pub async fn next_event(&mut self) -> (String, Value) {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("an event within the timeout")
                .expect("stream open")
                .expect("frame readable");
            match message {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text).expect("server sends JSON");
                    let name = v["event"].as_str().expect("event name").to_string();
                    return (name, v["data"].clone());
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next event, which must be `name`; returns its data.
    pub async fn expect(&mut self, name: &str) -> Value {
        let (event, data) = self.next_event().await;
        assert_eq!(event, name, "expected {name}, got {event} {data}");
        data
    }

    /// Skips events until `name` arrives; returns its data.
    pub async fn wait_for(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.next_event().await;
            if event == name {
                return data;
            }
        }
    }

    /// The ack for `id`, which must be the next event.
    pub async fn expect_ack(&mut self, id: u64) -> Value {
        let data = self.expect("ack").await;
        assert_eq!(data["ack"], id, "ack id: {data}");
        data
    }

    /// Asserts that no event arrives for a short while.
    pub async fn expect_silence(&mut self) {
        match tokio::time::timeout(QUIET, self.next_event_or_close()).await {
            Err(_) => {}
            Ok(got) => panic!("expected silence, got {got:?}"),
        }
    }

    async fn next_event_or_close(&mut self) -> Option<Message> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                _ => return None,
            }
        }
    }

    /// Reads until the server closes; returns its close frame. Events before it are skipped.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("close within the timeout");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Closes from the client side and waits for the server's answer.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

impl WsClient {
    /// The next server event `(name, data)` within `bound`, pings skipped: `Ok(None)` when
    /// nothing came in time, `Err` saying how when the connection ended (a close frame, a
    /// reset, the end of the stream). For waits longer than [`WAIT`] and for connections that
    /// may rightly die (their server killed).
    pub async fn next_event_within(
        &mut self,
        bound: Duration,
    ) -> Result<Option<(String, Value)>, String> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
                return Ok(None);
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("server sends JSON");
                    let name = v["event"].as_str().expect("event name").to_string();
                    return Ok(Some((name, v["data"].clone())));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(other)) => panic!("expected an event, got {other:?}"),
                Some(Err(e)) => return Err(format!("failed: {e}")),
                None => return Err("ended".to_owned()),
            }
        }
    }

    /// Reads until the server closes, for at most `bound` (skipping events); its close frame.
    pub async fn close_frame_within(&mut self, bound: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no close within {bound:?}"));
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Like [`WsClient::emit_ack`], but says whether the frame went out instead of failing
    /// the test: for a client whose server may be killed under it.
    pub async fn try_emit_ack(&mut self, event: &str, data: Value, ack: u64) -> bool {
        let frame = json!({"event": event, "data": data, "ack": ack}).to_string();
        matches!(
            tokio::time::timeout(WAIT, self.stream.send(Message::text(frame))).await,
            Ok(Ok(()))
        )
    }
}
