//! The replay behind `sync` and a connection's catch-up on SQLite: one page of what a reader may see,
//! oldest first. A catch-up reads page after page of a log that can hold millions of rows,
//! so a page must cost the same whatever lies before or after it. One `OR` over the
//! visibility rule cannot do that (SQLite walks every row past the cursor and filters), so
//! the visibility rule (`../sql.rs`) is split here into one arm per way a message reaches the
//! reader: public, to it, private from it, its role, each of its rooms, its offline queue.
//! Each arm is an equality on an index plus a range on the id; SQLite runs a compound SELECT
//! with ORDER BY as a merge of the arms in id order and stops after `limit` rows, so a page
//! reads about `limit` index entries plus one per arm. The arms must say exactly what
//! `visible_to_reader` says: the tests of `messages.rs` compare the two on every kind of
//! message, and the tests here check with `EXPLAIN QUERY PLAN` that no arm scans a table.
//!
//! A room arm is for a room the reader may read now (`rooms::of_user` leaves out the
//! unreadable ones) and bounds it by the membership's `history_from`: `created_at >=` it,
//! a filter on the rows the arm's index range already walks, not a bound of the range.
//! So a member who joined long after a room began walks the room's pre-join rows on a
//! catch-up from before the join, reading each row's `created_at` to skip it: a page's arm
//! walks those still past the cursor up to the room's first readable row, so while other
//! arms fill the pages, each page walks them again until the cursor passes them (at worst
//! pages × pre-join rows; once per catch-up when the room's rows fill the pages). Accepted
//! because the cheaper bound, the last id at the join, would be wrong in a cluster: ids are
//! not time-ordered across nodes (each reserves its own blocks), so a message created after
//! the join can carry a lower id than one created before it. Once a client's cursor is past
//! the join, the pre-join rows are below every arm's range and cost nothing.

use sqlx::SqlitePool;

use super::super::model::{ReplayPage, StoredMessage, clamp, replayed};
use super::rooms::{self, ReadableRoom};

/// Room arms per statement. SQLite refuses compound SELECTs of more than 500 arms, and a
/// statement's text (hence the prepared-statement cache) grows with them; a reader in more
/// rooms (`MAX_ROOMS_PER_USER` above this) gets one more statement per this many rooms, each
/// still bounded by the page size, merged here.
const ROOM_ARMS_PER_STATEMENT: usize = 200;

/// The arms, by the parameters every statement binds: `?1` reader, `?2` its role, `?3` the
/// bound of the visible arms (the larger of cursor and `since`), `?4` the cursor, `?5` until,
/// `?6` the limit; each room arm binds two from `?7` on, its room and its `history_from`.
/// `target IS NULL` for public messages is what the index holds them under (a public message
/// never has a target).
const PUBLIC_ARM: &str = "SELECT message_id FROM messages
    WHERE target_kind = 'all' AND target IS NULL AND message_id > ?3 AND message_id <= ?5";
/// Every message to a user has its delivery row, delivered or not: the messages to the reader
/// are its rows of `deliveries` (its primary key), which spares `messages` an index by user.
const TO_READER_ARM: &str = "SELECT message_id FROM deliveries
    WHERE user_id = ?1 AND message_id > ?3 AND message_id <= ?5";
/// Only `private-message`: a notification to a user is not replayed to whoever sent it.
const SENT_PRIVATE_ARM: &str = "SELECT message_id FROM messages
    WHERE sender_id = ?1 AND target_kind = 'user' AND event = 'private-message'
      AND message_id > ?3 AND message_id <= ?5";
const ROLE_ARM: &str = "SELECT message_id FROM messages
    WHERE target_kind = 'role' AND target = ?2 AND message_id > ?3 AND message_id <= ?5";
/// The offline queue, from the cursor (not from `since`: a queued message is delivered
/// whatever the client says it saw). Left to itself the planner prefers the primary key,
/// which also walks the reader's delivered rows; the partial index holds only pending ones.
const QUEUED_ARM: &str = "SELECT message_id FROM deliveries INDEXED BY deliveries_pending
    WHERE user_id = ?1 AND delivered_at IS NULL AND message_id > ?4 AND message_id <= ?5";

/// Which arms a statement holds.
#[derive(Debug, Clone, Copy)]
struct Arms {
    /// Public, to the reader, private from it, its role.
    visible: bool,
    /// The offline queue.
    queued: bool,
    /// Room arms, one per room, each binding its room and its `history_from` from `?7` on.
    rooms: usize,
}

impl Arms {
    fn is_empty(self) -> bool {
        !self.visible && !self.queued && self.rooms == 0
    }

