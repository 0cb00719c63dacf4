//! The writer against a real SQLite file and a real PostgreSQL database. Failures are injected
//! with SQL through a second connection (triggers that abort the statement they guard), and
//! each test checks that every write was settled once, with the outcome the attempt that
//! decided it reached. Most run on both backends (`sqlite::` and `postgres::`); the full disk
//! is SQLite's own.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

use super::*;
use crate::config::{DatabaseLocation, DatabaseSettings};
use crate::store::model::{JoinedHow, MessageRecord, RESERVED_THROUGH, Target};
use crate::store::sqlite::chunks::chunk_sizes;
use crate::store::{Backend, Store, StoreError, ids};

/// Long enough for any settled write on a loaded machine; a hang takes longer.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Runs each `async fn name(kind: Kind)` as `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Postgres).await
            })*
        }
    };
}

on_both_backends!(
    a_message_is_acknowledged_as_stored_when_a_later_write_in_its_batch_fails,
    a_poisoned_message_is_reported_not_stored_and_its_batch_mates_are_stored,
    a_failed_message_settles_the_watermark_so_readers_do_not_wait_for_it,
    a_publisher_gets_an_error_instead_of_hanging_when_ids_cannot_be_reserved,
    a_failed_id_reservation_is_asked_again_once_the_database_recovers,
    the_write_health_probe_sees_recovery_without_other_traffic,
    a_receipt_marks_its_delivery_in_its_messages_batch_and_in_a_later_one,
);

