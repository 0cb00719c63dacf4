//! Room membership (the `room_members` table). Membership belongs to the user, not to a
//! connection, so it is stored: the hub loads it at start ([`memberships`]) and the writer
//! records each join and leave ([`join`], [`leave`]). The visibility rule in
//! [`super::messages`] reads this table too, and the replay asks for a reader's rooms
//! ([`of_user`]): a member sees a room's history.

use sqlx::{SqliteConnection, SqlitePool};

/// Every stored room membership `(room, user_id)`.
pub(super) async fn memberships(pool: &SqlitePool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT room, user_id FROM room_members ORDER BY room, user_id")
        .fetch_all(pool)
        .await
}

/// Makes `user_id` a member of `room`; joining twice keeps the first `joined_at`.
pub(super) async fn join(
    conn: &mut SqliteConnection,
    room: &str,
    user_id: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO room_members (room, user_id, joined_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
    )
    .bind(room)
    .bind(user_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the membership of `user_id` in `room`.
pub(super) async fn leave(
    conn: &mut SqliteConnection,
    room: &str,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM room_members WHERE room = ?1 AND user_id = ?2")
        .bind(room)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The rooms `user_id` is a member of now.
pub(super) async fn of_user(pool: &SqlitePool, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room FROM room_members WHERE user_id = ?1 ORDER BY room")
        .bind(user_id)
        .fetch_all(pool)
        .await
}
