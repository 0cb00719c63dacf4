//! Everything durable, and the only SQL in the crate. [`Store::open`] checks the file's
//! directory, applies the migrations (WAL mode), closes the sessions a crash left open,
//! reserves message ids and starts the writer and retention tasks. Writes go through
//! [`writer`], which commits them in groups; reads ([`sessions`], [`messages`]) use the pool
//! directly, after [`Store::flush`] or [`Store::wait_committed`] when they must see writes
//! already sent.

pub mod ids;
pub mod messages;
pub mod retention;
pub mod sessions;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{DatabaseSettings, Synchronous};
use crate::protocol::wire::timestamp;
use ids::IdAllocator;
pub use writer::WriteOp;

/// A store that could not be opened or used. The message says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory of the database file does not exist.
    #[error("the directory of the database file {0} does not exist; create it or fix DATABASE_URL")]
    MissingDirectory(PathBuf),
    /// Creating the default data directory failed.
    #[error("could not create the data directory {path}: {source}")]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A database step failed.
    #[error("{context} ({path}): {source}")]
    Sql {
        /// What was being done.
        context: &'static str,
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: sqlx::Error,
    },
    /// Message ids could not be reserved in time (the database refuses the reservation), so
    /// nothing can be published: the publisher answers "not stored" instead of waiting on.
    #[error("message ids could not be reserved within {waited:?}; see the writer's errors")]
    IdsUnavailable {
        /// How long the publisher waited.
        waited: Duration,
    },
    /// A migration failed.
    #[error("could not apply migrations to {path}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: sqlx::migrate::MigrateError,
    },
}

/// How often the current run's `last_alive_at` is refreshed.
const ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long a publisher waits for message ids before answering "not stored": a reservation
/// commits in milliseconds, so this long means the database refuses it.
const ID_HEADROOM_GIVE_UP: Duration = Duration::from_secs(3);
/// How long a publisher first waits for a reservation before looking again (and asking
/// again, should it have failed); doubles up to [`ID_HEADROOM_RETRY_MAX`].
const ID_HEADROOM_RETRY: Duration = Duration::from_millis(25);
/// The longest wait between two looks.
const ID_HEADROOM_RETRY_MAX: Duration = Duration::from_millis(400);

/// The durable store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    path: PathBuf,
    writes: mpsc::UnboundedSender<WriteOp>,
    next_session_id: AtomicU64,
    shared: Arc<Shared>,
    // Taken once by `close`; a std Mutex because it is never held across an await.
    writer_task: Mutex<Option<JoinHandle<()>>>,
}

