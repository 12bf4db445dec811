//! Internal notes and invited colleagues on the SQLite file: the writes a
//! commit runs for `InsertNote` and `SetParticipants`, and the reads of
//! notes (the batch's lookups and the pages of `Store::notes`). The SQL
//! is `store::notes_sql`, shared with PostgreSQL.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::protocol::{Message, MessagePage, Participant};
use crate::store::notes_sql::{self, NoteRow};
use crate::store::sql::Dialect;
use crate::store::{rows, MessageRange, StoreError};

const SQLITE: Dialect = Dialect::Sqlite;

pub(super) fn insert_note(tx: &Transaction<'_>, note: &Message) -> Result<(), StoreError> {
    let row = NoteRow::of(note);
    tx.prepare_cached(&notes_sql::insert_note(SQLITE))?
        .execute(params![
            row.id,
            row.session_id,
            row.seq,
            row.after_seq,
            row.sender_id,
            row.sender_name,
            row.sender_role,
            row.content,
            row.client_msg_id,
            row.created_at
        ])
        .map_err(|err| {
            super::commit::collision_is_conflict(err, || {
                format!("note {} of session {}", note.seq, note.session_id)
            })
        })?;
    Ok(())
}

pub(super) fn set_participants(
    tx: &Transaction<'_>,
    session_id: &str,
    participants: &[Participant],
) -> Result<(), StoreError> {
    let written = tx
        .prepare_cached(&notes_sql::set_participants(SQLITE))?
        .execute(params![session_id, rows::participants_json(participants)])?;
    if written == 0 {
        return Err(StoreError::Conflict(format!(
            "session {session_id} is not stored"
        )));
    }
    Ok(())
}

pub(super) fn last_note_seq(conn: &Connection, session_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(&notes_sql::last_note_seq(SQLITE))?
        .query_row([session_id], |row| row.get(0))?)
}

pub(super) fn note_by_client_id(
    conn: &Connection,
    (session_id, sender_id, client_msg_id): &(String, String, String),
) -> Result<Option<Message>, StoreError> {
    Ok(conn
        .prepare_cached(&notes_sql::note_by_client_id(SQLITE))?
        .query_row([session_id, sender_id, client_msg_id], |row| {
            notes_sql::note(row)
        })
        .optional()?)
}

pub(super) fn note_page(
    conn: &Connection,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let (sql, window) = notes_sql::note_page(SQLITE, range, limit);
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        params![session_id, window.lower, window.upper, window.fetch()],
        |row| notes_sql::note(row),
    )?;
    Ok(window.page(rows.collect::<Result<Vec<_>, _>>()?))
}
