//! Room membership (the `room_members` table). Membership belongs to the user, not to a
//! connection, so it is stored: the hub loads it at start ([`memberships`]) and the writer
//! records each join and leave ([`join`], [`leave`]). The visibility rule in
//! [`super::messages`] reads this table too, and the replay asks for a reader's rooms
//! ([`of_user`]): a member sees a room's history from its `history_from` on (all of it when
//! NULL), unless the access rules make the room unreadable to it now.

use sqlx::{SqliteConnection, SqlitePool};

use super::super::model::{JoinedHow, StoredMembership};
use super::super::sql;

/// Every stored room membership.
pub(in crate::store) async fn memberships(
    pool: &SqlitePool,
) -> Result<Vec<StoredMembership>, sqlx::Error> {
    sqlx::query_as(sql::MEMBERSHIPS).fetch_all(pool).await
}

/// Makes `user_id` a member of `room` as `how` says; joining twice keeps the first
/// `joined_at` and `history_from` and ORs `by_server`. Returns whether the membership is new.
pub(in crate::store) async fn join(
    conn: &mut SqliteConnection,
    room: &str,
    user_id: &str,
    at: &str,
    how: &JoinedHow,
) -> Result<bool, sqlx::Error> {
    let joined_at: Option<String> = sqlx::query_scalar(sql::JOIN_ROOM)
        .bind(room)
        .bind(user_id)
        .bind(at)
        .bind(how.by_server)
        .bind(how.history_from.as_deref())
        .fetch_optional(conn)
        .await?;
    Ok(joined_at.is_some_and(|first| first == at))
}

/// Ends the membership of `user_id` in `room`; returns whether there was one.
pub(in crate::store) async fn leave(
    conn: &mut SqliteConnection,
    room: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(sql::LEAVE_ROOM)
        .bind(room)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A room whose messages a reader may see, and from when.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(in crate::store) struct ReadableRoom {
    pub room: String,
    /// Only messages created at or after this (`room_members.history_from`); `None`: all.
    pub history_from: Option<String>,
}

/// The rooms `user_id` is a member of now, but those in `unreadable` (the access rules no
/// longer let it read them), each with where its readable history starts.
pub(in crate::store) async fn of_user(
    pool: &SqlitePool,
    user_id: &str,
    unreadable: &[String],
) -> Result<Vec<ReadableRoom>, sqlx::Error> {
    let mut rooms: Vec<ReadableRoom> = sqlx::query_as(
        "SELECT room, history_from FROM room_members WHERE user_id = ?1 ORDER BY room",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rooms.retain(|r| !unreadable.contains(&r.room));
    Ok(rooms)
}

#[cfg(test)]
mod tests {
    use crate::config::DatabaseSettings;
    use crate::store::{JoinedHow, Store, StoredMembership};

    #[tokio::test]
    async fn a_repeated_join_keeps_the_first_history_start_and_a_server_add_sticks() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        repeated_joins(&DatabaseSettings::at(dir.path().join("joins.db"))).await;
    }

    #[tokio::test]
    async fn a_repeated_join_keeps_the_first_history_start_and_a_server_add_sticks_on_postgres() {
        let name = "a_repeated_join_keeps_the_first_history_start_and_a_server_add_sticks_on_pg";
        if let Some(db) = crate::store::postgres::testing::database(name).await {
            repeated_joins(&db.settings).await;
        }
    }

    async fn repeated_joins(settings: &DatabaseSettings) {
        // Arrange
        let store = Store::open(settings, crate::metrics::Metrics::shared())
            .await
            .expect("open the store");
        let how = |by_server, history_from: Option<&str>| JoinedHow {
            by_server,
            history_from: history_from.map(String::from),
        };
        let (t1, t2, t3) = (
            "2026-01-01T00:00:01.000Z",
            "2026-01-01T00:00:02.000Z",
            "2026-01-01T00:00:03.000Z",
        );

        // Act: bob joins by himself reading from t1, is added by the application reading
        // from t2, then joins by himself again; carol is added once, with all the history.
        store.room_joined("ops", "bob", t1, how(false, Some(t1)));
        store.room_joined("ops", "bob", t2, how(true, Some(t2)));
        store.room_joined("ops", "bob", t3, how(false, None));
        store.room_joined("ops", "carol", t1, how(true, None));
        store.room_joined("lobby", "bob", t3, how(false, None));
        store.flush().await;
        let live = store.load_live_state().await.expect("load the live state");

        // Assert
        let member =
            |room: &str, user: &str, at: &str, by_server, from: Option<&str>| StoredMembership {
                room: room.into(),
                user_id: user.into(),
                joined_at: at.into(),
                by_server,
                history_from: from.map(String::from),
            };
        assert_eq!(
            live.memberships,
            [
                member("lobby", "bob", t3, false, None),
                member("ops", "bob", t1, true, Some(t1)),
                member("ops", "carol", t1, true, None),
            ],
            "first joined_at and history_from kept, by_server true once any join said so"
        );
        store.close().await;
    }
}
