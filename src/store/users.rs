//! Known users (the `users` table): every user that ever connected, with what its newest token
//! said. The hub loads the ids at start so that a private message to a user who was seen
//! before (but is offline) is queued, and one to a stranger is refused. The rows are written
//! by the writer's batched upsert (`writer.rs`), one per connection.

use sqlx::SqlitePool;

/// Every user ever seen.
pub(super) async fn known_users(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM users")
        .fetch_all(pool)
        .await
}
