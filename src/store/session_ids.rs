//! Session ids. On SQLite one process owns the file: ids continue in memory after the highest
//! stored one. On PostgreSQL several nodes may share the database, so ids come from the
//! `session_ids` sequence in blocks of [`SESSION_ID_BLOCK`] (one `nextval` per block, taken
//! when the node's block runs out): nodes never hand out the same id, and most connections
//! cost no round trip. A block a node did not use up when it stopped is a gap, never reused.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ids per `nextval`: the sequence's `INCREMENT BY` (migrations/postgres/0005_session_ids.sql).
pub(super) const SESSION_ID_BLOCK: u64 = 100;

/// Where the next session id comes from.
pub(super) enum SessionIds {
    /// After the highest stored id, in memory (SQLite: one writer).
    Counter(AtomicU64),
    /// The rest of this node's block (PostgreSQL). A tokio Mutex: held across the `nextval`
    /// that refills it, so that connections arriving meanwhile wait for that one block.
    Blocks(tokio::sync::Mutex<Range<u64>>),
}

impl SessionIds {
    /// Ids continuing after `last`.
    pub(super) fn after(last: u64) -> Self {
        Self::Counter(AtomicU64::new(last + 1))
    }

    /// Ids from the shared sequence; the first block is taken on the first connection.
    pub(super) fn from_sequence() -> Self {
        Self::Blocks(tokio::sync::Mutex::new(0..0))
    }

    /// The next id; with blocks, `take_block` (the first id of a new block, the backend's
    /// statement) is awaited when this one is used up, and dropped unpolled otherwise.
    pub(super) async fn next(
        &self,
        take_block: impl Future<Output = Result<u64, sqlx::Error>>,
    ) -> Result<u64, sqlx::Error> {
        match self {
            Self::Counter(next) => Ok(next.fetch_add(1, Ordering::Relaxed)),
            Self::Blocks(block) => {
                let mut block = block.lock().await;
                if block.is_empty() {
                    let first = take_block.await?;
                    *block = first..first + SESSION_ID_BLOCK;
                }
                Ok(block.next().unwrap_or_default())
            }
        }
    }
}
