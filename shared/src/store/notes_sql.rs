//! The SQL of internal notes and invited colleagues, for both stores: the
//! note insert and reads (by client id, the latest number, pages), the
//! write of a session's colleagues, and the row a note decodes to.
//!
//! Notes live in `session_notes`, never in `messages` (migration 9): every
//! read of messages is then blind to them by construction, and message
//! numbers keep running without gaps. A note's `seq` is the notes' own
//! sequence of its session; the unique index on (session, seq) is what
//! makes two writers that overlap on a partition fail rather than number
//! two notes alike.

use crate::protocol::{Message, Role};
use crate::store::rows::Columns;
use crate::store::sql::{Dialect, MessageWindow};
use crate::store::MessageRange;
use crate::Timestamp;

/// Columns of `session_notes`, in the order rows are written.
pub(crate) const NOTE_COLUMNS: &str = "id, session_id, seq, after_seq, sender_id, sender_name, \
     sender_role, content, client_msg_id, created_at";

/// Parameters in `NOTE_COLUMNS` order.
pub(crate) fn insert_note(dialect: Dialect) -> String {
    let params: Vec<String> = (1..=10).map(|n| dialect.param(n)).collect();
    format!(
        "INSERT INTO session_notes ({NOTE_COLUMNS}) VALUES ({})",
        params.join(", ")
    )
}

/// A note by (session id, sender id, client message id).
pub(crate) fn note_by_client_id(dialect: Dialect) -> String {
    format!(
        "SELECT {NOTE_COLUMNS} FROM session_notes \
         WHERE session_id = {} AND sender_id = {} AND client_msg_id = {}",
        dialect.param(1),
        dialect.param(2),
        dialect.param(3)
    )
}

/// The latest note number of a session (the parameter); 0 without notes.
/// One probe of the (session, seq) index.
pub(crate) fn last_note_seq(dialect: Dialect) -> String {
    format!(
        "SELECT COALESCE(MAX(seq), 0) AS last_seq FROM session_notes WHERE session_id = {}",
        dialect.param(1)
    )
}

/// Sets a session's colleagues (parameters: session id, their JSON).
pub(crate) fn set_participants(dialect: Dialect) -> String {
    format!(
        "UPDATE sessions SET participants = {} WHERE id = {}",
        dialect.param(2),
        dialect.param(1)
    )
}

/// One page of a session's notes, windowed like messages (same bounds,
/// lookahead and order): the statement (parameters: session id, lower,
/// upper, fetch) and the window that turns its rows into the page.
pub(crate) fn note_page(
    dialect: Dialect,
    range: MessageRange,
    limit: usize,
) -> (String, MessageWindow) {
    let window = MessageWindow::new(range, limit);
    let sql = window.sql_over(dialect, "session_notes", NOTE_COLUMNS);
    (sql, window)
}

/// The values a note is written with, in `NOTE_COLUMNS` order.
pub(crate) struct NoteRow<'a> {
    pub id: &'a str,
    pub session_id: &'a str,
    pub seq: i64,
    pub after_seq: i64,
    pub sender_id: &'a str,
    pub sender_name: &'a str,
    pub sender_role: &'static str,
    pub content: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub created_at: i64,
}

impl<'a> NoteRow<'a> {
    pub(crate) fn of(note: &'a Message) -> Self {
        NoteRow {
            id: &note.id,
            session_id: &note.session_id,
            seq: note.seq,
            after_seq: note.after_seq.unwrap_or(0),
            sender_id: &note.sender_id,
            sender_name: &note.sender_name,
            sender_role: note.sender_role.as_str(),
            content: &note.content,
            client_msg_id: note.client_msg_id.as_deref(),
            created_at: note.created_at.millis(),
        }
    }
}

/// A row with the columns of `session_notes`: a Message with `internal`.
pub(crate) fn note<R: Columns>(row: &R) -> Result<Message, R::Error> {
    let role = row.text("sender_role")?;
    Ok(Message {
        id: row.text("id")?,
        session_id: row.text("session_id")?,
        seq: row.int("seq")?,
        sender_id: row.text("sender_id")?,
        sender_name: row.text("sender_name")?,
        sender_role: Role::parse(&role).ok_or_else(|| row.unknown("sender_role", &role))?,
        content: row.text("content")?,
        client_msg_id: row.optional_text("client_msg_id")?,
        created_at: Timestamp(row.int("created_at")?),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: true,
        after_seq: Some(row.int("after_seq")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notes_page_reads_session_notes_through_the_message_window() {
        let (sql, window) = note_page(Dialect::Sqlite, MessageRange::Latest, 3);
        assert_eq!(
            sql,
            format!(
                "SELECT {NOTE_COLUMNS} FROM session_notes \
                 WHERE session_id = ?1 AND seq > ?2 AND seq < ?3 \
                 ORDER BY seq DESC LIMIT ?4"
            )
        );
        assert_eq!(window.fetch(), 4);
        let (sql, _) = note_page(Dialect::Postgres, MessageRange::After(5), 3);
        assert!(sql.ends_with("seq > $2 AND seq < $3 ORDER BY seq ASC LIMIT $4"));
    }
}
