//! [`StoreError`]: a store that could not be opened or used, whatever the backend, with
//! what was being done and, where an operator can act on it, a hint. The hints know each
//! backend's error codes, so they live here, beside the message they end.

use std::path::PathBuf;
use std::time::Duration;

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
    #[error("{context} ({database}): {source}{hint}", hint = hint(.source))]
    Sql {
        /// What was being done.
        context: &'static str,
        /// The database file or URL (without its password).
        database: String,
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
    /// The file is another program's database: it holds tables but no migration history,
    /// and migrating it would mix our tables into it.
    #[error(
        "{database} is not a switchboard database: it holds tables ({tables}) but no \
         migration history; point DATABASE_URL at a new database or at a switchboard database"
    )]
    Foreign {
        /// The database file or URL.
        database: String,
        /// Some of its tables.
        tables: String,
    },
    /// A migration failed.
    #[error("could not apply migrations to {database}: {source}")]
    Migrate {
        /// The database file or URL.
        database: String,
        /// The cause.
        source: sqlx::migrate::MigrateError,
    },
}

/// What an operator can do about a database error, appended to its message (empty when
/// there is nothing to add); only SQLite's errors have hints so far.
fn hint(error: &sqlx::Error) -> &'static str {
    match error.as_database_error() {
        Some(e) if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            sqlite_hint(error)
        }
        _ => "",
    }
}

/// [`hint`] for SQLite. SQLite's primary result code is the low byte of the extended
/// one that sqlx reports.
fn sqlite_hint(error: &sqlx::Error) -> &'static str {
    let Some(code) = error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
    else {
        return "";
    };
    match code & 0xff {
        // SQLITE_READONLY
        8 => {
            "; the file (or its directory) is read-only: the server must be able to write \
             both (SQLite keeps -wal and -shm files beside the database)"
        }
        // SQLITE_CANTOPEN
        14 => {
            "; check that the file and its directory exist and that the server may write \
             both (SQLite keeps -wal and -shm files beside the database)"
        }
        // SQLITE_CORRUPT, SQLITE_NOTADB
        11 | 26 => {
            "; the file is corrupt or not a SQLite database: restore it from a backup, or \
             point DATABASE_URL at another file"
        }
        // SQLITE_FULL
        13 => "; the disk (or the database's size limit) is full",
        _ => "",
    }
}
