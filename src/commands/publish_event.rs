//! Events of the application's own names, sent by a back end (`POST /websocket/publish`,
//! `GatewayHandle::publish`) to a user, a room, a role or everyone. They are stored, get an id,
//! wait in offline queues and are replayed like any message, so a back end answering a
//! webhook has the durability of the rest. An object payload gets `id`, `from` and
//! `timestamp` added unless it has them, so that clients de-duplicate and recover it like any
//! other message.

use serde_json::Value;

use crate::hub::{Hub, Origin, PublishError, Published, Target};
use crate::protocol::wire;

/// An event to publish.
pub struct BackendEvent<'a> {
    pub target: Target,
    pub event: &'a str,
    pub payload: Value,
    /// The sender's user object, as JSON: the REST caller, or the `system` user.
    pub from: Value,
    /// An `Idempotency-Key`: a retry returns the original instead of sending twice.
    pub idempotency_key: Option<&'a str>,
}

/// Publishes `e` from `origin` and waits until it is durable.
pub async fn publish_event(
    hub: &Hub,
    origin: Origin,
    e: BackendEvent<'_>,
) -> Result<Published, PublishError> {
    let timestamp = wire::now();
    // The stored text and type, for the operator's SQL and the REST listing's filters.
    let body = e
        .payload
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = e.payload.get("type").and_then(Value::as_str);
    let payload = |id| {
        let mut value = e.payload.clone();
        if let Value::Object(map) = &mut value {
            map.entry("id").or_insert(Value::from(id));
            map.entry("from").or_insert_with(|| e.from.clone());
            map.entry("timestamp")
                .or_insert_with(|| Value::from(timestamp.as_str()));
        }
        value
    };
    let publish = origin
        .message(e.event.to_owned(), e.target, body, &timestamp, &payload)
        .kind(kind)
        .idempotency_key(e.idempotency_key);
    hub.publish(publish).await
}
