//! Commit-ordered message ids, for a cluster (`docs/protocol.md` section 13, `docs/architecture.md`
//! "Cluster mode"). Alone, a node hands out an id when it routes a message and commits later
//! (`ids.rs`): with one writer, ids commit in order. Nodes sharing PostgreSQL would commit
//! their ids out of order, and a client whose cursor is the highest id it saw could miss a
//! lower id committed after it. So, once [`ClusterStore::sequence_at_commit`](super::ClusterStore) is
//! called, a message gets its id **inside the transaction that stores it**, from the shared
//! counter whose row lock serializes those transactions: ids are then in commit order and
//! without holes (a rolled-back transaction gives its ids back), and every node can deliver
//! them in order, knowing that an id it has not seen below one it has is a message still on
//! its way, or one to read from the database.
//!
//! Until its id is known, a message's payload carries [`ID_PLACEHOLDER`] in its `id` field;
//! [`splice_id`] writes the real one in, once, in the committing transaction.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::model::Target;

/// The id a payload is serialized with until its commit assigns the real one. No real id is
/// ever this large, and the text `"id":18446744073709551615` cannot occur inside a JSON
/// string (its quotes would be escaped), so the splice finds only the field.
pub const ID_PLACEHOLDER: u64 = u64::MAX;

const PLACEHOLDER_FIELD: &str = "\"id\":18446744073709551615";

/// `payload` with its placeholder id replaced by `id` (unchanged when it has none: an
/// embedding application's payload with an `id` of its own keeps it).
pub fn splice_id(payload: &str, id: u64) -> String {
    payload.replacen(PLACEHOLDER_FIELD, &format!("\"id\":{id}"), 1)
}

/// A message as committed, for delivery: what every node needs to route it to its own
/// connections.
#[derive(Debug, Clone)]
pub struct CommittedMessage {
    /// Its id, in commit order.
    pub id: u64,
    pub event: String,
    /// Where it goes.
    pub target: Target,
    /// The payload as stored (its id spliced in).
    pub payload: String,
    /// The sending connection, left out of delivery (session ids are unique across the
    /// nodes, so every node may leave it out); `None` for the REST and embedded APIs.
    pub sender_session: Option<u64>,
}

/// The store's side of sequencing: where committed messages go, and how far delivery has
/// got (the read horizon).
#[derive(Debug, Default)]
pub(super) struct Sequence {
    /// Set once: every committed batch of messages, in commit order.
    sink: OnceLock<mpsc::UnboundedSender<Vec<CommittedMessage>>>,
    /// Every id up to this one is committed and delivered to this node's connections.
    horizon: AtomicU64,
}

impl Sequence {
    /// Whether ids are assigned at commit.
    pub(super) fn is_on(&self) -> bool {
        self.sink.get().is_some()
    }

    /// Turns sequencing on; `None` if it already was.
    pub(super) fn start(
        &self,
        from: u64,
    ) -> Option<mpsc::UnboundedReceiver<Vec<CommittedMessage>>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sink.set(tx).ok()?;
        self.horizon.store(from, Ordering::Release);
        Some(rx)
    }

    /// Hands a committed batch to the sequencer.
    pub(super) fn committed(&self, batch: Vec<CommittedMessage>) {
        if let Some(sink) = self.sink.get()
            && !batch.is_empty()
            && sink.send(batch).is_err()
        {
            tracing::warn!("the sequencer is gone; committed messages are not delivered live");
        }
    }

    pub(super) fn horizon(&self) -> u64 {
        self.horizon.load(Ordering::Acquire)
    }

    pub(super) fn advance(&self, id: u64) {
        self.horizon.fetch_max(id, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_is_replaced_once_and_only_in_the_id_field() {
        let payload = serde_json::json!({
            "id": ID_PLACEHOLDER,
            "message": "\"id\":18446744073709551615",
        })
        .to_string();
        let spliced = splice_id(&payload, 42);
        let value: serde_json::Value = serde_json::from_str(&spliced).expect("still JSON");
        assert_eq!(value["id"], 42);
        assert_eq!(value["message"], "\"id\":18446744073709551615");
    }

    #[test]
    fn a_payload_without_the_placeholder_is_unchanged() {
        assert_eq!(splice_id(r#"{"id":"app-7"}"#, 42), r#"{"id":"app-7"}"#);
    }
}
