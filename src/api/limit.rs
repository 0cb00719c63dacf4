//! The `?limit=` of the list endpoints: its bounds, the check every handler applies, and the
//! schema the OpenAPI document shows, from the same two numbers.

use utoipa::openapi::{Object, ObjectBuilder, Type};

use super::error::ApiError;

/// Default and largest `limit` of the list endpoints.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The limit asked for, or the default; a number out of bounds is refused by name.
pub(super) fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// `?limit=` of the list endpoints, from the limits [`check_limit`] enforces.
pub(super) fn limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .description(Some(format!(
            "How many at most (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT})."
        )))
        .build()
}
