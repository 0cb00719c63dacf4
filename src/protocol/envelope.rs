//! The plain-WebSocket envelope: one JSON object per text frame.
//!
//! - client → server: `{"event": "<name>", "data": <payload or absent>, "ack": <optional integer>}`
//! - server → client: `{"event": "<name>", "data": <payload>}`; the reply to a frame that carried
//!   `"ack": n` is `{"event": "ack", "data": {"ack": n, ...result}}`.

use serde_json::Value;

use super::ProtocolError;

/// A decoded client frame: the event name, its payload, and the ack id if one was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    /// The event name, not yet checked against the known events.
    pub event: String,
    /// The payload (`None` when absent or `null`).
    pub data: Option<Value>,
    /// The ack id, when the client wants a reply.
    pub ack: Option<u64>,
}

impl ClientFrame {
    /// Decodes one text frame. The error names what is wrong; when the frame was readable
    /// enough to carry an ack id, [`ClientFrame::ack_of_invalid`] still finds it so that the
    /// refusal can be acknowledged.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ProtocolError::frame(format!("invalid JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(ProtocolError::frame(
                "a frame must be a JSON object like {\"event\": \"name\", \"data\": {...}}",
            ));
        };
        let ack = match obj.remove("ack") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(_) => {
                return Err(ProtocolError::frame(
                    "\"ack\" must be a non-negative integer",
                ));
            }
        };
        let event = match obj.remove("event") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) => {
                return Err(ProtocolError::frame("\"event\" must not be empty"));
            }
            Some(_) => return Err(ProtocolError::frame("\"event\" must be a string")),
            None => return Err(ProtocolError::frame("missing \"event\"")),
        };
        let data = obj.remove("data").filter(|v| !v.is_null());
        Ok(Self { event, data, ack })
    }

    /// The ack id of a frame that failed [`ClientFrame::parse`] for another reason, so the
    /// refusal can still be acknowledged, as `docs/protocol.md` section 5 promises.
    ///
    /// A frame that is an object but too deep for [`ClientFrame::parse`] (serde_json stops
    /// at 128 levels) or holds a number serde_json cannot represent (`1e400`) still has its
    /// ack found: the second reading skips every value but `ack` without recursing.
    pub fn ack_of_invalid(text: &str) -> Option<u64> {
        /// The top-level `ack`; other fields are skipped by serde_json's iterative skipper.
        #[derive(serde::Deserialize)]
        struct AckOnly {
            ack: Option<Value>,
        }
        let ack = match serde_json::from_str::<Value>(text) {
            Ok(value) => value.get("ack")?.clone(),
            Err(_) => serde_json::from_str::<AckOnly>(text).ok()?.ack?,
        };
        ack.as_u64()
    }
}

/// Encodes a server frame from an event name and its payload, already serialized as JSON.
pub fn encode_server_frame(event: &str, data_json: &str) -> String {
    let name = serde_json::to_string(event).unwrap_or_else(|_| "\"error\"".into());
    let mut out = String::with_capacity(name.len() + data_json.len() + 20);
    out.push_str("{\"event\":");
    out.push_str(&name);
    out.push_str(",\"data\":");
    out.push_str(data_json);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_with_event_data_and_ack_decodes() {
        let f = ClientFrame::parse(r#"{"event":"join-room","data":{"room":"a"},"ack":7}"#)
            .expect("valid");
        assert_eq!(f.event, "join-room");
        assert_eq!(f.ack, Some(7));
        assert_eq!(f.data, Some(serde_json::json!({"room": "a"})));
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        let cases = [
            ("not json", "invalid JSON"),
            ("[1,2]", "must be a JSON object"),
            (r#"{"data":{}}"#, "missing \"event\""),
            (r#"{"event":5}"#, "\"event\" must be a string"),
            (r#"{"event":""}"#, "must not be empty"),
            (
                r#"{"event":"x","ack":-1}"#,
                "\"ack\" must be a non-negative integer",
            ),
            (
                r#"{"event":"x","ack":"1"}"#,
                "\"ack\" must be a non-negative integer",
            ),
        ];
        for (frame, expected) in cases {
            let err = ClientFrame::parse(frame).expect_err(frame);
            assert!(err.to_string().contains(expected), "{frame}: {err}");
        }
    }

    #[test]
    fn server_frames_are_valid_json_whatever_the_event_name() {
        let text = encode_server_frame("we\"ird", r#"{"a":1}"#);
        let v: Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(v["event"], "we\"ird");
        assert_eq!(v["data"]["a"], 1);
    }
}
