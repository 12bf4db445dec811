//! Attachments' metadata in the standalone file, through `attachments_sql`:
//! uploads' rows, the messages that come to carry them, and the files of a
//! page of history.

use rusqlite::{params, Connection, OptionalExtension};

use super::queries::fill;

use crate::protocol::MessagePage;
use crate::store::attachments_sql::{self, AttachmentRecord};
use crate::store::sql::{self, Dialect};
use crate::store::{BatchKeys, BatchSnapshot, StoreError};
use crate::Timestamp;

const SQLITE: Dialect = Dialect::Sqlite;

pub(super) fn insert(conn: &Connection, row: &AttachmentRecord) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(&attachments_sql::insert(SQLITE))?;
    statement.execute(params![
        row.id,
        row.session_id,
        row.uploader_id,
        row.name,
        row.size,
        row.content_type,
        row.sha256,
        row.width,
        row.height,
        row.created_at.0,
        row.referenced_by_seq,
    ])?;
    Ok(())
}

pub(super) fn by_id(conn: &Connection, id: &str) -> Result<Option<AttachmentRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&attachments_sql::by_id(SQLITE))?;
    Ok(statement
        .query_row([id], |row| attachments_sql::attachment_row(row))
        .optional()?)
}

pub(super) fn unreferenced_before(
    conn: &Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<AttachmentRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&attachments_sql::unreferenced_before(SQLITE))?;
    let rows = statement
        .query_map(params![before.0, sql::sql_limit(limit)], |row| {
            attachments_sql::attachment_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn delete_unreferenced(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let mut statement = conn.prepare_cached(&attachments_sql::delete_unreferenced(SQLITE))?;
    Ok(statement.execute([id])? > 0)
}

/// Marks the file as carried by message `seq`; a file of another session,
/// or one a message already carries, fails the batch.
pub(super) fn reference(
    tx: &Connection,
    attachment_id: &str,
    session_id: &str,
    seq: i64,
) -> Result<(), StoreError> {
    let mut statement = tx.prepare_cached(&attachments_sql::reference(SQLITE))?;
    if statement.execute(params![attachment_id, session_id, seq])? == 0 {
        return Err(StoreError::Conflict(format!(
            "attachment {attachment_id} is not a free upload of session {session_id}"
        )));
    }
    Ok(())
}

/// Adds the files a batch names to its snapshot, and the files of the
/// messages it found by client id (a retried send answers with them).
pub(super) fn load(
    conn: &Connection,
    keys: &BatchKeys,
    snapshot: &mut BatchSnapshot,
) -> Result<(), StoreError> {
    fill(&mut snapshot.attachments, &keys.attachment_ids, |id| {
        by_id(conn, id)
    })?;
    for message in snapshot.messages_by_client_id.values_mut() {
        let rows = of_messages(conn, &message.session_id, message.seq, message.seq)?;
        attachments_sql::fill_attachments(std::slice::from_mut(message), rows);
    }
    Ok(())
}

/// Fills the attachments of a page of one session's history: one read.
pub(super) fn fill_page(
    conn: &Connection,
    session_id: &str,
    page: &mut MessagePage,
) -> Result<(), StoreError> {
    let Some((first, last)) = sql::page_span(&page.items) else {
        return Ok(());
    };
    let rows = of_messages(conn, session_id, first, last)?;
    attachments_sql::fill_attachments(&mut page.items, rows);
    Ok(())
}

fn of_messages(
    conn: &Connection,
    session_id: &str,
    first: i64,
    last: i64,
) -> Result<Vec<AttachmentRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&attachments_sql::of_messages(SQLITE))?;
    let rows = statement
        .query_map(params![session_id, first, last], |row| {
            attachments_sql::attachment_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
