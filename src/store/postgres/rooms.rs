//! Room membership (the `room_members` table) on PostgreSQL; see `../sqlite/rooms.rs`. A reader's
//! rooms are not read here for the replay: its statement joins them itself.

use sqlx::{PgConnection, PgPool};

use super::super::model::{JoinedHow, StoredMembership};
use super::super::sql;

/// Every stored room membership.
pub(in crate::store) async fn memberships(
    pool: &PgPool,
) -> Result<Vec<StoredMembership>, sqlx::Error> {
    sqlx::query_as(sql::MEMBERSHIPS).fetch_all(pool).await
}

/// Makes `user_id` a member of `room` as `how` says; joining twice keeps the first
/// `joined_at` and `history_from` and ORs `by_server`. Returns whether the membership is new.
pub(in crate::store) async fn join(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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
