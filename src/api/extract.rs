//! Extractors: who is calling ([`Caller`], [`Admin`]), a JSON body whose every rejection is
//! a JSON error ([`ApiJson`]), and the `Idempotency-Key` header ([`IdempotencyKey`]).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::Identity;
use crate::protocol::payloads::{ClientMsgId, MAX_CLIENT_MSG_ID_CHARS};

/// An authenticated caller (`Authorization: Bearer <jwt>`; 401 otherwise).
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        app.verifier
            .authenticate(None, &parts.headers, None)
            .map(Caller)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
    }
}

impl Caller {
    /// Whether the caller's role is one of `ADMIN_ROLES`.
    pub fn is_admin(&self, app: &AppState) -> bool {
        app.settings
            .admin_roles
            .iter()
            .any(|r| r.as_str() == &*self.0.role)
    }

    /// Allows an admin, or the user `user_id` themselves; 403 for anyone else.
    pub fn require_admin_or(&self, app: &AppState, user_id: &str) -> Result<(), ApiError> {
        if self.is_admin(app) || &*self.0.user_id == user_id {
            Ok(())
        } else {
            Err(forbidden(app, &self.0))
        }
    }
}

fn forbidden(app: &AppState, who: &Identity) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "role {:?} may not do this; it needs one of ADMIN_ROLES ({})",
            who.role,
            app.settings.admin_roles.join(", ")
        ),
    )
}

/// A caller whose role is in `ADMIN_ROLES` (401 without a token, 403 with another role).
#[derive(Debug, Clone)]
pub struct Admin(pub Identity);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, app).await?;
        if caller.is_admin(app) {
            Ok(Admin(caller.0))
        } else {
            Err(forbidden(app, &caller.0))
        }
    }
}

/// A JSON body: 415 without `Content-Type: application/json`, 413 over `MAX_BODY_BYTES`,
/// 400 naming the problem for anything unreadable.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with Content-Type: application/json",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::bad_request(format!(
                "invalid body: {}",
                e.body_text().trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            ))),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::bad_request(format!(
                "body is not valid JSON: {}",
                e.body_text()
                    .trim_start_matches("Failed to parse the request body as JSON: ")
            ))),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large (see MAX_BODY_BYTES)",
            )),
            Err(e) => Err(ApiError::new(e.status(), e.body_text())),
        }
    }
}

/// Query parameters, 400 naming the problem when unreadable.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(format!("invalid query: {}", e.body_text()))
            })
    }
}

/// The optional `Idempotency-Key` header (1 to 128 characters).
pub struct IdempotencyKey(pub Option<ClientMsgId>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
        ClientMsgId::parse(value)
            .map(|k| Self(Some(k)))
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be 1 to 128 characters"))
    }
}

/// The header as an OpenAPI parameter, so `#[utoipa::path(params(IdempotencyKey))]` documents
/// it from the same limit the extractor enforces.
impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_CLIENT_MSG_ID_CHARS));
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "A retry with the same key from the same caller returns the original \
                     result (with duplicate: true) instead of sending again.",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}
