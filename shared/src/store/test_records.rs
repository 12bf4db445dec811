//! Rows for the stores' own tests, which need fixed ids (the conformance
//! suite makes unique ones): a pending session and a customer's message,
//! for a test to adjust where it matters.

use uuid::Uuid;

use crate::protocol::{Message, Role};
use crate::store::SessionRecord;
use crate::Timestamp;

/// A pending session in pool "default", at version 1, with no messages.
pub(crate) fn session(id: &str) -> SessionRecord {
    SessionRecord::opened(
        id.into(),
        "c-1".into(),
        "Carla".into(),
        "default".into(),
        Some("Hello".into()),
        Timestamp(1_700_000_000_000),
    )
}

/// Message `seq` of the session's customer, under a fresh id.
pub(crate) fn message(session_id: &str, seq: i64, client_msg_id: Option<&str>) -> Message {
    Message {
        id: format!("m-{}", Uuid::new_v4().simple()),
        session_id: session_id.into(),
        seq,
        sender_id: "c-1".into(),
        sender_name: "Carla".into(),
        sender_role: Role::Customer,
        content: format!("message {seq}"),
        client_msg_id: client_msg_id.map(Into::into),
        created_at: Timestamp(1_700_000_000_000 + seq),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    }
}
