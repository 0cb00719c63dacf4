//! [`AfterWrites`]: the reads that must see every write this process sent before them, named
//! as such at the call site (`store.after_writes().await.sessions_of(..)`).
//!
//! Writes are channel sends that the writer commits later (group commit), so a plain read
//! sees only what is committed: a session opened a moment ago, a delivery receipt or a message
//! still in the writer's batch is missing from it. A read that promises its caller otherwise
//! (the REST history and queue, statistics, the dashboard's snapshot, a connection's
//! catch-up) takes this view: [`Store::after_writes`] waits for the writer first
//! ([`Store::flush`]), once, and every read through the view then sees those writes. A read
//! that does not promise it (the dashboard's stream, ticking every second) calls the store
//! directly, and cannot hang on a stuck disk.
//!
//! Replay has a bound of its own, [`Store::read_horizon`]: a read limited to ids up to it
//! (`ReplayPage::until`) sees every message up to it, which is all `sync` needs.

use std::collections::HashMap;

use super::{
    ListFilter, Reader, RecentSession, ReplayPage, SessionRow, Store, StoreError, StoredMessage,
    UserHistory,
};

/// The store's reads, after every write sent before [`Store::after_writes`] was called is
/// committed; each method is the [`Store`] method of the same name.
#[derive(Clone, Copy)]
pub struct AfterWrites<'a> {
    store: &'a Store,
}

impl Store {
    /// Waits until every write sent so far is committed, then gives the reads that see them.
    /// Take it once for several reads: the wait is the writer's next commit.
    pub async fn after_writes(&self) -> AfterWrites<'_> {
        self.flush().await;
        AfterWrites { store: self }
    }
}

impl AfterWrites<'_> {
    /// [`Store::list_messages`].
    pub async fn list_messages(
        &self,
        filter: &ListFilter,
        viewer: Option<Reader<'_>>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.store.list_messages(filter, viewer).await
    }

    /// [`Store::replay_page`].
    pub async fn replay_page(
        &self,
        page: ReplayPage<'_>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.store.replay_page(page).await
    }

    /// [`Store::undelivered`].
    pub async fn undelivered(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<(StoredMessage, String)>, StoreError> {
        self.store.undelivered(user_id, limit).await
    }

    /// [`Store::user_history`].
    pub async fn user_history(
        &self,
        user_ids: &[String],
        now: &str,
    ) -> Result<HashMap<String, UserHistory>, StoreError> {
        self.store.user_history(user_ids, now).await
    }

    /// [`Store::sessions_of`].
    pub async fn sessions_of(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.store.sessions_of(user_id, limit).await
    }

    /// [`Store::recent_sessions`].
    pub async fn recent_sessions(&self, limit: u32) -> Result<Vec<RecentSession>, StoreError> {
        self.store.recent_sessions(limit).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::auth::Identity;
    use crate::config::DatabaseSettings;
    use crate::metrics::Metrics;
    use crate::protocol::wire::now;
    use crate::store::{MessageRecord, NewSession, Store, Target};

    async fn open(dir: &tempfile::TempDir, metrics: Arc<Metrics>) -> Store {
        Store::open(&DatabaseSettings::at(dir.path().join("after.db")), metrics)
            .await
            .expect("open the store")
    }

    #[tokio::test]
    async fn a_read_after_the_writes_sees_a_session_opened_a_moment_ago() {
        // Arrange: a session row sent to the writer, not waited for.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(&dir, Metrics::shared()).await;
        let alice = Identity {
            user_id: "alice".into(),
            username: "alice".into(),
            role: "USER".into(),
            exp: u64::MAX,
            iat: None,
            grants: None,
        };
        let at = now();
        store.session_opened(NewSession {
            session_id: 7,
            identity: &alice,
            transport: "ws",
            remote_addr: None,
            user_agent: None,
            at: &at,
        });

        // Act
        let sessions = store.after_writes().await.sessions_of("alice", 10).await;

        // Assert
        let sessions = sessions.expect("read the sessions");
        assert_eq!(sessions.len(), 1, "the session just opened is listed");
    }

    #[tokio::test]
    async fn the_writer_counts_its_commits_in_the_metrics_it_was_handed() {
        // Arrange: the set start-up would hand to the store, the hub and the app state.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let metrics = Metrics::shared();
        let store = open(&dir, metrics.clone()).await;

        // Act: one message logged and committed.
        let mut commit = store.log_message(MessageRecord {
            id: store.allocate_message_id(),
            event: "broadcast-message".into(),
            target: Target::All,
            sender_id: "alice".into(),
            body: "hi".into(),
            kind: None,
            payload: "{}".into(),
            client_msg_id: None,
            live_recipients: 0,
            created_at: now(),
            sender_session: None,
        });
        assert!(commit.durable().await, "the message is stored");

        // Assert: counted in that set, not in one of the store's own.
        assert_eq!(metrics.totals().messages_stored, 1);
    }
}
