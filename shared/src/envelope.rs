//! Internal wire envelopes, MessagePack-encoded: commands a gateway appends to
//! a partition stream, replies a worker sends back to one gateway, and
//! deliveries (pre-encoded client frames) fanned out over pub/sub.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::auth::Identity;
use crate::protocol::{Message, Reaction, ReadPosition, Session};
use crate::{ChatError, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("cannot encode envelope: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode envelope: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, EnvelopeError> {
    Ok(Bytes::from(rmp_serde::to_vec_named(value)?))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Where the answer to a command goes: a gateway's reply channel and the
/// request id it is waiting on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub gateway_id: String,
    pub request_id: u64,
    /// The gateway receives the events of the command's session (the
    /// sending socket has joined it), so a successful reply may travel
    /// inside the command's own `new-message` delivery (`Delivery::reply`)
    /// instead of a publication of its own. False in the commands of older
    /// gateways, which get every reply on their reply channel.
    #[serde(default)]
    pub with_session_events: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub reply_to: Option<ReplyTo>,
    /// Who issued the command, as the gateway authenticated them.
    pub actor: Identity,
    pub issued_at: Timestamp,
    pub command: Command,
}

/// Every write in the system; only the worker applies them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateSession {
        session_id: String,
        pool: String,
        subject: Option<String>,
        first_message: Option<String>,
    },
    SendMessage {
        session_id: String,
        content: String,
        client_msg_id: Option<String>,
        /// Uploaded files the message carries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachment_ids: Vec<String>,
    },
    Assign {
        session_id: String,
        agent_id: Option<String>,
    },
    Transfer {
        session_id: String,
        agent_id: Option<String>,
        pool: Option<String>,
    },
    Close {
        session_id: String,
        reason: Option<String>,
    },
    MarkRead {
        session_id: String,
        up_to_seq: i64,
    },
    /// Something that feeds a pool's stats changed outside the store (an
    /// agent connected or left): recompute and push them.
    RefreshStats {
        pool: String,
    },
    /// A pool of automatic assignment may have room for waiting sessions
    /// (an agent came online or freed room): the worker offers the head
    /// of its queue, one `AutoAssign` per session, each to the session's
    /// own partition. Issued by gateways and workers, never by a client.
    Dispatch {
        pool: String,
    },
    /// Give this waiting session to the pool's best agent, if it is still
    /// waiting and the pool has room for it and those ahead of it.
    AutoAssign {
        session_id: String,
        pool: String,
    },
    /// `agent_id` has been gone too long: back to the queue, if the
    /// session is still theirs.
    ReturnToQueue {
        session_id: String,
        agent_id: String,
    },
    /// Reactions and delivery positions: the caller's reaction `emoji` to
    /// message `seq`, added (`on`) or taken back.
    React {
        session_id: String,
        seq: i64,
        emoji: String,
        on: bool,
    },
    /// How far the session's messages reached the caller's client.
    MarkDelivered {
        session_id: String,
        up_to_seq: i64,
    },
    /// Internal notes and invited colleagues: a note for the session's
    /// staff (`send-message` with `internal: true`), numbered apart from
    /// messages.
    SendNote {
        session_id: String,
        content: String,
        client_msg_id: Option<String>,
    },
    /// The assigned agent (or an admin) invites a colleague.
    InviteParticipant {
        session_id: String,
        agent_id: String,
    },
    /// A colleague leaves, or is removed by the assigned agent or an admin.
    RemoveParticipant {
        session_id: String,
        agent_id: String,
    },
}

impl Command {
    /// The key that picks the command's partition: its session, or for
    /// stats its pool, so that one session's commands stay in order.
    pub fn partition_key(&self) -> &str {
        match self {
            Command::CreateSession { session_id, .. }
            | Command::SendMessage { session_id, .. }
            | Command::Assign { session_id, .. }
            | Command::Transfer { session_id, .. }
            | Command::Close { session_id, .. }
            | Command::MarkRead { session_id, .. }
            | Command::AutoAssign { session_id, .. }
            | Command::ReturnToQueue { session_id, .. }
            | Command::React { session_id, .. }
            | Command::MarkDelivered { session_id, .. }
            | Command::SendNote { session_id, .. }
            | Command::InviteParticipant { session_id, .. }
            | Command::RemoveParticipant { session_id, .. } => session_id,
            Command::RefreshStats { pool } | Command::Dispatch { pool } => pool,
        }
    }

    /// Whether the command comes from the system itself (routing), not
    /// from a user: its actor is `Identity::system()`, and is neither
    /// remembered nor checked.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Command::Dispatch { .. } | Command::AutoAssign { .. } | Command::ReturnToQueue { .. }
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Command::CreateSession { .. } => "create_session",
            Command::SendMessage { .. } => "send_message",
            Command::Assign { .. } => "assign",
            Command::Transfer { .. } => "transfer",
            Command::Close { .. } => "close",
            Command::MarkRead { .. } => "mark_read",
            Command::RefreshStats { .. } => "refresh_stats",
            Command::Dispatch { .. } => "dispatch",
            Command::AutoAssign { .. } => "auto_assign",
            Command::ReturnToQueue { .. } => "return_to_queue",
            Command::React { .. } => "react",
            Command::MarkDelivered { .. } => "mark_delivered",
            Command::SendNote { .. } => "send_note",
            Command::InviteParticipant { .. } => "invite_participant",
            Command::RemoveParticipant { .. } => "remove_participant",
        }
    }
}

