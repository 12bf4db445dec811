//! Every frame the server writes to a client, in Engine.IO v4 / Socket.IO v5
//! text encoding: the handshake, namespace answers, pings, events and acks.
//! The worker pre-encodes the events it fans out with the same functions
//! the gateway uses for its own, so there is one encoder for the wire.

use serde::Serialize;
use serde_json::json;

use super::{server_events, NAMESPACE};
use crate::ChatError;

/// Engine.IO PING.
pub const PING: &str = "2";

/// The Engine.IO handshake, the first frame of a connection.
pub fn open(sid: &str, ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: usize) -> String {
    let handshake = json!({
        "sid": sid,
        "upgrades": [],
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    });
    format!("0{handshake}")
}

/// Answer to a successful namespace CONNECT.
pub fn connect_ok(namespace: &str, socket_id: &str) -> String {
    format!("40{namespace},{}", json!({ "sid": socket_id }))
}

/// Refusal of a namespace CONNECT, with the protocol's error object. The
/// main namespace is written without a name, as Socket.IO does.
pub fn connect_error(namespace: &str, message: &str, code: Option<&str>) -> String {
    let body = match code {
        Some(code) => json!({ "message": message, "data": { "code": code } }),
        None => json!({ "message": message }),
    };
    if namespace == "/" {
        format!("44{body}")
    } else {
        format!("44{namespace},{body}")
    }
}

/// Server-side namespace disconnect.
pub fn disconnect(namespace: &str) -> String {
    format!("41{namespace},")
}

/// An EVENT in `/chat`: `42/chat,["name",payload]`. The payloads are plain
/// structs and JSON values, whose encoding cannot fail; were one to, the
/// client gets an `error` event rather than a frame it cannot parse.
pub fn event<T: Serialize + ?Sized>(name: &str, payload: &T) -> String {
    match serde_json::to_string(&(name, payload)) {
        Ok(body) => format!("42{NAMESPACE},{body}"),
        Err(_) => format!(
            "42{NAMESPACE},[\"{}\",{}]",
            server_events::ERROR,
            unencodable()
        ),
    }
}

/// An ACK answering the client's ack id: `43/chat,7[payload]`, with the
/// same fallback as `event`.
pub fn ack<T: Serialize + ?Sized>(ack_id: u64, payload: &T) -> String {
    match serde_json::to_string(&[payload]) {
        Ok(body) => format!("43{NAMESPACE},{ack_id}{body}"),
        Err(_) => format!(
            "43{NAMESPACE},{ack_id}[{}]",
            json!({ "ok": false, "error": unencodable_error() })
        ),
    }
}

/// A failed event: `{ ok: false, error }` as its ack, or an `error` event
/// when the client asked for no ack.
pub fn failure(ack_id: Option<u64>, error: &ChatError) -> String {
    match ack_id {
        Some(id) => ack(id, &json!({ "ok": false, "error": error })),
        None => event(server_events::ERROR, error),
    }
}

fn unencodable_error() -> ChatError {
    ChatError::unavailable("the answer could not be encoded")
}

fn unencodable() -> serde_json::Value {
    serde_json::to_value(unencodable_error()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn events_and_acks_follow_socket_io_encoding() {
        assert_eq!(
            event("new-message", &json!({"a": 1})),
            r#"42/chat,["new-message",{"a":1}]"#
        );
        assert_eq!(ack(12, &json!({"ok": true})), r#"43/chat,12[{"ok":true}]"#);
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

    #[test]
    fn an_unencodable_payload_becomes_an_error_not_a_broken_frame() {
        // Maps with non-string keys have no JSON form.
        let payload: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let frame = event("stats-update", &payload);
        assert!(
            frame.starts_with(r#"42/chat,["error",{"code":"unavailable""#),
            "{frame}"
        );
        let frame = ack(4, &payload);
        assert!(
            frame.starts_with(r#"43/chat,4[{"error":{"code":"unavailable""#),
            "{frame}"
        );
    }

    #[test]
    fn control_frames() {
        let open = open("abc", 25000, 20000, 65536);
        assert!(open.starts_with("0{"));
        let handshake: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(handshake["sid"], "abc");
        assert_eq!(handshake["pingInterval"], 25000);
        assert_eq!(handshake["maxPayload"], 65536);
        assert_eq!(connect_ok("/chat", "s1"), r#"40/chat,{"sid":"s1"}"#);
        assert_eq!(
            connect_error("/chat", "unauthorized", Some("token_expired")),
            r#"44/chat,{"data":{"code":"token_expired"},"message":"unauthorized"}"#
        );
        assert_eq!(disconnect("/chat"), "41/chat,");
        assert_eq!(
            connect_error("/", "Invalid namespace", None),
            r#"44{"message":"Invalid namespace"}"#
        );
    }
}