/// The second connection, to the same database as the store's.
enum Injector {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// A write that fails once injected, until cured.
#[derive(Debug, Clone, Copy)]
enum Poison {
    /// Inserting a message whose body is `poison`.
    Messages,
    /// Joining the room `poison`.
    Joins,
    /// Raising the id reservation.
    Reservations,
}

impl Poison {
    fn trigger(self) -> (&'static str, &'static str, &'static str) {
        // (name, SQLite condition and table, PostgreSQL condition and table)
        match self {
            Self::Messages => (
                "poison_messages",
                "BEFORE INSERT ON messages WHEN NEW.body = 'poison'",
                "BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.body = 'poison')",
            ),
            Self::Joins => (
                "poison_joins",
                "BEFORE INSERT ON room_members WHEN NEW.room = 'poison'",
                "BEFORE INSERT ON room_members FOR EACH ROW WHEN (NEW.room = 'poison')",
            ),
            Self::Reservations => (
                "poison_reservations",
                "BEFORE UPDATE ON counters WHEN NEW.name = 'message_id_reserved_through'",
                "BEFORE UPDATE ON counters FOR EACH ROW
                 WHEN (NEW.name = 'message_id_reserved_through')",
            ),
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Joins => "room_members",
            Self::Reservations => "counters",
        }
    }
}

/// A store on a database of its own, and a second connection to it to inject failures with.
struct Fixture {
    store: Store,
    sql: Injector,
    _dir: Option<TempDir>,
    _db: Option<crate::store::postgres::testing::TestDatabase>,
}

impl Fixture {
    /// `None` when PostgreSQL is unreachable (outside CI; the helper says so).
    async fn open(kind: Kind, id_block: u64) -> Option<Self> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("writer.db");
                let store = Store::open_with(
                    &DatabaseSettings::at(&path),
                    id_block,
                    crate::metrics::Metrics::shared(),
                    Default::default(),
                )
                .await
                .expect("open the store");
                let sql = Injector::Sqlite(second_connection(&path).await);
                Some(Self {
                    store,
                    sql,
                    _dir: Some(dir),
                    _db: None,
                })
            }
            Kind::Postgres => {
                let test = std::thread::current().name().unwrap_or("writer").to_owned();
                let db = crate::store::postgres::testing::database(&test).await?;
                let store = Store::open_with(
                    &db.settings,
                    id_block,
                    crate::metrics::Metrics::shared(),
                    Default::default(),
                )
                .await
                .expect("open the store");
                let DatabaseLocation::Postgres(url) = &db.settings.location else {
                    unreachable!("a PostgreSQL test database")
                };
                let mut conn = PgConnection::connect(url.expose())
                    .await
                    .expect("a second connection to the database");
                sqlx::query(
                    "CREATE FUNCTION injected() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
                )
                .execute(&mut conn)
                .await
                .expect("the failing trigger function");
                Some(Self {
                    store,
                    sql: Injector::Postgres(conn),
                    _dir: None,
                    _db: Some(db),
                })
            }
        }
    }

    /// Makes the writes `poison` names fail from now on.
    async fn inject(&mut self, poison: Poison) {
        let (name, sqlite, postgres) = poison.trigger();
        match &mut self.sql {
            Injector::Sqlite(conn) => sqlx::query(&format!(
                "CREATE TRIGGER {name} {sqlite} BEGIN SELECT RAISE(ABORT, 'injected'); END"
            ))
            .execute(conn)
            .await
            .map(drop),
            Injector::Postgres(conn) => sqlx::query(&format!(
                "CREATE TRIGGER {name} {postgres} EXECUTE FUNCTION injected()"
            ))
            .execute(conn)
            .await
            .map(drop),
        }
        .expect("inject through the second connection");
    }

    /// Lets the writes `poison` names succeed again.
    async fn cure(&mut self, poison: Poison) {
        let (name, _, _) = poison.trigger();
        match &mut self.sql {
            Injector::Sqlite(conn) => sqlx::query(&format!("DROP TRIGGER {name}"))
                .execute(conn)
                .await
                .map(drop),
            Injector::Postgres(conn) => {
                sqlx::query(&format!("DROP TRIGGER {name} ON {}", poison.table()))
                    .execute(conn)
                    .await
                    .map(drop)
            }
        }
        .expect("cure through the second connection");
    }

    /// The one value of `sql` (`$1` bound to `text`, and `$2` to `number` if given), read on
    /// the second connection.
    async fn scalar<T>(&mut self, sql: &str, text: &str, number: Option<i64>) -> T
    where
        T: Send + Unpin,
        (T,): for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let row: (T,) = match &mut self.sql {
            Injector::Sqlite(conn) => {
                let query = sqlx::query_as(sql).bind(text);
                match number {
                    Some(n) => query.bind(n).fetch_one(conn).await,
                    None => query.fetch_one(conn).await,
                }
            }
            Injector::Postgres(conn) => {
                let query = sqlx::query_as(sql).bind(text);
                match number {
                    Some(n) => query.bind(n).fetch_one(conn).await,
                    None => query.fetch_one(conn).await,
                }
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.0
    }

    /// A message from `alice` with `body`, its id, and the receiver its sender waits on.
    fn message(
        &self,
        body: &str,
        recipient: Option<&str>,
    ) -> (u64, WriteOp, watch::Receiver<Option<bool>>) {
        let id = self.store.allocate_message_id();
        let (tx, rx) = watch::channel(None);
        if let Some(user_id) = recipient {
            // What `Store::log_message` does before it hands the write over.
            self.store.inner.shared.note_queued(user_id);
        }
        let op = WriteOp::Message {
            record: Box::new(MessageRecord {
                id,
                event: "broadcast-message".into(),
                target: recipient.map_or(Target::All, |user_id| Target::User(user_id.into())),
                sender_id: "alice".into(),
                body: body.into(),
                kind: None,
                payload: "{}".into(),
                client_msg_id: None,
                live_recipients: 0,
                // Now, not a fixed date: retention runs at start and deletes old messages.
                created_at: crate::protocol::wire::now(),
                sender_session: None,
            }),
            committed: Some(tx),
            assigned: None,
        };
        (id, op, rx)
    }

    async fn rows_with_body(&mut self, body: &str) -> i64 {
        self.scalar("SELECT COUNT(*) FROM messages WHERE body = $1", body, None)
            .await
    }
}

async fn second_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("a second connection to the database file")
}

/// What the writer told a sender: `Some(stored)`, or `None` if its watcher was dropped
/// unanswered (which `Published::durable` also reads as "not stored").
async fn told(mut rx: watch::Receiver<Option<bool>>) -> Option<bool> {
    let answer = timeout(PROMPTLY, rx.wait_for(Option::is_some))
        .await
        .expect("the writer settles the message within the timeout");
    answer.ok().and_then(|v| *v)
}

#[test]
fn chunks_are_full_then_powers_of_two() {
    assert_eq!(chunk_sizes(0).collect::<Vec<_>>(), Vec::<usize>::new());
    assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), vec![1]);
    assert_eq!(chunk_sizes(300).collect::<Vec<_>>(), vec![256, 32, 8, 4]);
    assert_eq!(chunk_sizes(512).collect::<Vec<_>>(), vec![256, 256]);
}

// The tests below run on tokio's current-thread runtime: writes sent without an `.await`
// between them are all queued before the writer runs, so its `recv_many` takes them as one
// batch.