    /// The statement: the arms' ids merged in order (UNION also drops the ids two arms share,
    /// such as a private message to oneself), the page cut, then the rows by primary key.
    fn statement(self) -> String {
        let mut arms: Vec<String> = Vec::new();
        if self.visible {
            arms.extend([PUBLIC_ARM, TO_READER_ARM, SENT_PRIVATE_ARM, ROLE_ARM].map(String::from));
        }
        // The same text whether a room has a `history_from` or not (NULL turns the filter
        // off), so that the statement cache holds one statement per number of rooms.
        arms.extend((0..self.rooms).map(|i| {
            let (room, from) = (7 + 2 * i, 8 + 2 * i);
            format!(
                "SELECT message_id FROM messages
    WHERE target_kind = 'room' AND target = ?{room} AND message_id > ?3 AND message_id <= ?5
      AND (?{from} IS NULL OR created_at >= ?{from})"
            )
        }));
        if self.queued {
            arms.push(QUEUED_ARM.to_owned());
        }
        format!(
            "SELECT m.message_id, m.event, m.payload, (m.target_kind = 'user' AND m.target = ?1)
             FROM ({} ORDER BY 1 LIMIT ?6) AS page
             JOIN messages m ON m.message_id = page.message_id
             ORDER BY m.message_id",
            arms.join("\nUNION\n")
        )
    }
}

/// One page of replay, oldest first, ids in `(cursor, until]`.
pub(in crate::store) async fn replay_page(
    pool: &SqlitePool,
    page: ReplayPage<'_>,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    // The rooms it is a member of now and may read: joining a room opens its history (from
    // `history_from`), leaving closes it, and so does losing access while a member.
    let rooms = match page.since {
        Some(_) => rooms::of_user(pool, page.reader.user_id, page.reader.unreadable).await?,
        None => Vec::new(),
    };
    let mut chunks = rooms.chunks(ROOM_ARMS_PER_STATEMENT);
    let first_rooms = chunks.next().unwrap_or_default();
    let first = Arms {
        visible: page.since.is_some(),
        queued: page.undelivered,
        rooms: first_rooms.len(),
    };
    let mut rows = run(pool, page, first, first_rooms).await?;
    let mut merged = false;
    for chunk in chunks {
        let arms = Arms {
            visible: false,
            queued: false,
            rooms: chunk.len(),
        };
        rows.extend(run(pool, page, arms, chunk).await?);
        merged = true;
    }
    if merged {
        rows.sort_unstable_by_key(|m| m.id);
        rows.dedup_by_key(|m| m.id);
        rows.truncate(page.limit as usize);
    }
    Ok(rows)
}

