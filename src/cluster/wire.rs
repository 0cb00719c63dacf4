//! What the nodes say to each other on the bus: one JSON envelope per NATS message, on one
//! subject per cluster (`<NATS_SUBJECT_PREFIX>.bus`), so that NATS keeps each node's messages
//! in the order it sent them. Every envelope names its sender (`node`, and `run`, which
//! changes when the node restarts) and numbers it (`seq`), so a receiver can tell a node it
//! has not heard of, a restart, and a message it missed.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::hub::{ClusterEvent, NodeUser};
use crate::store::{CommittedMessage, Target};

/// One bus message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The cluster's identity (`ClusterStore::cluster_identity`): envelopes of another cluster that
    /// shares the subject by mistake are dropped.
    pub cluster: i64,
    /// The sender's `NODE_ID`.
    pub node: String,
    /// The sender's process run (a restart gets a new one).
    pub run: u64,
    /// 1, 2, 3, ... per run.
    pub seq: u64,
    /// What it says.
    pub body: Body,
}

/// What a bus message says. Externally tagged (`{"messages": {...}}`): serde buffers an
/// internally tagged or flattened enum, and a buffered payload cannot stay raw JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Messages this node committed, in id order.
    Messages {
        /// The messages.
        messages: Vec<WireMessage>,
    },
    /// A change the other nodes must apply (a user's connections, a room, a kick, a
    /// revocation), as the sender's hub announced it.
    Event(ClusterEvent),
    /// Part of the sender's full list of online users; the list is complete at `last`.
    Users {
        /// Users in this part.
        users: Vec<NodeUser>,
        /// Whether this is the final part.
        last: bool,
    },
    /// The sender wants everyone's full list of users (it started, or missed something).
    Hello,
    /// The sender is alive.
    Heartbeat,
    /// The sender is stopping: its users are gone now, not at the timeout.
    Bye,
    /// The sender declared `node`'s run `run` lost (silent past `NODE_TIMEOUT_SECS`) and
    /// closed its sessions: that node, should it still be serving (a long pause), must cut
    /// itself off and come back as a new run. Said again whenever that run is heard.
    Lost {
        /// The node declared lost.
        node: String,
        /// Its run.
        run: u64,
    },
}

/// A committed message on the bus.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireMessage {
    /// Its id.
    pub id: u64,
    /// Event name.
    pub event: String,
    /// `all`, `user`, `room` or `role`.
    pub target_kind: String,
    /// User id, room or role.
    pub target: Option<String>,
    /// The payload as stored, embedded as JSON.
    pub payload: Box<RawValue>,
    /// The sending connection (session ids are unique across the cluster: no other node has
    /// it, so leaving it out anywhere is right).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_session: Option<u64>,
}

impl WireMessage {
    /// A committed message as sent (its payload is JSON: it was serialized by the hub).
    pub fn from_committed(message: &CommittedMessage) -> Option<Self> {
        Some(Self {
            id: message.id,
            event: message.event.clone(),
            target_kind: message.target.kind().to_owned(),
            target: message.target.key().map(String::from),
            payload: RawValue::from_string(message.payload.clone()).ok()?,
            sender_session: message.sender_session,
        })
    }

    /// The message for delivery on the receiving node; `None` (logged) when its target cannot
    /// be read, which only another version of the gateway could send.
    pub fn into_committed(self) -> Option<CommittedMessage> {
        let target = match Target::from_columns(&self.target_kind, self.target) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(id = self.id, error = %e, "a bus message with an unreadable target: not delivered");
                return None;
            }
        };
        Some(CommittedMessage {
            id: self.id,
            event: self.event,
            target,
            payload: String::from(Box::<str>::from(self.payload)),
            sender_session: self.sender_session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::RoomChange;
    use crate::protocol::wire::LeftReason;

    /// Proves a room change of a node that predates server membership still reads (as a
    /// user's own join), and that a removal carries its reason to the other nodes.
    #[test]
    fn a_room_change_reads_with_or_without_who_made_it_and_why() {
        let old = r#"{"event":{"room":{"room":"ops","user":{"userId":"a","username":"A",
            "role":"USER","connectedAt":"","sessions":1},"joined":false,"at":"t"}}}"#;
        let Body::Event(ClusterEvent::Room(change)) =
            serde_json::from_str(old).expect("an older node's room change reads")
        else {
            panic!("a room change");
        };
        assert_eq!((change.by_server, change.reason), (false, None));

        let removed = RoomChange {
            reason: Some(LeftReason::Removed),
            ..change
        };
        let text =
            serde_json::to_string(&Body::Event(ClusterEvent::Room(removed))).expect("serializes");
        assert!(text.contains(r#""reason":"removed""#), "{text}");
        let Body::Event(ClusterEvent::Room(read)) = serde_json::from_str(&text).expect("reads")
        else {
            panic!("a room change: {text}");
        };
        assert_eq!(read.reason, Some(LeftReason::Removed));
    }

    #[test]
    fn an_envelope_reads_back_as_it_was_written() {
        let message = CommittedMessage {
            id: 7,
            event: "room-message".into(),
            target: Target::Room(
                crate::protocol::payloads::RoomName::parse("lobby").expect("a room name"),
            ),
            payload: r#"{"id":7,"message":"hi"}"#.into(),
            sender_session: Some(3),
        };
        let sent = Envelope {
            cluster: 1,
            node: "a".into(),
            run: 1,
            seq: 2,
            body: Body::Messages {
                messages: vec![WireMessage::from_committed(&message).expect("JSON payload")],
            },
        };
        let text = serde_json::to_string(&sent).expect("serializes");
        let read: Envelope = serde_json::from_str(&text).expect("parses");
        let Body::Messages { messages } = read.body else {
            panic!("a messages body: {text}");
        };
        let got = messages
            .into_iter()
            .next()
            .and_then(WireMessage::into_committed)
            .expect("one message");
        assert_eq!(
            (
                got.id,
                &got.target,
                got.payload.as_str(),
                got.sender_session
            ),
            (7, &message.target, message.payload.as_str(), Some(3))
        );
    }
}