async fn a_message_is_acknowledged_as_stored_when_a_later_write_in_its_batch_fails(kind: Kind) {
    // Arrange
    let Some(mut f) = Fixture::open(kind, ids::BLOCK).await else {
        return;
    };
    f.inject(Poison::Joins).await;
    let (_, good, good_rx) = f.message("good", None);

    // Act: one batch, whose room join fails after the message was inserted.
    f.store.write(good);
    f.store.room_joined(
        "poison",
        "alice",
        "2024-01-01T00:00:00Z",
        JoinedHow::default(),
    );

    // Assert
    assert_eq!(
        told(good_rx).await,
        Some(true),
        "the sender hears that its message is stored"
    );
    assert_eq!(f.rows_with_body("good").await, 1, "stored exactly once");
}

async fn a_poisoned_message_is_reported_not_stored_and_its_batch_mates_are_stored(kind: Kind) {
    // Arrange
    let Some(mut f) = Fixture::open(kind, ids::BLOCK).await else {
        return;
    };
    f.inject(Poison::Messages).await;
    let (_, first, first_rx) = f.message("first", None);
    let (_, poison, poison_rx) = f.message("poison", Some("bob"));
    let (_, last, last_rx) = f.message("last", None);

    // Act: one batch; its multi-row INSERT fails on the poisoned row.
    f.store.write(first);
    f.store.write(poison);
    f.store.write(last);

    // Assert
    assert_eq!(told(first_rx).await, Some(true));
    assert_eq!(
        told(poison_rx).await,
        Some(false),
        "the poisoned message's sender is answered \"not stored\", not left with a dropped watcher"
    );
    assert_eq!(told(last_rx).await, Some(true));
    assert_eq!(f.rows_with_body("first").await, 1);
    assert_eq!(f.rows_with_body("last").await, 1);
    assert_eq!(f.rows_with_body("poison").await, 0);
    assert_eq!(
        f.store.queued_for("bob"),
        0,
        "a message that was never stored is not in bob's offline queue"
    );
}

async fn a_failed_message_settles_the_watermark_so_readers_do_not_wait_for_it(kind: Kind) {
    // Arrange
    let Some(mut f) = Fixture::open(kind, ids::BLOCK).await else {
        return;
    };
    f.inject(Poison::Messages).await;
    let (id, poison, _poison_rx) = f.message("poison", None);

    // Act: the only message fails; nothing commits after it.
    f.store.write(poison);

    // Assert
    assert!(
        timeout(PROMPTLY, f.store.wait_committed(id)).await.is_ok(),
        "sync and GET /messages wait for the failed id forever"
    );
}

/// Opens a store reserving 8 ids at a time with reservations failing, and allocates until
/// a reservation was requested, failed, and publishers must wait for the next one.
async fn run_out_of_ids_while_reservations_fail(kind: Kind) -> Option<Fixture> {
    let mut f = Fixture::open(kind, 8).await?;
    f.inject(Poison::Reservations).await;
    // Ids 1..=8 are reserved at open; id 5 leaves fewer than 4 and requests more, id 6
    // leaves fewer than 2, where publishers wait.
    for _ in 0..6 {
        f.store.allocate_message_id();
    }
    f.store.flush().await;
    Some(f)
}

async fn a_publisher_gets_an_error_instead_of_hanging_when_ids_cannot_be_reserved(kind: Kind) {
    // Arrange
    let Some(f) = run_out_of_ids_while_reservations_fail(kind).await else {
        return;
    };

    // Act
    let waited = timeout(Duration::from_secs(20), f.store.ensure_id_headroom()).await;

    // Assert
    assert!(
        matches!(waited, Ok(Err(StoreError::IdsUnavailable { .. }))),
        "the publisher waits for ids forever: {waited:?}"
    );
}

async fn a_failed_id_reservation_is_asked_again_once_the_database_recovers(kind: Kind) {
    // Arrange
    let Some(mut f) = run_out_of_ids_while_reservations_fail(kind).await else {
        return;
    };
    f.cure(Poison::Reservations).await;

    // Act
    let waited = timeout(PROMPTLY, f.store.ensure_id_headroom()).await;

    // Assert
    assert!(
        matches!(waited, Ok(Ok(()))),
        "no reservation is asked again: {waited:?}"
    );
    let reserved: i64 = f
        .scalar(
            "SELECT value FROM counters WHERE name = $1",
            RESERVED_THROUGH,
            None,
        )
        .await;
    assert!(reserved > 8, "reserved through {reserved}");
    let (_, next, next_rx) = f.message("after", None);
    f.store.write(next);
    assert_eq!(told(next_rx).await, Some(true), "publishing proceeds");
}

