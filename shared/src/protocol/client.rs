//! Payloads that clients send: Socket.IO event payloads and REST bodies
//! (see docs/protocol.md). Each has a `parse` that turns arbitrary JSON into either a validated
//! value or an `invalid_payload` error naming what is wrong.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::ids::{ClientMsgId, PoolName, SessionId};
use crate::validate;
use crate::ChatError;

/// Deserialises `value` into `T`, reporting serde's complaint as an
/// `invalid_payload` message (it names the field and the expected type).
pub fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, ChatError> {
    if !value.is_object() {
        return Err(ChatError::invalid("the payload must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ChatError::invalid(e.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinSession {
    pub session_id: SessionId,
    #[serde(default)]
    pub last_seq: Option<i64>,
}

impl JoinSession {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let join: JoinSession = from_json(value)?;
        if let Some(last) = join.last_seq {
            validate::seq(last, "lastSeq")?;
        }
        Ok(join)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveSession {
    pub session_id: SessionId,
}

impl LeaveSession {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let leave: LeaveSession = from_json(value)?;
        Ok(leave)
    }
}

/// A message to send; `content` is already trimmed once parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub session_id: SessionId,
    pub content: String,
    pub client_msg_id: ClientMsgId,
    /// An internal note, for staff only.
    #[serde(default)]
    pub internal: bool,
    /// Files uploaded to the session that the message carries.
    #[serde(default)]
    pub attachment_ids: Vec<String>,
}

impl SendMessage {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let mut send: SendMessage = from_json(value)?;
        send.content = validate::message_body(&send.content, &send.attachment_ids, send.internal)?;
        Ok(send)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub session_id: SessionId,
    pub is_typing: bool,
}

impl Typing {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let typing: Typing = from_json(value)?;
        Ok(typing)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkRead {
    pub session_id: SessionId,
    pub up_to_seq: i64,
}

impl MarkRead {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let mark: MarkRead = from_json(value)?;
        validate::seq(mark.up_to_seq, "upToSeq")?;
        Ok(mark)
    }
}

/// `mark-delivered`: how far messages reached the caller's client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkDelivered {
    pub session_id: SessionId,
    pub up_to_seq: i64,
}

impl MarkDelivered {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let mark: MarkDelivered = from_json(value)?;
        validate::seq(mark.up_to_seq, "upToSeq")?;
        Ok(mark)
    }
}

/// `react`: adds (`on`) or takes back the caller's reaction `emoji` to
/// message `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct React {
    pub session_id: SessionId,
    pub seq: i64,
    pub emoji: String,
    pub on: bool,
}

impl React {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let react: React = from_json(value)?;
        validate::seq(react.seq, "seq")?;
        validate::emoji(&react.emoji)?;
        Ok(react)
    }
}

/// `POST /sessions` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionBody {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub pool: Option<PoolName>,
    #[serde(default)]
    pub message: Option<String>,
}

impl CreateSessionBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let mut body: CreateSessionBody = from_json(value)?;
        body.subject =
            validate::optional_text(body.subject, "subject", validate::MAX_SUBJECT_CHARS)?;
        body.message = match body.message {
            Some(text) => Some(validate::content(&text)?),
            None => None,
        };
        Ok(body)
    }
}

/// `POST /sessions/{id}/messages` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostMessageBody {
    pub content: String,
    pub client_msg_id: ClientMsgId,
    /// An internal note, for staff only.
    #[serde(default)]
    pub internal: bool,
    /// Files uploaded to the session that the message carries.
    #[serde(default)]
    pub attachment_ids: Vec<String>,
}

impl PostMessageBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let mut body: PostMessageBody = from_json(value)?;
        body.content = validate::message_body(&body.content, &body.attachment_ids, body.internal)?;
        Ok(body)
    }
}

/// `POST /sessions/{id}/assign` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignBody {
    #[serde(default)]
    pub agent_id: Option<String>,
}

impl AssignBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let body: AssignBody = from_json(value)?;
        if let Some(agent) = &body.agent_id {
            validate::user_id(agent, "agentId")?;
        }
        Ok(body)
    }
}

/// `POST /sessions/{id}/transfer` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferBody {
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub pool: Option<PoolName>,
}

impl TransferBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let body: TransferBody = from_json(value)?;
        if let Some(agent) = &body.agent_id {
            validate::user_id(agent, "agentId")?;
        }
        Ok(body)
    }
}

