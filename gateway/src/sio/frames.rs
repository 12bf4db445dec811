//! Builders for the frames a connection writes that are not pre-encoded by
//! the worker: acks, `error` events and locally produced events.

use chat_shared::envelope::{ack_frame, event_frame};
use chat_shared::protocol::server_events;
use chat_shared::ChatError;
use serde::Serialize;
use serde_json::json;

/// An ACK frame; serialising plain JSON values cannot fail, so the fallback
/// is never used in practice.
pub fn ack<T: Serialize>(ack_id: u64, payload: &T) -> String {
    ack_frame(ack_id, payload).unwrap_or_else(|_| format!("43/chat,{ack_id}[{{\"ok\":false}}]"))
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