/// The worker's answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub request_id: u64,
    pub outcome: Result<ReplyBody, ChatError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplyBody {
    Session(Session),
    /// `duplicate` is true when the `clientMsgId` was already stored and
    /// `message` is the original.
    Message {
        message: Message,
        duplicate: bool,
    },
    /// A read position, or (for `MarkDelivered`) a delivery position: the
    /// same shape.
    ReadPosition(ReadPosition),
    Done,
    /// A message's whole list of reactions, after `React`.
    Reactions {
        seq: i64,
        reactions: Vec<Reaction>,
    },
}

/// One event fanned out to sockets. `frame` is the finished Socket.IO text
/// packet, encoded once by the publisher and forwarded as-is.
///
/// The same delivery may be published on several channels (`audience`, in
/// order). A socket that belongs to several of them must see it once: a
/// gateway delivering it from `audience[i]` skips sockets that are members of
/// any earlier channel of the list, since those get it from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event: String,
    pub audience: Vec<String>,
    pub session_id: Option<String>,
    /// Set on `new-message`: lets each socket drop repeats and repair gaps.
    pub seq: Option<i64>,
    /// Set on `user-typing`: the typist's own socket does not get it.
    pub except_socket: Option<String>,
    pub frame: String,
    /// When the worker's transaction that produced this event committed
    /// (milliseconds since the epoch); gateways measure fan-out latency
    /// from it. Absent on events that no commit produced (typing, stats)
    /// and in envelopes of older workers, hence the default: old and new
    /// processes can run side by side during an upgrade.
    #[serde(default)]
    pub committed_at_ms: Option<i64>,
    /// The reply to the command that produced this event, for the gateway
    /// that asked to get it here (`ReplyTo::with_session_events`): one
    /// publication carries both, and that gateway answers the request before
    /// fanning the event out, so the sender's ack still precedes its echo.
    /// Other gateways ignore it.
    #[serde(default)]
    pub reply: Option<RidingReply>,
}

/// A reply carried by a delivery, with the gateway it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RidingReply {
    pub gateway_id: String,
    /// The encoded `Reply`: the other gateways of the session pass it by
    /// without decoding it.
    pub reply: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Role;

    #[test]
    fn command_round_trips_through_messagepack() {
        let envelope = CommandEnvelope {
            reply_to: Some(ReplyTo {
                gateway_id: "g1".into(),
                request_id: 9,
                with_session_events: true,
            }),
            actor: Identity {
                user_id: "u".into(),
                name: "U".into(),
                role: Role::Customer,
                pools: vec![],
            },
            issued_at: Timestamp(5),
            command: Command::SendMessage {
                session_id: "s".into(),
                content: "hi".into(),
                client_msg_id: Some("c".into()),
                attachment_ids: Vec::new(),
            },
        };
        let bytes = encode(&envelope).unwrap();
        assert_eq!(decode::<CommandEnvelope>(&bytes).unwrap(), envelope);
        assert!(decode::<CommandEnvelope>(b"\x01garbage").is_err());
    }

    /// The actor's field names are wire format between gateways and
    /// workers of neighbouring versions: an envelope decodes into the shape
    /// it had when the actor was a struct of the envelope's own.
    #[test]
    fn the_actor_keeps_its_wire_field_names() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct WireActor {
            user_id: String,
            name: String,
            role: Role,
            pools: Vec<String>,
        }
        #[derive(Deserialize)]
        struct WireEnvelope {
            actor: WireActor,
        }
        let envelope = CommandEnvelope {
            reply_to: None,
            actor: Identity {
                user_id: "a1".into(),
                name: "Ann".into(),
                role: Role::Agent,
                pools: vec!["billing".into()],
            },
            issued_at: Timestamp(5),
            command: Command::RefreshStats {
                pool: "billing".into(),
            },
        };
        let wire: WireEnvelope = decode(&encode(&envelope).unwrap()).unwrap();
        assert_eq!(
            wire.actor,
            WireActor {
                user_id: "a1".into(),
                name: "Ann".into(),
                role: Role::Agent,
                pools: vec!["billing".into()],
            }
        );
    }

    #[test]
    fn an_older_gateways_reply_address_asks_for_its_own_channel() {
        #[derive(Serialize)]
        struct OldReplyTo {
            gateway_id: String,
            request_id: u64,
        }
        let old = OldReplyTo {
            gateway_id: "g1".into(),
            request_id: 4,
        };
        let decoded: ReplyTo = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(decoded.request_id, 4);
        assert!(!decoded.with_session_events);
    }

    #[test]
    fn reply_with_error_round_trips() {
        let reply = Reply {
            request_id: 1,
            outcome: Err(ChatError::session_closed()),
        };
        let back: Reply = decode(&encode(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn deliveries_without_commit_time_still_decode() {
        // The shape an older worker sends: no `committed_at_ms` field.
        #[derive(Serialize)]
        struct OldDelivery {
            event: String,
            audience: Vec<String>,
            session_id: Option<String>,
            seq: Option<i64>,
            except_socket: Option<String>,
            frame: String,
        }
        let old = OldDelivery {
            event: "new-message".into(),
            audience: vec!["c".into()],
            session_id: Some("s".into()),
            seq: Some(3),
            except_socket: None,
            frame: "42/chat,[]".into(),
        };
        let decoded: Delivery = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(decoded.committed_at_ms, None);
        assert_eq!(decoded.reply, None);
        assert_eq!(decoded.seq, Some(3));

        // And an older gateway ignores the new field.
        let new = Delivery {
            committed_at_ms: Some(1_700_000_000_000),
            ..decoded
        };
        #[derive(Deserialize)]
        struct OldReader {
            seq: Option<i64>,
        }
        let read: OldReader = decode(&encode(&new).unwrap()).unwrap();
        assert_eq!(read.seq, Some(3));
        let back: Delivery = decode(&encode(&new).unwrap()).unwrap();
        assert_eq!(back.committed_at_ms, Some(1_700_000_000_000));
    }
}