/// Runs one statement of `arms` for `page`, binding `rooms` to its room arms.
async fn run(
    pool: &SqlitePool,
    page: ReplayPage<'_>,
    arms: Arms,
    rooms: &[ReadableRoom],
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    if arms.is_empty() {
        return Ok(Vec::new());
    }
    let sql = arms.statement();
    let visible_after = page.visible_after().map(clamp);
    let mut query = sqlx::query_as::<_, (i64, String, String, bool)>(&sql)
        .bind(page.reader.user_id)
        .bind(page.reader.role)
        .bind(visible_after)
        .bind(clamp(page.cursor))
        .bind(clamp(page.until))
        .bind(i64::from(page.limit));
    for room in rooms {
        query = query.bind(&room.room).bind(&room.history_from);
    }
    Ok(replayed(query.fetch_all(pool).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSettings;
    use crate::protocol::payloads::RoomName;
    use crate::store::{JoinedHow, MessageRecord, Reader, Store, Target};

    /// A public (`None`) or room message, as the hub would log it.
    fn record(id: u64, room: Option<&str>) -> MessageRecord {
        let (event, target) = match room {
            Some(room) => (
                "room-message",
                Target::Room(RoomName::parse(room).expect("a room name")),
            ),
            None => ("broadcast-message", Target::All),
        };
        MessageRecord {
            id,
            event: event.into(),
            target,
            sender_id: "alice".into(),
            body: format!("m{id}"),
            kind: None,
            payload: "{}".into(),
            client_msg_id: None,
            live_recipients: 0,
            // Now, not a fixed date: retention runs at start and deletes old messages.
            created_at: crate::protocol::wire::now(),
            sender_session: None,
        }
    }

    #[tokio::test]
    async fn a_reader_in_more_rooms_than_one_statement_holds_pages_through_all_in_order() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        pages_through_rooms(&DatabaseSettings::at(dir.path().join("rooms.db"))).await;
    }

    #[tokio::test]
    async fn a_reader_in_many_rooms_pages_through_all_in_order_on_postgres() {
        let name = "a_reader_in_many_rooms_pages_through_all_in_order_on_postgres";
        if let Some(db) = crate::store::postgres::testing::database(name).await {
            pages_through_rooms(&db.settings).await;
        }
    }

    async fn pages_through_rooms(settings: &DatabaseSettings) {
        // Arrange: bob in more rooms than one statement's arms, messages spread over them
        // (and over a room he is not in, and public ones) in an order unrelated to the rooms.
        let store = Store::open(settings, crate::metrics::Metrics::shared())
            .await
            .expect("open the store");
        let rooms = ROOM_ARMS_PER_STATEMENT + 7;
        for r in 0..rooms {
            let how = JoinedHow::default();
            store.room_joined(&format!("r{r}"), "bob", "2024-01-01T00:00:00Z", how);
        }
        let mut visible = Vec::new();
        for n in 0..3 * rooms {
            let room = match n % 10 {
                0 => None,
                3 => Some("not-his".to_owned()),
                _ => Some(format!("r{}", (n * 37) % rooms)),
            };
            let id = store.allocate_message_id();
            let _ = store.log_message(record(id, room.as_deref()));
            if room.as_deref() != Some("not-his") {
                visible.push(id);
            }
        }
        let until = store.read_horizon().await;
        let bob = Reader {
            user_id: "bob",
            role: "USER",
            unreadable: &[],
        };

        // Act: pages of 7, as a client would ask for them.
        let mut replayed = Vec::new();
        let mut pages = 0;
        loop {
            let page = store
                .replay_page(ReplayPage {
                    reader: bob,
                    since: Some(0),
                    undelivered: false,
                    cursor: replayed.last().copied().unwrap_or(0),
                    until,
                    limit: 7,
                })
                .await
                .expect("replay");
            pages += 1;
            assert!(page.len() <= 7, "a page longer than its limit");
            replayed.extend(page.iter().map(|m| m.id));
            if page.len() < 7 {
                break;
            }
        }

        // Assert
        assert_eq!(
            replayed, visible,
            "every message of his rooms, once, in id order"
        );
        assert_eq!(pages, visible.len() / 7 + 1);
        store.close().await;
    }

    /// The plan of every shape of the statement: each arm must be a SEARCH on an index (an
    /// equality plus the id range), never a SCAN of `messages` or `deliveries`, and no arm
    /// may sort (the merge relies on each arm coming in id order).
    #[tokio::test]
    async fn every_arm_is_an_index_range_and_none_sorts() {
        // Arrange
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(
            &DatabaseSettings::at(dir.path().join("plan.db")),
            crate::metrics::Metrics::shared(),
        )
        .await
        .expect("open the store");
        let crate::store::Backend::Sqlite(pool) = &store.inner.backend else {
            unreachable!("opened on a SQLite file")
        };
        let shapes = [
            Arms {
                visible: true,
                queued: true,
                rooms: 3,
            },
            Arms {
                visible: false,
                queued: true,
                rooms: 0,
            },
            Arms {
                visible: false,
                queued: false,
                rooms: ROOM_ARMS_PER_STATEMENT,
            },
        ];
        for arms in shapes {
            // Act
            let sql = format!("EXPLAIN QUERY PLAN {}", arms.statement());
            let mut explain = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql)
                .bind("bob")
                .bind("USER")
                .bind(0_i64)
                .bind(0_i64)
                .bind(100_i64)
                .bind(10_i64);
            // Every other room read from a point in its history.
            for i in 0..arms.rooms {
                let from = (i % 2 == 0).then_some("2026-11-28T00:00:00.000Z");
                explain = explain.bind(format!("room{i}")).bind(from);
            }
            let plan: Vec<String> = explain
                .fetch_all(pool)
                .await
                .expect("explain")
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect();

            // Assert
            let searches = plan.iter().filter(|l| l.starts_with("SEARCH")).count();
            let expected = 4 * usize::from(arms.visible) + usize::from(arms.queued) + arms.rooms;
            // One more SEARCH: the outer join fetching the page's rows by primary key.
            assert_eq!(searches, expected + 1, "{arms:?}: {plan:#?}");
            for line in plan.iter().filter(|l| l.starts_with("SEARCH")) {
                assert!(
                    // `deliveries`' primary key (WITHOUT ROWID) is an index too.
                    (line.contains("INDEX") || line.contains("USING PRIMARY KEY"))
                        && line.contains("message_id>?")
                        || line.contains("INTEGER PRIMARY KEY (rowid=?)"),
                    "{arms:?}: not an index range: {line}"
                );
            }
            // The only SCAN is of the page itself, at most `limit` rows.
            assert!(
                plan.iter()
                    .all(|l| !l.starts_with("SCAN") || l == "SCAN page"),
                "{arms:?}: a table scan: {plan:#?}"
            );
            // The one sort allowed is the outer ORDER BY over the page's own rows, after
            // the merge cut it to `limit`.
            let sorts = plan.iter().filter(|l| l.contains("TEMP B-TREE")).count();
            assert!(sorts <= 1, "{arms:?}: an arm sorts: {plan:#?}");
        }
        store.close().await;
    }
}
