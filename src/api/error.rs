//! [`ApiError`]: every REST failure as a status and `{"error": "...", "code"?: "..."}`
//! ([`ErrorBody`]) naming the problem. Internal causes are logged where they happen; only the
//! safe message goes out.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::commands::CommandError;
use crate::hub::HubError;

/// A REST failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
    /// The stable code, when the refusal came from a command (`queue_full`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// Any status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 503 for a store that could not be read or written.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; try again",
        )
    }
}

/// The body of every refusal: what went wrong, and the stable code when there is one.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// What went wrong, for a person; it names the field or rule. It may be reworded: match
    /// on `code`.
    pub error: &'a str,
    /// The stable snake_case code of a refusal that came from a command (`queue_full`,
    /// `not_stored`, ...; the README lists them). Absent for refusals of the HTTP layer
    /// (token, role, body, query).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub code: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            code: self.code,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let status = match &e {
            CommandError::Protocol(_)
            | CommandError::UnknownEvent(_)
            | CommandError::BinaryFrame => StatusCode::BAD_REQUEST,
            CommandError::Hub(HubError::QueueFull { .. }) | CommandError::RateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            CommandError::Hub(HubError::UnknownUser(_)) => StatusCode::NOT_FOUND,
            CommandError::Hub(HubError::NotMember(_) | HubError::TooManyRooms(_)) => {
                StatusCode::CONFLICT
            }
            CommandError::Hub(HubError::SessionGone) => StatusCode::GONE,
            // Client events only; a REST caller's token is refused with 401 by `Caller`.
            CommandError::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            CommandError::WrongSubject | CommandError::Hub(HubError::Forbidden(_)) => {
                StatusCode::FORBIDDEN
            }
            CommandError::NotStored
            | CommandError::StoreUnavailable
            | CommandError::CatchUpFailed
            | CommandError::HookUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            code: Some(e.code()),
            ..Self::new(status, e.to_string())
        }
    }
}