/// Sets `PRAGMA max_page_count` on the writer's connection: SQLite's own way of saying
/// "full" (`SQLITE_FULL`, as on a full disk). The limit holds per connection, and the writer
/// keeps its own. `None` limits the file to the pages it has now.
async fn limit_pages(f: &Fixture, pages: Option<u64>) {
    f.store.flush().await;
    let Backend::Sqlite(pool) = &f.store.inner.backend else {
        unreachable!("the fixture opens a SQLite file")
    };
    let now: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(pool)
        .await
        .expect("page count");
    let limit = pages.unwrap_or(now as u64);
    let (done, limited) = oneshot::channel();
    f.store.write(WriteOp::OnWriterConnection {
        sql: format!("PRAGMA max_page_count = {limit}"),
        done,
    });
    timeout(PROMPTLY, limited)
        .await
        .expect("the writer runs the pragma within the timeout")
        .expect("the writer answers");
}

#[tokio::test]
async fn a_full_database_answers_not_stored_reports_failing_and_recovers_when_space_returns() {
    // Arrange: a body that needs new pages, and a file that may not grow.
    let Some(f) = Fixture::open(Kind::Sqlite, ids::BLOCK).await else {
        return;
    };
    let big = "x".repeat(256 * 1024);
    limit_pages(&f, None).await;

    // Act
    let (_, full, full_rx) = f.message(&big, None);
    f.store.write(full);

    // Assert: a real SQLITE_FULL is answered "not stored" and reported.
    assert_eq!(told(full_rx).await, Some(false), "never a false ok");
    let health = f.store.last_write_health();
    assert!(!health.is_ok(), "{health:?}");
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("full")),
        "{health:?}"
    );

    // Act: space returns, without reopening anything.
    limit_pages(&f, Some(1 << 30)).await;
    let (_, again, again_rx) = f.message(&big, None);
    f.store.write(again);

    // Assert
    assert_eq!(
        told(again_rx).await,
        Some(true),
        "stored once space is back"
    );
    assert!(f.store.last_write_health().is_ok());
}

async fn the_write_health_probe_sees_recovery_without_other_traffic(kind: Kind) {
    // Arrange: one failed message, then the cause removed.
    let Some(mut f) = Fixture::open(kind, ids::BLOCK).await else {
        return;
    };
    f.inject(Poison::Messages).await;
    let (_, poison, poison_rx) = f.message("poison", None);
    f.store.write(poison);
    assert_eq!(told(poison_rx).await, Some(false));
    assert!(!f.store.last_write_health().is_ok());

    // Act
    let health = timeout(PROMPTLY, f.store.write_health()).await;

    // Assert: the probe committed, so the store reports ok again.
    assert_eq!(health.map(|h| h.is_ok()), Ok(true));
}

async fn delivered_at(f: &mut Fixture, user_id: &str, id: u64) -> Option<String> {
    f.scalar(
        "SELECT delivered_at FROM deliveries WHERE user_id = $1 AND message_id = $2",
        user_id,
        Some(id as i64),
    )
    .await
}

async fn a_receipt_marks_its_delivery_in_its_messages_batch_and_in_a_later_one(kind: Kind) {
    // Arrange
    let Some(mut f) = Fixture::open(kind, ids::BLOCK).await else {
        return;
    };
    let (folded, message, folded_rx) = f.message("folded", Some("bob"));

    // Act: the message and its receipt in one batch.
    f.store.write(message);
    f.store.delivered("bob", vec![folded]);

    // Assert
    assert_eq!(told(folded_rx).await, Some(true));
    f.store.flush().await;
    assert!(delivered_at(&mut f, "bob", folded).await.is_some());
    assert_eq!(f.store.queued_for("bob"), 0, "counted as delivered once");

    // Act: a receipt in a batch after its message's.
    let (later, message, later_rx) = f.message("later", Some("bob"));
    f.store.write(message);
    assert_eq!(told(later_rx).await, Some(true));
    assert_eq!(f.store.queued_for("bob"), 1);
    f.store.delivered("bob", vec![later, folded]);
    f.store.flush().await;

    // Assert: marked; the receipt repeated for the first one changes nothing.
    assert!(delivered_at(&mut f, "bob", later).await.is_some());
    assert_eq!(f.store.queued_for("bob"), 0);
}
