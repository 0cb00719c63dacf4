//! The OpenAPI 3 document, derived rather than written: each handler carries its
//! `#[utoipa::path]` (summary, parameters, responses), each body type derives `ToSchema` (doc
//! comments become descriptions), and [`super::router`] registers handler and path item
//! together, so a route cannot be served undocumented or documented unserved.
//!
//! What is declared here: the info block and the security schemes ([`ApiDoc`]), the refusal
//! sets the handlers list (each a status, when it happens, and the [`ErrorBody`] schema), the
//! schemas whose limits come from our constants, and `GET /websocket/openapi.json`, which
//! serves the document. `docs/openapi.json` is a checked-in copy for readers and tools; a
//! test fails when it differs (`UPDATE_OPENAPI=1 cargo test openapi` rewrites it).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Object, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use crate::protocol::payloads::MAX_NOTIFICATION_TYPE_CHARS;

/// What the routes do not say: the info block, the security scheme every `/websocket/`
/// route needs (the open ones say `security()`), the tags, and the error schema the refusal
/// sets refer to.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard REST API",
        description = "Management API of the switchboard real-time gateway. Every endpoint \
            under /websocket/ needs Authorization: Bearer <jwt>; POST endpoints need a role \
            listed in ADMIN_ROLES. Errors are JSON: {\"error\": \"...\"}, with a stable \
            snake_case \"code\" beside it when the refusal has one."
    ),
    security(("bearer" = [])),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody)),
    tags(
        (name = "presence", description = "Who is online, and statistics"),
        (name = "notifications", description = "Notifications sent by a back-end (admins)"),
        (name = "users", description = "One user's sessions and offline queue"),
        (name = "messages", description = "The stored message history"),
        (name = "rooms", description = "Room members the application adds and removes (admins)"),
        (name = "admin", description = "The operator dashboard's live data (admins)"),
        (name = "webhooks", description = "Webhook endpoints, their health and failed events (admins)"),
        (name = "operations", description = "Health checks, metrics and this document; no JWT"),
    )
)]
pub(super) struct ApiDoc;

/// Adds the security schemes: `bearer` (a JWT in `Authorization: Bearer`), and
/// `metricsToken` (`METRICS_TOKEN`, the only credential of `GET /metrics`).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        let metrics = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "METRICS_TOKEN, for GET /metrics when that setting is set",
            ))
            .build();
        components.add_security_scheme("metricsToken", SecurityScheme::Http(metrics));
    }
}

/// Declares sets of refusals for `#[utoipa::path(responses(..))]`: each entry is a status
/// and when it is answered, with an [`ErrorBody`].
macro_rules! refusals {
    ($($(#[$doc:meta])* $name:ident = [$($status:literal => $when:expr),* $(,)?];)*) => {$(
        $(#[$doc])*
        pub(super) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                refusal_responses(&[$(($status, $when)),*])
            }
        }
    )*};
}

const UNAUTHORIZED: &str = "missing or invalid token";
const UNAVAILABLE: &str = "database unavailable";
const NOT_ADMIN: &str = "the caller's role is not in ADMIN_ROLES";
const UNKNOWN_ENDPOINT: &str =
    "no webhook endpoint of that name is configured (code unknown_endpoint)";

refusals! {
    /// Any authenticated caller.
    CallerRefusals = [401 => UNAUTHORIZED, 503 => UNAVAILABLE];
    /// The three notification POSTs.
    SendRefusals = [
        400 => "the body or a field is invalid; the message names it",
        401 => UNAUTHORIZED,
        403 => NOT_ADMIN,
        413 => "body larger than MAX_BODY_BYTES",
        415 => "Content-Type is not application/json",
        429 => "the recipient's offline queue is full",
        503 => UNAVAILABLE,
    ];
    /// A per-user view: an admin or that user.
    PerUserRefusals = [
        400 => "bad limit",
        401 => UNAUTHORIZED,
        403 => "neither an admin nor that user",
        503 => UNAVAILABLE,
    ];
    /// An admin action without a body.
    AdminRefusals = [401 => UNAUTHORIZED, 403 => NOT_ADMIN, 503 => UNAVAILABLE];
    /// A room membership endpoint (admins; the room and user in the path).
    MemberRefusals = [
        400 => "the room name or user id in the path is invalid (code bad_payload)",
        401 => UNAUTHORIZED,
        403 => NOT_ADMIN,
    ];
    /// The failed webhook events' list (admins).
    FailedListRefusals = [
        400 => "bad limit or after",
        401 => UNAUTHORIZED,
        403 => NOT_ADMIN,
        404 => UNKNOWN_ENDPOINT,
        503 => UNAVAILABLE,
    ];
    /// Sending failed webhook events again (admins).
    ResendRefusals = [
        400 => "the body is invalid, or ids is empty or names over 1000 events",
        401 => UNAUTHORIZED,
        403 => NOT_ADMIN,
        404 => UNKNOWN_ENDPOINT,
        413 => "body larger than MAX_BODY_BYTES",
        415 => "Content-Type is not application/json",
        503 => UNAVAILABLE,
    ];
    /// The message list.
    ListRefusals = [400 => "bad filter", 401 => UNAUTHORIZED, 503 => UNAVAILABLE];
}

fn refusal_responses(refusals: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    refusals
        .iter()
        .map(|&(status, when)| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build();
            let response = ResponseBuilder::new()
                .description(when)
                .content("application/json", body)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// The `type` of a notification, from the rule `NotificationType::parse` enforces.
pub(super) fn notification_type_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .default(Some("info".into()))
        .pattern(Some(format!(
            "^[A-Za-z0-9_-]{{1,{MAX_NOTIFICATION_TYPE_CHARS}}}$"
        )))
        .description(Some(
            "Free-form kind for the client (`info`, `warning`, `success`, ...).",
        ))
        .build()
}

/// The document as served and checked in: pretty JSON, one trailing newline.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut json = super::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
});

/// This document.
///
/// Derived from the handlers and their types; `docs/openapi.json` in the repository is the
/// same document.
#[utoipa::path(
    get,
    path = "/websocket/openapi.json",
    tag = "operations",
    security(),
    responses((status = 200, description = "OpenAPI 3 document"))
)]
pub(super) async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::DOCUMENT;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

    /// Proves `docs/openapi.json` is the derived document, so a change to a handler or a body
    /// type that changes the API shows up in review as a diff of that file.
    #[test]
    fn the_checked_in_openapi_json_is_the_derived_document() {
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(CHECKED_IN, DOCUMENT.as_str()).expect("write docs/openapi.json");
            return;
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        let first_difference = checked_in
            .lines()
            .zip(DOCUMENT.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_owned(), |i| format!("line {}", i + 1));
        assert!(
            checked_in == *DOCUMENT,
            "docs/openapi.json differs from the document derived from the code (first at \
             {first_difference}). Regenerate it with `UPDATE_OPENAPI=1 cargo test openapi` \
             and review the diff."
        );
    }

    /// Proves every `$ref` in the document names a schema it defines (a type registered
    /// only by hand, like the error body, could otherwise dangle).
    #[test]
    fn every_reference_in_the_openapi_document_resolves() {
        let doc: Value = serde_json::from_str(&DOCUMENT).expect("JSON");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(&r);
            assert!(schemas.contains_key(name), "dangling $ref {r}");
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