/// `POST /sessions/{id}/close` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseBody {
    #[serde(default)]
    pub reason: Option<String>,
}

impl CloseBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let mut body: CloseBody = from_json(value)?;
        body.reason = validate::optional_text(body.reason, "reason", validate::MAX_REASON_CHARS)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn send_message_is_trimmed_and_validated() {
        let send = SendMessage::parse(
            json!({"sessionId": "s1", "content": "  hi  ", "clientMsgId": "c1"}),
        )
        .unwrap();
        assert_eq!(send.content, "hi");

        for bad in [
            json!({"sessionId": "s1", "content": "   ", "clientMsgId": "c1"}),
            json!({"sessionId": "s1", "content": 5, "clientMsgId": "c1"}),
            json!({"sessionId": "s1", "content": "x"}),
            json!({"sessionId": "s1", "content": "x", "clientMsgId": ""}),
            json!({"sessionId": "s1", "content": "x", "clientMsgId": "a".repeat(65)}),
            json!({"sessionId": "", "content": "x", "clientMsgId": "c"}),
            json!({"sessionId": 7, "content": "x", "clientMsgId": "c"}),
            json!({"sessionId": "s1", "content": "é".repeat(4001), "clientMsgId": "c"}),
            json!("not an object"),
            json!(null),
        ] {
            let err = SendMessage::parse(bad.clone()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPayload, "{bad}");
        }
        // 4000 code points are fine even when they take more bytes.
        let long = SendMessage::parse(
            json!({"sessionId": "s1", "content": "é".repeat(4000), "clientMsgId": "c"}),
        )
        .unwrap();
        assert_eq!(long.content.chars().count(), 4000);
    }

    #[test]
    fn join_session_last_seq_is_optional_and_non_negative() {
        assert_eq!(
            JoinSession::parse(json!({"sessionId": "s"}))
                .unwrap()
                .last_seq,
            None
        );
        assert_eq!(
            JoinSession::parse(json!({"sessionId": "s", "lastSeq": null}))
                .unwrap()
                .last_seq,
            None
        );
        assert_eq!(
            JoinSession::parse(json!({"sessionId": "s", "lastSeq": 4}))
                .unwrap()
                .last_seq,
            Some(4)
        );
        assert!(JoinSession::parse(json!({"sessionId": "s", "lastSeq": -1})).is_err());
        assert!(JoinSession::parse(json!({"sessionId": "s", "lastSeq": "4"})).is_err());
        assert!(JoinSession::parse(json!({"sessionId": "s", "lastSeq": 1.5})).is_err());
    }

    #[test]
    fn typing_and_mark_read_need_their_fields() {
        assert!(
            Typing::parse(json!({"sessionId": "s", "isTyping": true}))
                .unwrap()
                .is_typing
        );
        assert!(Typing::parse(json!({"sessionId": "s", "isTyping": "yes"})).is_err());
        assert_eq!(
            MarkRead::parse(json!({"sessionId": "s", "upToSeq": 3}))
                .unwrap()
                .up_to_seq,
            3
        );
        assert!(MarkRead::parse(json!({"sessionId": "s"})).is_err());
    }

    #[test]
    fn create_session_body_defaults_and_limits() {
        assert_eq!(
            CreateSessionBody::parse(json!({})).unwrap(),
            CreateSessionBody::default()
        );
        let body = CreateSessionBody::parse(
            json!({"subject": " Help ", "pool": "billing", "message": " hi "}),
        )
        .unwrap();
        assert_eq!(body.subject.as_deref(), Some("Help"));
        assert_eq!(body.message.as_deref(), Some("hi"));
        assert!(CreateSessionBody::parse(json!({"pool": ""})).is_err());
        assert!(CreateSessionBody::parse(json!({"message": "  "})).is_err());
    }
}

/// `refresh-token`: a fresh token for the same user and role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshToken {
    pub token: String,
}

impl RefreshToken {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let refresh: RefreshToken = from_json(value)?;
        if refresh.token.trim().is_empty() {
            return Err(ChatError::invalid("token must be a non-empty string"));
        }
        Ok(refresh)
    }
}

/// `set-status`: whether the calling agent takes chats. Only `online` and
/// `away` may be said; `offline` is what the server derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetStatus {
    pub status: super::AgentStatus,
}

impl SetStatus {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        #[derive(Deserialize)]
        struct Raw {
            status: String,
        }
        let raw: Raw = from_json(value)?;
        match super::AgentStatus::parse(&raw.status) {
            Some(status @ (super::AgentStatus::Online | super::AgentStatus::Away)) => {
                Ok(SetStatus { status })
            }
            _ => Err(ChatError::invalid("status must be \"online\" or \"away\"")),
        }
    }
}

