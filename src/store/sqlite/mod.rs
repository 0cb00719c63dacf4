//! The SQLite backend (the default: one file, written by this process alone), one file per
//! capability, the same names as `postgres/`'s: `writer.rs` (the `commit_all` of a gathered
//! batch), `messages.rs`, `replay.rs`, `sessions.rs`, `rooms.rs`, `users.rs`, `counters.rs`,
//! `retention.rs` (its deletes), and `backup.rs`, which only SQLite has (`switchboard
//! backup`). Only SQL and opening live here; the statements both dialects accept are in
//! `../sql.rs`, everything else is shared above.
//!
//! Opening (this file): the file's directory, the pragmas (WAL, `synchronous`, foreign keys,
//! checkpoints beside the writer: `checkpoint.rs`, statement journals in memory),
//! the migrations, the crash recovery of sessions, and where message ids and offline queues
//! stand. What comes out ([`Opened`]) is everything [`Store`](super::Store) needs to start its
//! writer; `postgres/mod.rs` returns the same for PostgreSQL.

pub mod backup;
mod checkpoint;
pub(in crate::store) mod chunks;
pub(in crate::store) mod counters;
pub(in crate::store) mod messages;
pub(in crate::store) mod outbox;
pub(in crate::store) mod replay;
pub(in crate::store) mod retention;
pub(in crate::store) mod rooms;
pub(in crate::store) mod sessions;
pub(in crate::store) mod users;
pub(in crate::store) mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::model::{PRUNED_THROUGH, RESERVED_THROUGH};
use super::outbox::Outbox;
use super::session_ids::SessionIds;
use super::{Backend, Opened, StartState, StoreError};
use crate::config::{DatabaseSettings, Synchronous};
use crate::protocol::wire::timestamp;
use backup::{BACKUP_TAKEN_AT_MS, restored_id_floor};
use counters::{counter, forget_counter, raise_counter};

/// Opens (creating if needed) the database file at `path`, migrates it, closes the sessions a
/// crash left open, records this run and reserves the first block of `id_block` message ids.
/// Only the default location (`is_default`) gets its directory created.
pub(super) async fn open(
    settings: &DatabaseSettings,
    path: &Path,
    is_default: bool,
    id_block: u64,
    outbox: &Outbox,
) -> Result<Opened, StoreError> {
    let sql = |context| {
        let database = path.display().to_string();
        move |source| StoreError::Sql {
            context,
            database,
            source,
        }
    };
    let pool = connect(settings, path, is_default).await?;
    check_writable(&pool)
        .await
        .map_err(sql("the database cannot be written"))?;
    let tables = tables(&pool)
        .await
        .map_err(sql("could not read the database's tables"))?;
    super::refuse_foreign(&tables, &settings.location)?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            database: path.display().to_string(),
            source,
        })?;
    let now = timestamp(SystemTime::now());
    let recovered = async {
        let mut tx = pool.begin().await?;
        let closed = outbox::close_orphaned(&mut tx, &now, outbox).await?;
        outbox::fail_unconfigured(&mut tx, outbox, &now).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(closed)
    };
    let closed = recovered.await.map_err(sql(
        "could not close the sessions left open by the last run",
    ))?;
    if closed > 0 {
        tracing::warn!(
            closed,
            "closed sessions left open by a crash (reason server_restart)"
        );
    }
    let run_id = sessions::start_run(&pool, &now)
        .await
        .map_err(sql("could not record this server run"))?;
    let last_session_id = sessions::last_session_id(&pool)
        .await
        .map_err(sql("could not read the last session id"))?;
    let start = message_state(&pool, id_block)
        .await
        .map_err(sql("could not read the message log state"))?;
    checkpoint::spawn(pool.clone());
    Ok(Opened {
        backend: Backend::Sqlite(pool),
        run_id,
        session_ids: SessionIds::after(last_session_id),
        start,
    })
}

/// Checks (or creates, for the default location) the file's directory and connects.
async fn connect(
    settings: &DatabaseSettings,
    path: &Path,
    is_default: bool,
) -> Result<SqlitePool, StoreError> {
    let path = path.to_path_buf();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if is_default {
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDirectory {
            path: dir.clone(),
            source,
        })?;
    } else if !dir.is_dir() {
        return Err(StoreError::MissingDirectory(path));
    }
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match settings.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .foreign_keys(true)
        // Checkpoints run beside the writer (`checkpoint.rs`), not inside its commits.
        .pragma("wal_autocheckpoint", "0")
        // Statement journals (a multi-row INSERT's undo, inside the writer's transaction) in
        // memory: in a temporary file they cost the writer a write(2) per page.
        .pragma("temp_store", "memory")
        .busy_timeout(Duration::from_secs(5));
    // A local file does not need a ping before each use; it would cost the writer one
    // more worker round trip per batch.
    SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Sql {
            context: "could not open the database",
            database: path.display().to_string(),
            source,
        })
}

/// Reads where ids stand, reserves the first block durably, and loads the queue lengths.
async fn message_state(pool: &SqlitePool, id_block: u64) -> Result<StartState, sqlx::Error> {
    let reserved = counter(pool, RESERVED_THROUGH).await?;
    let pruned = counter(pool, PRUNED_THROUGH).await?;
    let max_id = messages::last_stored_id(pool).await?;
    // Every id up to the old reservation may have been seen live before a crash; and never
    // below a stored id, whatever the counter says (a file restored or edited by hand).
    let mut last_used = reserved.max(max_id).max(pruned);
    let taken_at = counter(pool, BACKUP_TAKEN_AT_MS).await?;
    if taken_at > 0 {
        let floor = restored_id_floor(last_used, taken_at, SystemTime::now(), id_block);
        tracing::warn!(
            reserved = last_used,
            next_id = floor + 1,
            "this database is a restored backup: message ids continue past any the original server can have handed out since the copy"
        );
        last_used = floor;
    }
    let through = last_used + id_block;
    raise_counter(pool, RESERVED_THROUGH, through).await?;
    if taken_at > 0 {
        // After the reservation is durable: a crash in between moves ids once more, harmless.
        forget_counter(pool, BACKUP_TAKEN_AT_MS).await?;
    }
    let pending: HashMap<String, u64> = messages::queue_lengths(pool).await?.into_iter().collect();
    Ok(StartState {
        last_used,
        reserved_through: through,
        id_block,
        pruned,
        pending,
    })
}

/// Writes once and rolls it back: a read-only file (or a directory where the -wal file
/// cannot be written) fails here, named as such, rather than at whichever write comes first.
async fn check_writable(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let wrote = sqlx::query("CREATE TABLE switchboard_write_check (x)")
        .execute(&mut *tx)
        .await;
    let rolled_back = tx.rollback().await;
    wrote?;
    rolled_back
}

/// The database's tables, sorted, for [`super::refuse_foreign`].
async fn tables(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name",
    )
    .fetch_all(pool)
    .await
}
