//! Attachments' metadata in the standalone file, through `attachments_sql`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::attachments_sql::{self, AttachmentRecord};
use crate::store::sql::Dialect;
use crate::store::StoreError;
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
        .query_map(params![before.0, attachments_sql::limit(limit)], |row| {
            attachments_sql::attachment_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn delete_unreferenced(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let mut statement = conn.prepare_cached(&attachments_sql::delete_unreferenced(SQLITE))?;
    Ok(statement.execute([id])? > 0)
}
