//! A minimal Socket.IO client over a WebSocket, for Rust tests (the Node suite uses the
//! official client).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;

/// What the server sent a [`SioClient`]: an event or an ack.
#[derive(Debug)]
pub enum SioIncoming {
    /// `(name, data)`.
    Event(String, Value),
    /// `(id, first argument)`.
    Ack(u64, Value),
}

/// A Socket.IO client over a WebSocket (Engine.IO 4, Socket.IO 5, default namespace), enough
/// to exchange events and acks with the gateway from Rust tests (the Node suite uses the
/// official client).
pub struct SioClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl SioClient {
    /// Connects to the gateway at `addr` with `token` in the CONNECT packet's `auth`.
    pub async fn connect(addr: SocketAddr, token: &str) -> Self {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (stream, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake in time")
            .expect("connects");
        let mut client = Self { stream };
        let open = client.packet().await;
        assert!(open.starts_with('0'), "Engine.IO open first: {open}");
        client
            .send(format!("40{}", json!({ "token": token })))
            .await;
        let connect = client.packet().await;
        assert!(connect.starts_with("40"), "namespace joined: {connect}");
        client
    }

    async fn send(&mut self, text: String) {
        tokio::time::timeout(WAIT, self.stream.send(Message::text(text)))
            .await
            .expect("sent in time")
            .expect("sent");
    }

    /// The next Engine.IO packet but pings (answered).
    async fn packet(&mut self) -> String {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a packet within the timeout");
            match next {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    self.send("3".into()).await;
                }
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("the Socket.IO connection ended: {other:?}"),
            }
        }
    }

    /// Emits `event` with `data`, asking for ack `id`.
    pub async fn emit_ack(&mut self, event: &str, data: Value, id: u64) {
        self.send(format!("42{id}{}", json!([event, data]))).await;
    }

    /// The next event `(name, data)`, acks skipped.
    pub async fn next_event(&mut self) -> (String, Value) {
        loop {
            let packet = self.packet().await;
            if let Some(body) = packet.strip_prefix("42") {
                let v: Value = serde_json::from_str(body).expect("an event array");
                return (v[0].as_str().expect("a name").to_owned(), v[1].clone());
            }
        }
    }

    /// Reads until event `name`; its data.
    pub async fn wait_for(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.next_event().await;
            if event == name {
                return data;
            }
        }
    }

    /// Reads until the ack `id` (events before it skipped); its first argument.
    pub async fn wait_for_ack(&mut self, id: u64) -> Value {
        let prefix = format!("43{id}");
        loop {
            let packet = self.packet().await;
            if let Some(body) = packet.strip_prefix(&prefix)
                && body.starts_with('[')
            {
                let v: Value = serde_json::from_str(body).expect("an ack array");
                return v[0].clone();
            }
        }
    }

    /// The next event or ack, in the order they arrived (for a test that must see whether a
    /// refusal's `error` came before its ack).
    pub async fn next_incoming(&mut self) -> SioIncoming {
        loop {
            let packet = self.packet().await;
            if let Some(body) = packet.strip_prefix("42") {
                let v: Value = serde_json::from_str(body).expect("an event array");
                let name = v[0].as_str().expect("a name").to_owned();
                return SioIncoming::Event(name, v[1].clone());
            }
            if let Some(body) = packet.strip_prefix("43")
                && let Some((id, args)) = body.split_at_checked(body.find('[').unwrap_or(0))
                && let Ok(id) = id.parse()
            {
                let v: Value = serde_json::from_str(args).expect("an ack array");
                return SioIncoming::Ack(id, v[0].clone());
            }
        }
    }
}
