//! The objects of docs/protocol.md: Session, Message, Stats, read positions.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "customer" => Some(Role::Customer),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Pending,
    Active,
    Closed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Active => "active",
            SessionStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<SessionStatus> {
        match text {
            "pending" => Some(SessionStatus::Pending),
            "active" => Some(SessionStatus::Active),
            "closed" => Some(SessionStatus::Closed),
            _ => None,
        }
    }
}

/// A support conversation between one customer and (once assigned) one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub pool: String,
    pub status: SessionStatus,
    pub subject: Option<String>,
    pub created_at: Timestamp,
    pub assigned_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub last_seq: i64,
    pub last_message_at: Option<Timestamp>,
    /// Colleagues the assigned agent invited in, in the order they joined.
    #[serde(default)]
    pub participants: Vec<Participant>,
}

/// An agent invited into a session: they may write to it until they leave
/// or it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub joined_at: Timestamp,
}

/// One stored chat message; `seq` orders a session's messages 1, 2, 3, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub session_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub sender_name: String,
    pub sender_role: Role,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: Timestamp,
    /// Files the message carries.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// One entry per emoji, in the order each was first used.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// An internal note: numbered in the notes' own sequence, for staff only.
    #[serde(default)]
    pub internal: bool,
    /// For a note, the message it follows; never set on a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<i64>,
}

/// A file uploaded into a session (docs/protocol.md, Attachment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    pub session_id: String,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    /// Pixel size of an image whose header could be read.
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub created_at: Timestamp,
}

/// The reactions of one emoji on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub count: i64,
    /// In the order they reacted.
    pub user_ids: Vec<String>,
}

/// How far one participant has read a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPosition {
    pub user_id: String,
    pub role: Role,
    pub up_to_seq: i64,
}

/// Live figures of one pool (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub pool: String,
    pub pending_sessions: i64,
    pub active_sessions: i64,
    pub closed_today: i64,
    pub online_agents: i64,
    pub avg_wait_seconds: Option<f64>,
    pub longest_wait_seconds: f64,
    pub avg_first_response_seconds: Option<f64>,
    pub messages_today: i64,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_uses_protocol_field_names_and_nulls() {
        let session = Session {
            id: "s1".into(),
            customer_id: "c1".into(),
            customer_name: "Carla".into(),
            agent_id: None,
            agent_name: None,
            pool: "default".into(),
            status: SessionStatus::Pending,
            subject: Some("Billing".into()),
            created_at: Timestamp(1_700_000_000_000),
            assigned_at: None,
            closed_at: None,
            last_seq: 0,
            last_message_at: None,
            participants: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&session).unwrap(),
            json!({
                "id": "s1", "customerId": "c1", "customerName": "Carla",
                "agentId": null, "agentName": null, "pool": "default",
                "status": "pending", "subject": "Billing",
                "createdAt": "2023-11-14T22:13:20.000Z", "assignedAt": null,
                "closedAt": null, "lastSeq": 0, "lastMessageAt": null,
                "participants": []
            })
        );
    }

    #[test]
    fn message_uses_protocol_field_names() {
        let message = Message {
            id: "m1".into(),
            session_id: "s1".into(),
            seq: 3,
            sender_id: "a1".into(),
            sender_name: "Ann".into(),
            sender_role: Role::Agent,
            content: "Hello".into(),
            client_msg_id: Some("c-1".into()),
            created_at: Timestamp(1_700_000_000_001),
            attachments: Vec::new(),
            reactions: Vec::new(),
            internal: false,
            after_seq: None,
        };
        let value = serde_json::to_value(&message).unwrap();
        assert_eq!(
            value,
            json!({
                "id": "m1", "sessionId": "s1", "seq": 3, "senderId": "a1",
                "senderName": "Ann", "senderRole": "agent", "content": "Hello",
                "clientMsgId": "c-1", "createdAt": "2023-11-14T22:13:20.001Z",
                "attachments": [], "reactions": [], "internal": false
            })
        );
        assert_eq!(serde_json::from_value::<Message>(value).unwrap(), message);
    }

    #[test]
    fn stats_use_protocol_field_names() {
        let stats = Stats {
            pool: "default".into(),
            pending_sessions: 1,
            active_sessions: 2,
            closed_today: 3,
            online_agents: 4,
            avg_wait_seconds: None,
            longest_wait_seconds: 0.0,
            avg_first_response_seconds: Some(1.5),
            messages_today: 9,
            updated_at: Timestamp(0),
        };
        let value = serde_json::to_value(&stats).unwrap();
        for key in [
            "pool",
            "pendingSessions",
            "activeSessions",
            "closedToday",
            "onlineAgents",
            "avgWaitSeconds",
            "longestWaitSeconds",
            "avgFirstResponseSeconds",
            "messagesToday",
            "updatedAt",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        assert_eq!(value["avgWaitSeconds"], json!(null));
    }
}

/// An agent of the directory (`GET /agents`): who has connected, the pools
/// their last token named, whether a socket of theirs is connected now on
/// any gateway, and when they were last seen connecting or disconnecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    pub id: String,
    pub name: String,
    pub pools: Vec<String>,
    pub online: bool,
    pub last_seen_at: Timestamp,
    /// What the agent last said (`online`, `away`), or `offline` when no
    /// socket of theirs is connected.
    pub status: AgentStatus,
    /// Sessions active with the agent now, in any pool.
    pub open_chats: i64,
    /// How many the agent may hold when sessions are given out
    /// automatically: their own, else the listed pool's default.
    pub capacity: i64,
}

/// Whether an agent takes chats. Agents set `online` or `away`; `offline`
/// is only ever derived (no socket connected), never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Online,
    Away,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Away => "away",
            AgentStatus::Offline => "offline",
        }
    }

    pub fn parse(text: &str) -> Option<AgentStatus> {
        match text {
            "online" => Some(AgentStatus::Online),
            "away" => Some(AgentStatus::Away),
            "offline" => Some(AgentStatus::Offline),
            _ => None,
        }
    }
}

/// `GET /agents`: the directory, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    pub items: Vec<AgentEntry>,
}