/// The most sessions an agent's capacity may name.
pub const MAX_AGENT_CAPACITY: i64 = 1000;

/// `POST /agents/{id}/capacity` body: a capacity, or `null` for the pool's
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityBody {
    pub capacity: Option<i64>,
}

impl CapacityBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        #[derive(Deserialize)]
        struct Raw {
            // Required, but `null` is a value: absent and null differ.
            capacity: Option<serde_json::Number>,
        }
        let Some(object) = value.as_object() else {
            return Err(ChatError::invalid("the payload must be a JSON object"));
        };
        if !object.contains_key("capacity") {
            return Err(ChatError::invalid("missing field `capacity`"));
        }
        let raw: Raw = from_json(value)?;
        let capacity = match raw.capacity {
            None => None,
            Some(number) => match number.as_i64() {
                Some(n) if (0..=MAX_AGENT_CAPACITY).contains(&n) => Some(n),
                _ => {
                    return Err(ChatError::invalid(format!(
                        "capacity must be an integer from 0 to {MAX_AGENT_CAPACITY}, or null"
                    )))
                }
            },
        };
        Ok(CapacityBody { capacity })
    }
}

#[cfg(test)]
mod routing_payload_tests {
    use super::*;
    use crate::protocol::AgentStatus;
    use serde_json::json;

    #[test]
    fn set_status_takes_online_or_away_only() {
        assert_eq!(
            SetStatus::parse(json!({"status": "away"})).unwrap().status,
            AgentStatus::Away
        );
        for bad in [
            json!({"status": "offline"}),
            json!({"status": "busy"}),
            json!({"status": 1}),
            json!({}),
            json!("online"),
        ] {
            assert!(SetStatus::parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_capacity_is_a_bounded_integer_or_null() {
        assert_eq!(
            CapacityBody::parse(json!({"capacity": 3}))
                .unwrap()
                .capacity,
            Some(3)
        );
        assert_eq!(
            CapacityBody::parse(json!({"capacity": null}))
                .unwrap()
                .capacity,
            None
        );
        for bad in [
            json!({}),
            json!({"capacity": -1}),
            json!({"capacity": 1001}),
            json!({"capacity": 2.5}),
            json!({"capacity": "3"}),
        ] {
            assert!(CapacityBody::parse(bad.clone()).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod reaction_payload_tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn react_needs_a_message_one_emoji_and_a_flag() {
        let react =
            React::parse(json!({"sessionId": "s", "seq": 2, "emoji": "👍", "on": true})).unwrap();
        assert_eq!((react.seq, react.emoji.as_str(), react.on), (2, "👍", true));
        for bad in [
            json!({"sessionId": "s", "seq": 2, "emoji": "👍"}),
            json!({"sessionId": "s", "seq": 2, "emoji": "x", "on": true}),
            json!({"sessionId": "s", "seq": 2, "emoji": "👍👍", "on": true}),
            json!({"sessionId": "s", "seq": 2, "emoji": 1, "on": true}),
            json!({"sessionId": "s", "seq": -1, "emoji": "👍", "on": true}),
            json!({"sessionId": "s", "seq": "2", "emoji": "👍", "on": true}),
            json!({"sessionId": "s", "seq": 2, "emoji": "👍", "on": "yes"}),
            json!({"seq": 2, "emoji": "👍", "on": true}),
        ] {
            let err = React::parse(bad.clone()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPayload, "{bad}");
        }
    }

    #[test]
    fn mark_delivered_is_shaped_like_mark_read() {
        assert_eq!(
            MarkDelivered::parse(json!({"sessionId": "s", "upToSeq": 4}))
                .unwrap()
                .up_to_seq,
            4
        );
        assert!(MarkDelivered::parse(json!({"sessionId": "s", "upToSeq": -1})).is_err());
        assert!(MarkDelivered::parse(json!({"sessionId": "s"})).is_err());
    }
}

/// `POST /sessions/{id}/participants` body: the colleague to invite.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantBody {
    pub agent_id: String,
}

impl AddParticipantBody {
    pub fn parse(value: Value) -> Result<Self, ChatError> {
        let body: AddParticipantBody = from_json(value)?;
        validate::user_id(&body.agent_id, "agentId")?;
        Ok(body)
    }
}
