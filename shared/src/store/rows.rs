//! Decoding rows (sessions, messages, read positions, agents, pool
//! figures), the same for every store: each store only says how to read
//! one column of its own row type (`Columns`), and what a text column
//! holding an unknown enum name becomes. Reads are checked: a column of an
//! unexpected type or an unknown name is the store's error, never a panic.

use crate::protocol::{Message, ReadPosition, Role, Session, SessionStatus};
use crate::store::{AgentRecord, PoolFigures, SessionRecord};
use crate::Timestamp;

/// One row of a store's result, read column by column.
pub(crate) trait Columns {
    type Error;
    fn text(&self, column: &str) -> Result<String, Self::Error>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, Self::Error>;
    fn int(&self, column: &str) -> Result<i64, Self::Error>;
    fn optional_int(&self, column: &str) -> Result<Option<i64>, Self::Error>;
    fn optional_float(&self, column: &str) -> Result<Option<f64>, Self::Error>;
    /// A list of texts, in whatever form the store keeps one.
    fn text_list(&self, column: &str) -> Result<Vec<String>, Self::Error>;
    /// The error for `text` in `column`, which names no known value.
    fn unknown(&self, column: &str, text: &str) -> Self::Error;
}

/// A row with the columns of `sessions`.
pub(crate) fn session_record<R: Columns>(row: &R) -> Result<SessionRecord, R::Error> {
    Ok(SessionRecord {
        session: Session {
            id: row.text("id")?,
            customer_id: row.text("customer_id")?,
            customer_name: row.text("customer_name")?,
            agent_id: row.optional_text("agent_id")?,
            agent_name: row.optional_text("agent_name")?,
            pool: row.text("pool")?,
            status: parsed(row, "status", SessionStatus::parse)?,
            subject: row.optional_text("subject")?,
            created_at: Timestamp(row.int("created_at")?),
            assigned_at: optional_timestamp(row, "assigned_at")?,
            closed_at: optional_timestamp(row, "closed_at")?,
            last_seq: row.int("last_seq")?,
            last_message_at: optional_timestamp(row, "last_message_at")?,
            participants: participants(row)?,
        },
        version: row.int("version")?,
        first_assigned_at: optional_timestamp(row, "first_assigned_at")?,
        first_response_at: optional_timestamp(row, "first_response_at")?,
        first_response_ms: row.optional_int("first_response_ms")?,
    })
}

/// A row with the columns of `messages`.
pub(crate) fn message<R: Columns>(row: &R) -> Result<Message, R::Error> {
    Ok(Message {
        id: row.text("id")?,
        session_id: row.text("session_id")?,
        seq: row.int("seq")?,
        sender_id: row.text("sender_id")?,
        sender_name: row.text("sender_name")?,
        sender_role: parsed(row, "sender_role", Role::parse)?,
        content: row.text("content")?,
        client_msg_id: row.optional_text("client_msg_id")?,
        created_at: Timestamp(row.int("created_at")?),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    })
}

/// A row with the columns `user_id`, `role` and `up_to_seq` of
/// `read_positions`.
pub(crate) fn read_position<R: Columns>(row: &R) -> Result<ReadPosition, R::Error> {
    Ok(ReadPosition {
        user_id: row.text("user_id")?,
        role: parsed(row, "role", Role::parse)?,
        up_to_seq: row.int("up_to_seq")?,
    })
}

/// A row with the columns of `agents`.
pub(crate) fn agent<R: Columns>(row: &R) -> Result<AgentRecord, R::Error> {
    Ok(AgentRecord {
        id: row.text("agent_id")?,
        name: row.text("name")?,
        pools: row.text_list("pools")?,
        last_seen_at: Timestamp(row.int("last_seen_at")?),
    })
}

/// A row of `sql::pool_figures`, whose averages are in milliseconds.
pub(crate) fn pool_figures<R: Columns>(row: &R) -> Result<PoolFigures, R::Error> {
    let seconds = |millis: Option<f64>| millis.map(|millis| millis / 1000.0);
    Ok(PoolFigures {
        pending_sessions: row.int("pending_sessions")?,
        active_sessions: row.int("active_sessions")?,
        closed_today: row.int("closed_today")?,
        oldest_pending_created_at: optional_timestamp(row, "oldest_pending_created_at")?,
        avg_wait_seconds: seconds(row.optional_float("avg_wait_ms")?),
        avg_first_response_seconds: seconds(row.optional_float("avg_first_response_ms")?),
        messages_today: row.int("messages_today")?,
    })
}

/// The `participants` column: a JSON array of Participant.
fn participants<R: Columns>(row: &R) -> Result<Vec<crate::protocol::Participant>, R::Error> {
    let text = row.text("participants")?;
    serde_json::from_str(&text).map_err(|_| row.unknown("participants", &text))
}

/// The `participants` column's text for a session's colleagues.
pub(crate) fn participants_json(participants: &[crate::protocol::Participant]) -> String {
    // A list of plain strings and numbers always serialises.
    serde_json::to_string(participants).unwrap_or_else(|_| "[]".to_owned())
}

fn optional_timestamp<R: Columns>(row: &R, column: &str) -> Result<Option<Timestamp>, R::Error> {
    Ok(row.optional_int(column)?.map(Timestamp))
}

/// A text column holding one of an enum's names.
fn parsed<R: Columns, T>(
    row: &R,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, R::Error> {
    let text = row.text(column)?;
    parse(&text).ok_or_else(|| row.unknown(column, &text))
}
