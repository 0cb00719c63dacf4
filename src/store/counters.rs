//! Named counters (the `counters` table): single numbers that must survive a restart. Two
//! exist: how far message ids are reserved ([`RESERVED_THROUGH`], see [`super::ids`]) and the
//! highest id retention deleted ([`PRUNED_THROUGH`], so that `sync` can say history is
//! incomplete). A counter only ever rises, so a late or repeated write cannot move it back.
//! A third lives only in backup copies (`backup_taken_at_ms`, see [`super::backup`]) and is
//! removed once the restored copy's ids have moved past it.

use sqlx::SqlitePool;

/// Counter name: ids reserved so far.
pub(super) const RESERVED_THROUGH: &str = "message_id_reserved_through";
/// Counter name: the highest id retention deleted.
pub(super) const PRUNED_THROUGH: &str = "pruned_through_message_id";

/// Reads a named counter (0 if it was never written).
pub(super) async fn counter(pool: &SqlitePool, name: &str) -> Result<u64, sqlx::Error> {
    let value: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE name = ?1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

/// Raises a named counter to at least `value` (inside the caller's transaction or not).
pub(super) async fn raise_counter<'e, E>(
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
pub(super) async fn forget_counter(pool: &SqlitePool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM counters WHERE name = ?1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}
