//! Payloads the server emits and the shapes of REST answers (docs/protocol.md).

use serde::{Deserialize, Serialize};

use super::{Message, Reaction, ReadPosition, Role, Session};
use crate::{ChatError, Timestamp};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connected {
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub pools: Vec<String>,
    pub socket_id: String,
    pub server_time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionJoined {
    pub session: Session,
    pub messages: Vec<Message>,
    pub has_more: bool,
    pub read_positions: Vec<ReadPosition>,
    /// How far messages reached each participant's client, as
    /// `read_positions`.
    pub delivery_positions: Vec<ReadPosition>,
    /// The session's latest timeline entries, oldest first.
    pub events: Vec<SessionEvent>,
    /// The session's latest internal notes, oldest first: present for
    /// agents and admins only, absent (not even the key) for customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<Message>>,
}

/// What happened to a session's hands, in its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionEventKind {
    /// A waiting session was given to an agent (taken, given by an admin,
    /// or given out automatically).
    Assigned,
    /// An active session moved to another agent or pool.
    Transferred,
    /// An active session went back to the queue.
    Returned,
    Closed,
    /// A colleague was invited into the session (`agentId` names them).
    Invited,
    /// An invited colleague left the session or was removed from it.
    Left,
}

impl SessionEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEventKind::Assigned => "assigned",
            SessionEventKind::Transferred => "transferred",
            SessionEventKind::Returned => "returned",
            SessionEventKind::Closed => "closed",
            SessionEventKind::Invited => "invited",
            SessionEventKind::Left => "left",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "assigned" => Some(SessionEventKind::Assigned),
            "transferred" => Some(SessionEventKind::Transferred),
            "returned" => Some(SessionEventKind::Returned),
            "closed" => Some(SessionEventKind::Closed),
            "invited" => Some(SessionEventKind::Invited),
            "left" => Some(SessionEventKind::Left),
            _ => None,
        }
    }
}

/// `session-event` and the entries of `GET /sessions/{id}/events`: a
/// system entry of the timeline. It takes no `seq`; `afterSeq` places it
/// among the messages (it happened after message `afterSeq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEvent {
    pub session_id: String,
    pub kind: SessionEventKind,
    pub at: Timestamp,
    /// Who did it; `None` when the system did (automatic assignment, a
    /// return after the agent was gone too long).
    pub by: Option<ClosedBy>,
    /// The agent holding the session afterwards (for a close, the one who
    /// held it).
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub pool: String,
    pub after_seq: i64,
}

/// `GET /supervisor`: the open chats and the agents, for the live view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorView {
    pub chats: Vec<SupervisedChatEntry>,
    pub agents: Vec<SupervisedAgent>,
    pub updated_at: Timestamp,
}

/// An open chat of the supervisor's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisedChatEntry {
    pub session: Session,
    /// When it last entered the queue (creation, or its latest return).
    pub queued_at: Timestamp,
    /// Messages its agent has not read; `None` while it waits.
    pub unread_by_agent: Option<i64>,
}

/// `{ items }` of `GET /queue`: the waiting chats in queue order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    pub items: Vec<QueueEntry>,
}

/// A waiting chat of `GET /queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    pub session: Session,
    /// When it last entered the queue (creation, or its latest return).
    pub queued_at: Timestamp,
    /// Its place among its pool's waiting chats, from 1.
    pub position: i64,
}

/// An agent of the supervisor's view: the directory entry and the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisedAgent {
    #[serde(flatten)]
    pub agent: super::AgentEntry,
    /// Sessions they first answered today (UTC).
    pub answered_today: i64,
    pub avg_first_response_seconds: Option<f64>,
}

/// `{ items }` of `GET /sessions/{id}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEventList {
    pub items: Vec<SessionEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTyping {
    pub session_id: String,
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub is_typing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesRead {
    pub session_id: String,
    pub user_id: String,
    pub role: Role,
    pub up_to_seq: i64,
    pub read_at: Timestamp,
}

/// `messages-delivered`: a participant's delivery position moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesDelivered {
    pub session_id: String,
    pub user_id: String,
    pub role: Role,
    pub up_to_seq: i64,
    pub delivered_at: Timestamp,
}

