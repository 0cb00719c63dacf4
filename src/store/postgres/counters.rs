//! Named counters (the `counters` table) on PostgreSQL; what each counter means is in
//! `../model.rs`, how they move in `../sqlite/counters.rs`. The reservation of message ids is one statement that adds a block to the
//! counter and returns the new bound: atomic under concurrent writers, so nodes sharing the
//! database get disjoint blocks.

use sqlx::PgPool;

use super::super::model::{RESERVED_THROUGH, clamp};
use super::super::sql;

/// Reads a named counter (0 if it was never written).
pub(in crate::store) async fn counter(pool: &PgPool, name: &str) -> Result<u64, sqlx::Error> {
    let value: Option<i64> = sqlx::query_scalar(sql::COUNTER)
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

/// Reserves the next `block` message ids, none at or below `floor`: returns them as
/// `(first, through)`. Whatever other writers reserved is skipped, never shared.
pub(in crate::store) async fn reserve_block<'e, E>(
    executor: E,
    floor: u64,
    block: u64,
) -> Result<(u64, u64), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let through: i64 = sqlx::query_scalar(
        "INSERT INTO counters (name, value) VALUES ($1, $2 + $3)
         ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, $2) + $3
         RETURNING value",
    )
    .bind(RESERVED_THROUGH)
    .bind(clamp(floor))
    .bind(clamp(block))
    .fetch_one(executor)
    .await?;
    let through = through.max(0) as u64;
    Ok((through.saturating_sub(block) + 1, through))
}

/// Raises a named counter to at least `value` (inside the caller's transaction or not).
pub(in crate::store) async fn raise_counter<'e, E>(
    executor: E,
    name: &str,
    value: u64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, excluded.value)",
    )
    .bind(name)
    .bind(clamp(value))
    .execute(executor)
    .await?;
    Ok(())
}

/// The value of counter `name`, set to a random number by the first call that finds none.
pub(in crate::store) async fn identity(pool: &PgPool, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO counters (name, value)
         VALUES ($1, (random() * 9007199254740991)::bigint + 1)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(pool)
    .await?;
    sqlx::query_scalar(sql::COUNTER)
        .bind(name)
        .fetch_one(pool)
        .await
}
