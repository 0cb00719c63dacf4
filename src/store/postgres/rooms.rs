//! Room membership (the `room_members` table) on PostgreSQL; see `../rooms.rs`. A reader's
//! rooms are not read here for the replay: its statement joins them itself.

use sqlx::{PgConnection, PgPool};

/// Every stored room membership `(room, user_id)`.
pub(in crate::store) async fn memberships(
    pool: &PgPool,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT room, user_id FROM room_members ORDER BY room, user_id")
        .fetch_all(pool)
        .await
}

/// Makes `user_id` a member of `room`; joining twice keeps the first `joined_at`.
pub(in crate::store) async fn join(
    conn: &mut PgConnection,
    room: &str,
    user_id: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO room_members (room, user_id, joined_at) VALUES ($1, $2, $3)
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
pub(in crate::store) async fn leave(
    conn: &mut PgConnection,
    room: &str,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM room_members WHERE room = $1 AND user_id = $2")
        .bind(room)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
