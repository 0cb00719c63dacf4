//! The databases behind a test gateway: where its data lives ([`Place`]), a PostgreSQL
//! database of its own per test ([`PgDatabase`]), and one way to query either for assertions
//! ([`Sql`], [`open_db`]).

use std::path::{Path, PathBuf};

use sqlx::postgres::PgRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, FromRow, PgConnection, PgPool, Postgres, Sqlite, SqlitePool};
use switchboard::config::{DatabaseSettings, PostgresUrl};
use tempfile::TempDir;

use super::Backend;

/// Where a gateway's data lives; a clone restarts a gateway on the same data. A PostgreSQL
/// database is dropped once the last clone is gone.
#[derive(Clone)]
pub enum Place {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(std::sync::Arc<PgDatabase>),
}

impl Place {
    /// Settings that open a store on it (every other setting at its default).
    pub fn settings(&self) -> DatabaseSettings {
        match self {
            Self::Sqlite(path) => DatabaseSettings::at(path),
            Self::Postgres(db) => DatabaseSettings::postgres(db.url.clone()),
        }
    }

    /// `DATABASE_URL` for a child process.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(db) => db.url.expose().to_owned(),
        }
    }

    /// A fresh place on `backend`; `None` when PostgreSQL is unreachable (outside CI), after
    /// a loud SKIPPED line naming `test`. The temporary directory of a SQLite file goes to
    /// the caller to keep.
    pub async fn fresh(backend: Backend, test: &str) -> Option<(Self, Option<TempDir>)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("switchboard.db");
                Some((Self::Sqlite(path), Some(dir)))
            }
            Backend::Postgres => {
                let db = PgDatabase::create(test).await?;
                Some((Self::Postgres(std::sync::Arc::new(db)), None))
            }
        }
    }
}

/// A test database of its own on the local PostgreSQL (`TEST_POSTGRES_URL`, else
/// `postgres://postgres@127.0.0.1:5432`), dropped when this drops, even after a failure.
pub struct PgDatabase {
    name: String,
    url: PostgresUrl,
}

/// Says loudly that `test` did not run on PostgreSQL. Written to stderr itself, not through
/// `eprintln!`, which the test harness captures (and hides) for a test that passes.
fn skipped(test: &str, cause: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\n!! SKIPPED {test} on PostgreSQL: unreachable ({cause}); with CI=true this fails !!\n"
    );
}

fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

impl PgDatabase {
    /// Creates one; `None` after a loud SKIPPED line when PostgreSQL is unreachable, except
    /// with `CI=true`, where that fails the test.
    pub async fn create(test: &str) -> Option<Self> {
        let mut admin =
            match PgConnection::connect(&format!("{}/postgres", postgres_server())).await {
                Ok(conn) => conn,
                Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("PostgreSQL is unreachable and CI=true: {e}")
                }
                Err(e) => {
                    skipped(test, &e);
                    return None;
                }
            };
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("random bytes");
        let name = format!("sb_test_{:016x}", u64::from_le_bytes(random));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = PostgresUrl::parse(&format!("{}/{name}", postgres_server())).expect("a URL");
        Some(Self { name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop is not async, and may run while a failed test unwinds: a thread with its own
        // runtime. FORCE ends the connections a gateway still holds.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut admin =
                    PgConnection::connect(&format!("{}/postgres", postgres_server())).await?;
                sqlx::query(&sql).execute(&mut admin).await.map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A connection pool to either database, for assertions written once: `$1`, `$2`, ... are
/// positional parameters on both.
pub enum Sql {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Sql {
    /// The database at `place`, without a gateway on it.
    pub async fn open(place: &Place) -> Self {
        match place {
            Place::Sqlite(path) => Self::Sqlite(open_db(path).await),
            Place::Postgres(db) => Self::Postgres(
                PgPool::connect(db.url.expose())
                    .await
                    .expect("database opens"),
            ),
        }
    }

    /// Every row of `sql`, binding `binds` as `$1`, `$2`, ...
    pub async fn rows<T>(&self, sql: &str, binds: &[&str]) -> Vec<T>
    where
        T: Send + Unpin + for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        match self {
            Self::Sqlite(pool) => {
                let mut query = sqlx::query_as::<Sqlite, T>(sql);
                for b in binds {
                    query = query.bind(*b);
                }
                query.fetch_all(pool).await
            }
            Self::Postgres(pool) => {
                let mut query = sqlx::query_as::<Postgres, T>(sql);
                for b in binds {
                    query = query.bind(*b);
                }
                query.fetch_all(pool).await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The one row of `sql`.
    pub async fn row<T>(&self, sql: &str, binds: &[&str]) -> T
    where
        T: Send + Unpin + for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        let mut rows = self.rows::<T>(sql, binds).await;
        assert_eq!(rows.len(), 1, "{sql}: one row");
        rows.remove(0)
    }

    /// The one value of `sql` (a one-column row).
    pub async fn scalar<T>(&self, sql: &str, binds: &[&str]) -> T
    where
        T: Send + Unpin,
        (T,): for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        self.row::<(T,)>(sql, binds).await.0
    }
}

/// Opens a database file read-write for assertions.
pub async fn open_db(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("database opens")
}
