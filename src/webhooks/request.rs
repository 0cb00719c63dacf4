//! One webhook request: the body of a batch of outbox events (`{ "id", "type", "timestamp",
//! "data" }` for one, `{ "events": [ ... ] }` for several, as docs/protocol.md section 15
//! fixes them), signed in the Standard Webhooks format, and whether the endpoint took it.

use std::time::Duration;

use crate::config::WebhookEndpoint;
use crate::protocol::standard_webhooks;
use crate::store::OutboxEvent;
use crate::telemetry::error_chain;

/// The JSON body of `events`. The stored `data` is the gateway's own JSON: spliced in as it
/// is, not parsed and written again.
pub(super) fn body(events: &[OutboxEvent]) -> String {
    let one = |e: &OutboxEvent| {
        // Serializing a string cannot fail.
        let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        format!(
            "{{\"id\":{},\"type\":{},\"timestamp\":{},\"data\":{}}}",
            e.id,
            text(&e.kind),
            text(&e.occurred_at),
            e.data
        )
    };
    match events {
        [single] => one(single),
        many => {
            let items: Vec<String> = many.iter().map(one).collect();
            format!("{{\"events\":[{}]}}", items.join(","))
        }
    }
}

/// The `webhook-id` of a request carrying `events`: the same for every retry of the same
/// events, different for any other set.
pub(super) fn message_id(events: &[OutboxEvent]) -> String {
    match events {
        [] => "evt_none".into(),
        [single] => format!("evt_{}", single.id),
        [first, .., last] => format!("evt_{}_{}", first.id, last.id),
    }
}

/// POSTs `events` to `endpoint`; `Ok` when it answered 2xx within `timeout`, else why not.
pub(super) async fn send(
    client: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    events: &[OutboxEvent],
    timeout: Duration,
) -> Result<(), String> {
    let body = body(events).into_bytes();
    let id = message_id(events);
    let mut request = client
        .post(&endpoint.url)
        .timeout(timeout)
        .header("content-type", "application/json");
    for (name, value) in standard_webhooks::headers(endpoint.secret.key(), &id, &body) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {} ms", timeout.as_millis())
        } else {
            error_chain(&e)
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, data: &str) -> OutboxEvent {
        OutboxEvent {
            id,
            kind: "user.offline".into(),
            occurred_at: "2026-12-07T10:00:00.000Z".into(),
            retried_since: "2026-12-07T10:00:00.000Z".into(),
            data: data.into(),
        }
    }

    #[test]
    fn one_event_is_the_object_and_several_are_a_list() {
        let one = body(&[event(7, r#"{"user":{"userId":"u1"}}"#)]);
        let value: serde_json::Value = serde_json::from_str(&one).expect("json");
        assert_eq!(value["type"], "user.offline");
        assert_eq!(value["id"], 7);
        assert_eq!(value["timestamp"], "2026-12-07T10:00:00.000Z");
        assert_eq!(value["data"]["user"]["userId"], "u1");
        let two = body(&[event(7, "{}"), event(9, "{}")]);
        let value: serde_json::Value = serde_json::from_str(&two).expect("json");
        assert_eq!(value["events"][1]["id"], 9);
        assert_eq!(message_id(&[event(7, "{}"), event(9, "{}")]), "evt_7_9");
    }
}
