//! The door to what only a database shared by several nodes can answer: sequencing ids at
//! commit, the cluster's identity, the shared id counter, reading back what a node missed on
//! the bus, the offline-queue lengths other nodes changed, and the sessions of lost nodes.
//! [`Store::cluster`] opens it, or answers `None` for a backend that cannot be shared
//! (SQLite): the cluster asks once, when it joins, and a backend decides in that one place
//! instead of answering each question with a silent default. Today only PostgreSQL opens it;
//! a backend that could be shared would make [`ClusterStore`] hold its pool too.

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::model::{CLUSTER_IDENTITY, RESERVED_THROUGH};
use super::sequence::CommittedMessage;
use super::{Backend, Store, StoreError, postgres};

/// A store whose database several nodes share; cheap to clone. From [`Store::cluster`].
#[derive(Clone)]
pub struct ClusterStore {
    store: Store,
    pool: PgPool,
}

impl Store {
    /// The cluster's door into this store, or `None` when the database cannot be shared by
    /// several nodes (SQLite: one file, one process).
    pub fn cluster(&self) -> Option<ClusterStore> {
        match &self.inner.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(pool) => Some(ClusterStore {
                store: self.clone(),
                pool: pool.clone(),
            }),
        }
    }
}

impl ClusterStore {
    /// From now on, messages logged with id 0 get their id from the commit that stores them,
    /// and every committed batch comes out of the returned channel, in commit order. Returns
    /// the highest id committed so far (where delivery starts) with it. `None` when
    /// sequencing is already on.
    pub async fn sequence_at_commit(
        &self,
    ) -> Result<Option<(u64, mpsc::UnboundedReceiver<Vec<CommittedMessage>>)>, StoreError> {
        let head = postgres::counters::counter(&self.pool, RESERVED_THROUGH)
            .await
            .map_err(self.store.failed("could not read where message ids stand"))?;
        Ok(self
            .store
            .inner
            .shared
            .sequence
            .start(head)
            .map(|rx| (head, rx)))
    }

    /// The identity of the cluster whose database this is: a random number stored on the
    /// first call, the same for every node since. The bus drops what another cluster (one
    /// sharing the NATS server and subject prefix by mistake) says.
    pub async fn cluster_identity(&self) -> Result<i64, StoreError> {
        postgres::counters::identity(&self.pool, CLUSTER_IDENTITY)
            .await
            .map_err(self.store.failed("could not read the cluster's identity"))
    }

    /// The highest id committed by any node (the shared counter; ids are assigned in commit
    /// order, so every id below it is committed, or was never used).
    pub async fn sequence_head(&self) -> Result<u64, StoreError> {
        postgres::counters::counter(&self.pool, RESERVED_THROUGH)
            .await
            .map_err(self.store.failed("could not read where message ids stand"))
    }

    /// The stored messages with ids in `[from, through]`, oldest first, from at most `limit`
    /// rows: what a node missed on the bus, read back; with, when the page was full, the id
    /// it stopped at (everything above it is still to read).
    pub async fn committed_between(
        &self,
        from: u64,
        through: u64,
        limit: u32,
    ) -> Result<(Vec<CommittedMessage>, Option<u64>), StoreError> {
        postgres::messages::committed_between(&self.pool, from, through, limit)
            .await
            .map_err(self.store.failed("could not read committed messages"))
    }

    /// Reads every user's offline-queue length from the database into the counts behind
    /// [`Store::queued_for`]. In a cluster another node marks deliveries of messages this one
    /// queued, which this node's counts cannot see; the bus refreshes them this way.
    pub async fn reload_queue_counts(&self) -> Result<(), StoreError> {
        let lengths = postgres::messages::queue_lengths(&self.pool)
            .await
            .map_err(self.store.failed("could not read the offline queues"))?;
        *self.store.inner.shared.pending() = lengths.into_iter().collect();
        Ok(())
    }

    /// The nodes, other than `except`, that have sessions recorded as open.
    pub async fn nodes_with_open_sessions(&self, except: &str) -> Result<Vec<String>, StoreError> {
        postgres::sessions::nodes_with_open_sessions(&self.pool, except)
            .await
            .map_err(
                self.store
                    .failed("could not read which nodes have open sessions"),
            )
    }

    /// Closes the open sessions recorded under another node, with `reason`: that node is
    /// gone. Their webhook events are written in the same transaction. Returns how many rows
    /// it closed (0 when another node got there first).
    pub async fn close_node_sessions(
        &self,
        node_id: &str,
        reason: &'static str,
        at: &str,
    ) -> Result<u64, StoreError> {
        let outbox = &self.store.inner.shared.outbox;
        let closed = async {
            let mut tx = self.pool.begin().await?;
            let closed =
                postgres::outbox::close_node(&mut tx, node_id, reason, at, Some(node_id), outbox)
                    .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(closed)
        };
        let closed = closed
            .await
            .map_err(self.store.failed("could not close a lost node's sessions"))?;
        if closed > 0 {
            self.store
                .inner
                .shared
                .outbox_written
                .send_modify(|n| *n += 1);
        }
        Ok(closed)
    }
}