/// `message-reactions`: a message's whole list of reactions, after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReactions {
    pub session_id: String,
    pub seq: i64,
    pub reactions: Vec<Reaction>,
}

/// `{ session }`: the payload of `session-updated` and `new-pending-session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnvelope {
    pub session: Session,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosedBy {
    pub user_id: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionClosed {
    pub session_id: String,
    pub closed_by: ClosedBy,
    pub reason: Option<String>,
    pub closed_at: Timestamp,
}

/// `{ agent }`: the payload of `agent-updated` and the ack of `set-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEnvelope {
    pub agent: super::AgentEntry,
}

/// `queue-position`: where a waiting session stands in its pool's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuePosition {
    pub session_id: String,
    /// 1 for the next session to be given out.
    pub position: i64,
    /// `None` when there is no basis for a figure.
    pub estimated_wait_seconds: Option<i64>,
}

/// `{ items, nextCursor }` of `GET /sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPage {
    pub items: Vec<Session>,
    pub next_cursor: Option<String>,
}

/// `{ items, hasMore }` of `GET /sessions/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub items: Vec<Message>,
    pub has_more: bool,
}

/// `{ error: Error }`: the body of every failed REST call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ChatError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_closed_payload_matches_protocol() {
        let closed = SessionClosed {
            session_id: "s1".into(),
            closed_by: ClosedBy {
                user_id: "a1".into(),
                role: Role::Agent,
            },
            reason: None,
            closed_at: Timestamp(0),
        };
        assert_eq!(
            serde_json::to_value(closed).unwrap(),
            json!({"sessionId": "s1", "closedBy": {"userId": "a1", "role": "agent"},
                   "reason": null, "closedAt": "1970-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn typing_and_read_payloads_match_protocol() {
        let typing = UserTyping {
            session_id: "s".into(),
            user_id: "u".into(),
            name: "U".into(),
            role: Role::Customer,
            is_typing: true,
        };
        assert_eq!(
            serde_json::to_value(typing).unwrap(),
            json!({"sessionId": "s", "userId": "u", "name": "U", "role": "customer", "isTyping": true})
        );
        let read = MessagesRead {
            session_id: "s".into(),
            user_id: "u".into(),
            role: Role::Agent,
            up_to_seq: 2,
            read_at: Timestamp(0),
        };
        assert_eq!(
            serde_json::to_value(read).unwrap(),
            json!({"sessionId": "s", "userId": "u", "role": "agent", "upToSeq": 2,
                   "readAt": "1970-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn reaction_and_delivery_payloads_match_protocol() {
        let reactions = MessageReactions {
            session_id: "s".into(),
            seq: 3,
            reactions: vec![Reaction {
                emoji: "👍".into(),
                count: 2,
                user_ids: vec!["u1".into(), "u2".into()],
            }],
        };
        assert_eq!(
            serde_json::to_value(reactions).unwrap(),
            json!({"sessionId": "s", "seq": 3,
                   "reactions": [{"emoji": "👍", "count": 2, "userIds": ["u1", "u2"]}]})
        );
        let delivered = MessagesDelivered {
            session_id: "s".into(),
            user_id: "u".into(),
            role: Role::Customer,
            up_to_seq: 4,
            delivered_at: Timestamp(0),
        };
        assert_eq!(
            serde_json::to_value(delivered).unwrap(),
            json!({"sessionId": "s", "userId": "u", "role": "customer", "upToSeq": 4,
                   "deliveredAt": "1970-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn queue_position_payload_matches_protocol() {
        let position = QueuePosition {
            session_id: "s".into(),
            position: 3,
            estimated_wait_seconds: None,
        };
        assert_eq!(
            serde_json::to_value(position).unwrap(),
            json!({"sessionId": "s", "position": 3, "estimatedWaitSeconds": null})
        );
    }

    #[test]
    fn rest_error_body_wraps_the_error() {
        let body = ErrorResponse {
            error: ChatError::not_found("no such session"),
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"error": {"code": "not_found", "message": "no such session"}})
        );
    }
}
