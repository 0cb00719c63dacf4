//! The PostgreSQL backend (`DATABASE_URL=postgres://...`): the same tables and meanings as
//! SQLite's (`migrations/postgres/`), and the same files as `sqlite/`, holding only SQL and
//! opening: `writer.rs` (the `commit_all` of a gathered batch), `messages.rs`, `replay.rs`,
//! `sessions.rs`, `rooms.rs`, `users.rs`, `counters.rs`, `retention.rs`. The statements both
//! dialects accept are in `../sql.rs`; what is not SQL is shared with SQLite and lives above:
//! the intent API, the writes and their gathering (`batch.rs`), the writer's loop and
//! settle-once (`writer.rs`), the id allocator (`ids.rs`), retention's passes
//! (`retention.rs`). What only a shared database answers is reached through the cluster's
//! door (`cluster.rs`), which calls the statements here.
//!
//! What PostgreSQL answers differently, ahead of cluster mode (several nodes, one database):
//! an id reservation is one atomic "add a block, return the bound" (`counters.rs`), so nodes
//! get disjoint blocks; crash recovery closes only this node's session rows (`NODE_ID`, the
//! `node_id` columns). See "Store backends" in `docs/architecture.md` for what several nodes
//! still need.

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
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::model::PRUNED_THROUGH;
use super::outbox::Outbox;
use super::session_ids::SessionIds;
use super::{Backend, Opened, StartState, StoreError};
use crate::config::{DatabaseSettings, PostgresUrl};
use crate::protocol::wire::timestamp;

/// How long opening waits for a connection: a database that does not answer in this long
/// is reported, not waited on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the database at `url`, migrates it, closes the sessions a crash of this node
/// (`settings.node_id`) left open, records this run and reserves the first block of `id_block` message ids.
pub(super) async fn open(
    settings: &DatabaseSettings,
    url: &PostgresUrl,
    id_block: u64,
    outbox: &Outbox,
) -> Result<Opened, StoreError> {
    let sql = |context| {
        let database = url.to_string();
        move |source| StoreError::Sql {
            context,
            database,
            source,
        }
    };
    let options: PgConnectOptions = url
        .expose()
        .parse()
        .map_err(sql("the PostgreSQL URL is not valid"))?;
    // One connection first: the pool retries until its timeout and then reports only that it
    // timed out, where this says why (refused, unknown host, bad password, no such database).
    let first =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(connected) => connected,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            ))),
        };
    first
        .map_err(sql("could not connect to the database"))?
        .close()
        .await
        .map_err(sql("could not connect to the database"))?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(sql("could not connect to the database"))?;
    let tables = tables(&pool)
        .await
        .map_err(sql("could not read the database's tables"))?;
    super::refuse_foreign(&tables, &settings.location)?;
    // sqlx takes an advisory lock around the migrations: nodes starting together take turns.
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            database: url.to_string(),
            source,
        })?;
    let now = timestamp(SystemTime::now());
    let recovered = async {
        let mut tx = pool.begin().await?;
        let node = settings.node_id.as_str();
        let closed =
            outbox::close_node(&mut tx, node, "server_restart", &now, None, outbox).await?;
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
    let run_id = sessions::start_run(&pool, settings.node_id.as_str(), &now)
        .await
        .map_err(sql("could not record this server run"))?;
    // A cluster's ids come from the commits: no block to reserve (nor to leave unused).
    let id_block = if settings.ids_at_commit { 0 } else { id_block };
    let start = message_state(&pool, id_block)
        .await
        .map_err(sql("could not read the message log state"))?;
    Ok(Opened {
        backend: Backend::Postgres(pool),
        run_id,
        session_ids: SessionIds::from_sequence(),
        start,
    })
}

/// Reserves the first block durably (past every stored or pruned id, whatever the counter
/// says) and loads the queue lengths.
async fn message_state(pool: &PgPool, id_block: u64) -> Result<StartState, sqlx::Error> {
    let pruned = counters::counter(pool, PRUNED_THROUGH).await?;
    let max_id = messages::last_stored_id(pool).await?;
    let (first, through) = counters::reserve_block(pool, max_id.max(pruned), id_block).await?;
    let pending: HashMap<String, u64> = messages::queue_lengths(pool).await?.into_iter().collect();
    Ok(StartState {
        last_used: first - 1,
        reserved_through: through,
        id_block,
        pruned,
        pending,
    })
}

/// The tables of the current schema, sorted, for [`super::refuse_foreign`].
async fn tables(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(pool)
    .await
}

/// Test databases on the local PostgreSQL, one per test, so tests run in parallel and leave
/// nothing behind (tests/api/helpers/db.rs has the same for the integration tests).
#[cfg(test)]
pub(crate) mod testing {
    use sqlx::{Connection, PgConnection};

    use crate::config::{DatabaseSettings, PostgresUrl};

    /// Where the server is: `TEST_POSTGRES_URL`, else the local one with trust auth.
    fn server() -> String {
        std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
    }

    /// A database of its own, dropped (with any connection left to it) when this drops.
    pub(crate) struct TestDatabase {
        name: String,
        /// Settings that point the store at it.
        pub(crate) settings: DatabaseSettings,
    }

    /// A fresh database, or `None` after a loud SKIPPED line when PostgreSQL cannot be
    /// reached; with `CI=true` that is a failure instead.
    pub(crate) async fn database(test: &str) -> Option<TestDatabase> {
        let admin = match PgConnection::connect(&format!("{}/postgres", server())).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL is unreachable and CI=true: {e}")
            }
            Err(e) => {
                // Not `eprintln!`: the harness hides what a passing test prints that way.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!! SKIPPED {test} on PostgreSQL: unreachable ({e}); with CI=true this fails !!\n"
                );
                return None;
            }
        };
        let mut admin = admin;
        let name = format!("sb_test_{:016x}", rand_u64());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let url = PostgresUrl::parse(&format!("{}/{name}", server())).expect("a postgres URL");
        Some(TestDatabase {
            name,
            settings: DatabaseSettings::postgres(url),
        })
    }

    fn rand_u64() -> u64 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        u64::from_le_bytes(bytes)
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            // Drop runs outside async (also while a failed test unwinds): a thread of its own
            // with a runtime of its own. FORCE ends connections a store left open.
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    let mut admin =
                        PgConnection::connect(&format!("{}/postgres", server())).await?;
                    sqlx::query(&sql).execute(&mut admin).await.map(|_| ())
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop the test database {}", self.name);
            }
        }
    }
}
