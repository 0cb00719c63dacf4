//! Known users and token revocations on PostgreSQL; see `../sqlite/users.rs`.

use sqlx::{PgConnection, PgPool};

use super::super::sql;

/// Every user ever seen.
pub(in crate::store) async fn known_users(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(sql::KNOWN_USERS).fetch_all(pool).await
}

/// Every revocation, `(user_id, not_before)`.
pub(in crate::store) async fn token_revocations(
    pool: &PgPool,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(sql::TOKEN_REVOCATIONS).fetch_all(pool).await
}

/// Refuses `user_id`'s tokens issued before `not_before`; a bound already later is kept.
pub(in crate::store) async fn revoke_tokens(
    conn: &mut PgConnection,
    user_id: &str,
    not_before: u64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO token_revocations (user_id, not_before, revoked_at) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET
             not_before = GREATEST(token_revocations.not_before, excluded.not_before),
             revoked_at = excluded.revoked_at",
    )
    .bind(user_id)
    .bind(i64::try_from(not_before).unwrap_or(i64::MAX))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}
