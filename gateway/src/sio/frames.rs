//! Builders for the frames a connection writes that are not pre-encoded by
//! the worker: acks, `error` events and locally produced events.

use chat_shared::envelope::{ack_frame, event_frame};
use chat_shared::protocol::server_events;
use chat_shared::protocol::NAMESPACE;
use chat_shared::ChatError;
use serde::Serialize;
use serde_json::json;

/// An ACK frame; serialising plain JSON values cannot fail, so the fallback
/// is never used in practice.
pub fn ack<T: Serialize>(ack_id: u64, payload: &T) -> String {
    ack_frame(ack_id, payload).unwrap_or_else(|_| format!("43/chat,{ack_id}[{{\"ok\":false}}]"))
}

/// The ack of a sent message, `{ ok: true, message }`, around the
/// message's JSON as it came in its `new-message` event (not re-encoded).
pub fn message_ack(ack_id: u64, message_json: &str) -> String {
    format!("43{NAMESPACE},{ack_id}[{{\"ok\":true,\"message\":{message_json}}}]")
}

pub fn event<T: Serialize>(name: &str, payload: &T) -> String {
    event_frame(name, payload).unwrap_or_default()
}

/// A failed event: `{ ok: false, error }` as its ack, or an `error` event
/// when the client asked for no ack.
pub fn failure(ack_id: Option<u64>, error: &ChatError) -> String {
    match ack_id {
        Some(id) => ack(id, &json!({ "ok": false, "error": error })),
        None => event(server_events::ERROR, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ErrorCode;

    #[test]
    fn a_message_ack_wraps_the_event_payload() {
        let message = json!({"id": "m1", "seq": 4, "content": "hi"});
        let frame = event(server_events::NEW_MESSAGE, &message);
        let inner = chat_shared::envelope::event_payload(&frame, server_events::NEW_MESSAGE)
            .expect("payload");
        let built = message_ack(7, inner);
        let body = built.strip_prefix("43/chat,7").expect("ack of 7");
        let parsed: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(parsed, json!([{ "ok": true, "message": message }]));
    }

    #[test]
    fn failure_is_an_ack_or_an_error_event() {
        let error = ChatError::new(ErrorCode::Forbidden, "no");
        assert_eq!(
            failure(Some(3), &error),
            r#"43/chat,3[{"error":{"code":"forbidden","message":"no"},"ok":false}]"#
        );
        assert_eq!(
            failure(None, &error),
            r#"42/chat,["error",{"code":"forbidden","message":"no"}]"#
        );
    }
}
