//! Named counters (the `counters` table) on SQLite: single numbers that must survive a
//! restart, named in `../model.rs` (how far message ids are reserved, the highest id
//! retention deleted). A counter only ever rises, so a late or repeated write cannot move it
//! back. One more lives only in backup copies (`backup_taken_at_ms`, see [`super::backup`])
//! and is removed once the restored copy's ids have moved past it.

use sqlx::SqlitePool;

use super::super::sql;

/// Reads a named counter (0 if it was never written).
pub(in crate::store) async fn counter(pool: &SqlitePool, name: &str) -> Result<u64, sqlx::Error> {
    let value: Option<i64> = sqlx::query_scalar(sql::COUNTER)
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

/// Raises a named counter to at least `value` (inside the caller's transaction or not).
pub(in crate::store) async fn raise_counter<'e, E>(
    executor: E,
    name: &str,
    value: u64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
    )
    .bind(name)
    .bind(value.min(i64::MAX as u64) as i64)
    .execute(executor)
    .await?;
    Ok(())
}

/// Removes a named counter: only for the backup marker, once acted on.
pub(in crate::store) async fn forget_counter(
    pool: &SqlitePool,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM counters WHERE name = ?1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}