/// State the writer and the rest of the store share.
struct Shared {
    ids: IdAllocator,
    /// Every message id up to this one is settled (committed, or failed and reported).
    committed: watch::Sender<u64>,
    /// Undelivered messages per user (the offline queue's length). A std Mutex: held only
    /// for a map lookup, never across an await.
    pending: Mutex<HashMap<String, u64>>,
    /// The highest message id retention deleted.
    pruned_through: AtomicU64,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note_delivered(&self, user_id: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut pending = self.pending();
        if let Some(count) = pending.get_mut(user_id) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                pending.remove(user_id);
            }
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database file, migrates it, closes sessions left open
    /// by a crash with reason `server_restart`, reserves message ids, and starts the writer
    /// and the retention task.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        Self::open_with(settings, ids::BLOCK).await
    }

    /// [`Store::open`], reserving message ids `id_block` at a time (tests use small blocks
    /// to run through reservations in a few messages).
    pub(crate) async fn open_with(
        settings: &DatabaseSettings,
        id_block: u64,
    ) -> Result<Self, StoreError> {
        let path = settings.path.clone();
        let dir = settings.data_dir();
        if settings.is_default {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDirectory {
                path: dir.clone(),
                source,
            })?;
        } else if !dir.is_dir() {
            return Err(StoreError::MissingDirectory(path));
        }
        let sql = |context| {
            let path = path.clone();
            move |source| StoreError::Sql {
                context,
                path,
                source,
            }
        };
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match settings.synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // A local file does not need a ping before each use; it would cost the writer one
        // more worker round trip per batch.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(sql("could not open the database"))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.clone(),
                source,
            })?;
        let now = timestamp(SystemTime::now());
        let closed = sessions::close_orphaned(&pool, &now).await.map_err(sql(
            "could not close the sessions left open by the last run",
        ))?;
        if closed > 0 {
            tracing::warn!(
                closed,
                "closed sessions left open by a crash (reason server_restart)"
            );
        }
        let run_id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO server_runs (started_at, last_alive_at) VALUES (?1, ?1) RETURNING run_id",
        )
        .bind(&now)
        .fetch_one(&pool)
        .await
        .map_err(sql("could not record this server run"))?;
        let max_session: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(session_id), 0) FROM sessions")
                .fetch_one(&pool)
                .await
                .map_err(sql("could not read the last session id"))?;
        let shared = Arc::new(
            Self::load_message_state(&pool, id_block)
                .await
                .map_err(sql("could not read the message log state"))?,
        );
        let (writes, rx) = mpsc::unbounded_channel();
        let writer_task = tokio::spawn(writer::run(pool.clone(), rx, run_id, shared.clone()));
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                path,
                writes,
                next_session_id: AtomicU64::new(max_session.max(0) as u64 + 1),
                shared,
                writer_task: Mutex::new(Some(writer_task)),
            }),
        };
        store.spawn_alive_ticker();
        retention::spawn(store.clone(), settings.retention.clone());
        Ok(store)
    }

    /// Reads where ids stand, reserves the first block durably, and loads the queue lengths.
    async fn load_message_state(pool: &SqlitePool, id_block: u64) -> Result<Shared, sqlx::Error> {
        let reserved = messages::counter(pool, messages::RESERVED_THROUGH).await?;
        let pruned = messages::counter(pool, messages::PRUNED_THROUGH).await?;
        let max_id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(message_id), 0) FROM messages")
            .fetch_one(pool)
            .await?;
        // Every id up to the old reservation may have been seen live before a crash.
        let last_used = reserved.max(max_id.max(0) as u64).max(pruned);
        let through = last_used + id_block;
        messages::raise_counter(pool, messages::RESERVED_THROUGH, through).await?;
        let pending = messages::pending_counts(pool)
            .await?
            .into_iter()
            .map(|(user, n)| (user, n.max(0) as u64))
            .collect();
        Ok(Shared {
            ids: IdAllocator::new(last_used, through, id_block),
            committed: watch::Sender::new(last_used),
            pending: Mutex::new(pending),
            pruned_through: AtomicU64::new(pruned),
        })
    }

    fn spawn_alive_ticker(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ALIVE_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let at = timestamp(SystemTime::now());
                if inner.writes.send(WriteOp::Alive { at }).is_err() {
                    break;
                }
            }
        });
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Hands a write to the writer task. Never blocks: live routing must not wait for the
    /// disk. A write sent after [`Store::close`] is dropped with a log line.
    pub fn write(&self, op: WriteOp) {
        if self.inner.writes.send(op).is_err() {
            tracing::warn!("store is closed; a write was dropped");
        }
    }

    /// Records that connections of `user_id` took these stored messages (their offline-queue
    /// rows are marked delivered).
    pub fn delivered(&self, user_id: &str, ids: Vec<u64>) {
        self.write(WriteOp::MarkDelivered {
            user_id: user_id.to_owned(),
            ids,
            at: timestamp(SystemTime::now()),
        });
    }

    /// A new session id, unique across restarts (ids continue after the stored maximum).
    pub fn allocate_session_id(&self) -> u64 {
        self.inner.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits, if ever needed, until enough message ids are reserved that allocating under
    /// the hub lock cannot run past the reservation. Call before publishing. A reservation
    /// that fails is asked again after a short backoff; after a few seconds (`ID_HEADROOM_GIVE_UP`)
    /// this returns [`StoreError::IdsUnavailable`], so the publisher answers instead of hanging.
    pub async fn ensure_id_headroom(&self) -> Result<(), StoreError> {
        let ids = &self.inner.shared.ids;
        let started = tokio::time::Instant::now();
        let mut retry = ID_HEADROOM_RETRY;
        while let Some(request) = ids.needs_headroom() {
            // `None` while a request is in flight; a failed one was settled and is asked anew.
            if let Some(through) = request {
                self.write(WriteOp::ReserveIds { through });
            }
            let left = ID_HEADROOM_GIVE_UP.saturating_sub(started.elapsed());
            if left.is_zero() {
                tracing::error!(waited = ?ID_HEADROOM_GIVE_UP,
                    "no message ids could be reserved; answering the publisher with an error");
                return Err(StoreError::IdsUnavailable {
                    waited: ID_HEADROOM_GIVE_UP,
                });
            }
            // Woken by a committed reservation; otherwise look again when the slice ends.
            let _ = tokio::time::timeout(retry.min(left), ids.wait_for_headroom()).await;
            retry = (retry * 2).min(ID_HEADROOM_RETRY_MAX);
        }
        Ok(())
    }

    /// The next message id. Synchronous, for use under the hub lock.
    pub fn allocate_message_id(&self) -> u64 {
        let (id, request) = self.inner.shared.ids.allocate();
        if let Some(through) = request {
            self.write(WriteOp::ReserveIds { through });
        }
        id
    }

    /// The last message id handed out.
    pub fn last_message_id(&self) -> u64 {
        self.inner.shared.ids.last_allocated()
    }

    /// Waits until every message up to `id` is settled (committed, or failed and reported).
    pub async fn wait_committed(&self, id: u64) {
        let mut rx = self.inner.shared.committed.subscribe();
        let _ = rx.wait_for(|c| *c >= id).await;
    }

    /// Undelivered messages queued for `user_id`.
    pub fn pending_for(&self, user_id: &str) -> u64 {
        self.inner
            .shared
            .pending()
            .get(user_id)
            .copied()
            .unwrap_or(0)
    }

    /// Counts one more undelivered message for `user_id` (its write is being sent).
    pub fn note_queued(&self, user_id: &str) {
        *self
            .inner
            .shared
            .pending()
            .entry(user_id.to_owned())
            .or_insert(0) += 1;
    }

    /// The highest message id deleted by retention (0 if none).
    pub fn pruned_through(&self) -> u64 {
        self.inner.shared.pruned_through.load(Ordering::Acquire)
    }

    fn note_pruned(&self, id: u64) {
        self.inner
            .shared
            .pruned_through
            .fetch_max(id, Ordering::AcqRel);
    }

    /// Waits until every write sent before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.writes.send(WriteOp::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Whether the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .is_ok()
    }

    /// Records the end of this run, waits for the writer to commit everything sent so far
    /// and closes the pool. Called once, at shutdown, after every session was closed.
    pub async fn close(&self) {
        self.write(WriteOp::Stop {
            at: timestamp(SystemTime::now()),
        });
        let task = self
            .inner
            .writer_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "store writer task failed");
        }
        self.inner.pool.close().await;
    }
}
