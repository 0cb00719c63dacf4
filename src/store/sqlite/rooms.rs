//! Room membership (the `room_members` table). Membership belongs to the user, not to a
//! connection, so it is stored: the hub loads it at start ([`memberships`]) and the writer
//! records each join and leave ([`join`], [`leave`]). The visibility rule in
//! [`super::messages`] reads this table too, and the replay asks for a reader's rooms
//! ([`of_user`]): a member sees a room's history.

use sqlx::{SqliteConnection, SqlitePool};

use super::super::sql;

/// Every stored room membership `(room, user_id)`.
pub(in crate::store) async fn memberships(
    pool: &SqlitePool,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(sql::MEMBERSHIPS).fetch_all(pool).await
}

/// Makes `user_id` a member of `room`; joining twice keeps the first `joined_at`.
pub(in crate::store) async fn join(
    conn: &mut SqliteConnection,
    room: &str,
    user_id: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::JOIN_ROOM)
        .bind(room)
        .bind(user_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends the membership of `user_id` in `room`.
pub(in crate::store) async fn leave(
    conn: &mut SqliteConnection,
    room: &str,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::LEAVE_ROOM)
        .bind(room)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The rooms `user_id` is a member of now.
pub(in crate::store) async fn of_user(
    pool: &SqlitePool,
    user_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room FROM room_members WHERE user_id = ?1 ORDER BY room")
        .bind(user_id)
        .fetch_all(pool)
        .await
}
