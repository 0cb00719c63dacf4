//! `switchboard backup <file>`: a consistent copy of the live database, taken while the server
//! runs, and checked before it is called good.
//!
//! The copy is made by SQLite's `VACUUM INTO` on a connection of its own: it reads one
//! snapshot (a read transaction, so the server's writer goes on committing beside it, and the
//! WAL's committed contents are included) and writes a compact file. The copy is then opened
//! on its own and checked (`PRAGMA integrity_check`, row counts), and it is marked with the
//! time it was taken ([`BACKUP_TAKEN_AT_MS`]) so that a server started on it after a restore
//! moves its id reservation past every id the original server may have handed out since
//! (see [`restored_id_floor`]).
//!
//! This opens the database without migrating it and writes nothing to it: a backup must never
//! change the server's file (an older binary against a newer file is refused, not migrated).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, SqliteConnection};

/// Counter name, in a copy only: when the copy was taken (milliseconds since the Unix epoch).
/// A server that starts on a file carrying it moves its id reservation (once) and removes it.
pub(super) const BACKUP_TAKEN_AT_MS: &str = "backup_taken_at_ms";

/// An upper bound on how fast one server's ids advance: publishing (about 100,000 per second
/// at the fastest we measured) and restarts (each skips the rest of a reserved block of
/// 1,000,000; a restart takes more than 100 ms, systemd's default `RestartSec` alone). A
/// restored copy starts this many ids per second of its age past the reservation it carries:
/// the original server cannot have handed out more since. At this rate a copy restored a year
/// after it was taken starts at about 3.2 × 10^14, far inside the 2^53 a JavaScript client
/// reads exactly.
pub const MAX_IDS_PER_SECOND: u64 = 10_000_000;

/// The tables reported after a copy, in the order printed.
const TABLES: &[&str] = &[
    "users",
    "sessions",
    "server_runs",
    "messages",
    "deliveries",
    "room_members",
    "counters",
];

/// Why a backup failed. Each names the file it was about.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source database does not exist.
    #[error("no database at {0} (set DATABASE_URL to the server's database)")]
    NoSource(PathBuf),
    /// The destination exists already: a backup never overwrites a file.
    #[error("{0} exists already; choose a new file name (a backup never overwrites)")]
    DestinationExists(PathBuf),
    /// A SQL step failed.
    #[error("{context} ({path}): {source}")]
    Sql {
        /// What was being done.
        context: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        source: sqlx::Error,
    },
    /// The copy was made but does not pass SQLite's integrity check.
    #[error("the copy at {path} failed its integrity check: {report}")]
    Corrupt {
        /// The copy.
        path: PathBuf,
        /// What `PRAGMA integrity_check` said.
        report: String,
    },
}

/// What a finished backup holds.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The copy.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows per table, in [`TABLES`] order.
    pub rows: Vec<(&'static str, i64)>,
    /// The highest message id in the copy (0 if none).
    pub last_message_id: i64,
    /// How long the copy took.
    pub took: Duration,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backup written to {}", self.path.display())?;
        writeln!(f, "integrity_check: ok")?;
        writeln!(f, "size: {} bytes", self.bytes)?;
        writeln!(f, "took: {} ms", self.took.as_millis())?;
        writeln!(f, "last message id: {}", self.last_message_id)?;
        for (table, rows) in &self.rows {
            writeln!(f, "rows {table}: {rows}")?;
        }
        Ok(())
    }
}

/// Copies the database at `source` to `destination` (which must not exist), checks the copy
/// and marks it as a backup.
pub async fn backup(source: &Path, destination: &Path) -> Result<BackupReport, BackupError> {
    let started = std::time::Instant::now();
    if !source.is_file() {
        return Err(BackupError::NoSource(source.to_path_buf()));
    }
    if destination.exists() {
        return Err(BackupError::DestinationExists(destination.to_path_buf()));
    }
    let sql = |context, path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sql {
            context,
            path,
            source,
        }
    };
    // Not read-only: a WAL database opened read-only needs its -shm file to exist already,
    // which it does not when the server is stopped. Nothing below writes to the source.
    let mut live = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(source)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10)),
    )
    .await
    .map_err(sql("could not open the database", source))?;
    let taken_at = SystemTime::now();
    sqlx::query("VACUUM INTO ?1")
        .bind(destination.to_string_lossy().into_owned())
        .execute(&mut live)
        .await
        .map_err(sql("could not copy the database", destination))?;
    let _ = live.close().await;

    let mut copy = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(destination)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Delete),
    )
    .await
    .map_err(sql("could not open the copy", destination))?;
    let report: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut copy)
        .await
        .map_err(sql("could not check the copy", destination))?;
    if report != ["ok"] {
        return Err(BackupError::Corrupt {
            path: destination.to_path_buf(),
            report: report.join("; "),
        });
    }
    let taken_ms = taken_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    sqlx::query("INSERT OR REPLACE INTO counters (name, value) VALUES (?1, ?2)")
        .bind(BACKUP_TAKEN_AT_MS)
        .bind(taken_ms)
        .execute(&mut copy)
        .await
        .map_err(sql("could not mark the copy", destination))?;
    let mut rows = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        // Table names come from the constant list above, never from input.
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut copy)
            .await
            .map_err(sql("could not count the copy's rows", destination))?;
        rows.push((*table, count));
    }
    let last_message_id: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(message_id), 0) FROM messages")
            .fetch_one(&mut copy)
            .await
            .map_err(sql("could not read the copy's last message", destination))?;
    let _ = copy.close().await;
    let bytes = std::fs::metadata(destination).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        path: destination.to_path_buf(),
        bytes,
        rows,
        last_message_id,
        took: started.elapsed(),
    })
}

/// Where ids must start on a restored copy taken at `taken_at_ms` that carries the reservation
/// `reserved`, at `now`: past every id the original server can have handed out since the copy
/// (at most [`MAX_IDS_PER_SECOND`] per second of the copy's age, rounded up, plus one block it
/// may have reserved just before). A clock that went backwards counts as no time at all.
pub(super) fn restored_id_floor(
    reserved: u64,
    taken_at_ms: u64,
    now: SystemTime,
    block: u64,
) -> u64 {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let age_secs = now_ms.saturating_sub(taken_at_ms).div_ceil(1000);
    reserved
        .saturating_add(age_secs.saturating_mul(MAX_IDS_PER_SECOND))
        .saturating_add(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_copy_starts_past_what_the_server_could_hand_out_since() {
        let taken = 1_700_000_000_000;
        let now = UNIX_EPOCH + Duration::from_millis(taken + 2_500);
        assert_eq!(
            restored_id_floor(5_000, taken, now, 1_000),
            5_000 + 3 * MAX_IDS_PER_SECOND + 1_000
        );
    }

    #[test]
    fn a_clock_that_went_backwards_still_moves_past_one_block() {
        let taken = 1_700_000_000_000;
        let now = UNIX_EPOCH + Duration::from_millis(taken - 60_000);
        assert_eq!(restored_id_floor(5_000, taken, now, 1_000), 6_000);
    }
}
