//! The record of uploaded files (the `attachments` table of migration 6),
//! for both stores: the row as the store keeps it, the SQL that writes,
//! reads and removes it, and the decoding of its rows. The bytes are in the
//! blob store under the same id; a row is written once they are there.

use crate::protocol::{Attachment, Message};
use crate::store::rows::Columns;
use crate::store::sql::Dialect;
use crate::Timestamp;

/// An uploaded file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRecord {
    /// Also the id of its blob.
    pub id: String,
    pub session_id: String,
    pub uploader_id: String,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// Pixel size, for the image types whose header tells it.
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub created_at: Timestamp,
    /// The message of the session that refers to the file, once one does;
    /// files no message refers to are removed after a while.
    pub referenced_by_seq: Option<i64>,
}

/// Columns of `attachments`, in the order rows are written.
const COLUMNS: &str = "id, session_id, uploader_id, name, size, content_type, sha256, width, \
                       height, created_at, referenced_by_seq";

/// The columns as read: PostgreSQL's `INTEGER` image sizes as 64-bit, as
/// every integer the rows decoder reads.
fn select_columns(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => COLUMNS.to_owned(),
        Dialect::Postgres => COLUMNS.replace(
            "width, height",
            "width::bigint AS width, height::bigint AS height",
        ),
    }
}

/// Parameters in `COLUMNS`' order; PostgreSQL takes the image sizes as
/// 64-bit and narrows them to its `INTEGER` columns.
pub(crate) fn insert(dialect: Dialect) -> String {
    let params: Vec<String> = (1..=11)
        .map(|n| match (dialect, n) {
            (Dialect::Postgres, 8 | 9) => format!("{}::bigint", dialect.param(n)),
            _ => dialect.param(n),
        })
        .collect();
    format!(
        "INSERT INTO attachments ({COLUMNS}) VALUES ({})",
        params.join(", ")
    )
}

/// Parameter: the id.
pub(crate) fn by_id(dialect: Dialect) -> String {
    format!(
        "SELECT {} FROM attachments WHERE id = {}",
        select_columns(dialect),
        dialect.param(1)
    )
}

/// Parameter: an array of ids (PostgreSQL only: one read for a batch).
pub(crate) fn by_ids_postgres() -> String {
    format!(
        "SELECT {} FROM attachments WHERE id = ANY($1::text[])",
        select_columns(Dialect::Postgres)
    )
}

/// Parameters: created before, limit. Oldest first (the partial index
/// `attachments_unreferenced` serves it).
pub(crate) fn unreferenced_before(dialect: Dialect) -> String {
    format!(
        "SELECT {} FROM attachments WHERE referenced_by_seq IS NULL AND created_at < {} \
         ORDER BY created_at, id LIMIT {}",
        select_columns(dialect),
        dialect.param(1),
        dialect.param(2)
    )
}

/// Parameter: the id. Only while no message refers to the file: a message
/// that refers to it meanwhile keeps it.
pub(crate) fn delete_unreferenced(dialect: Dialect) -> String {
    format!(
        "DELETE FROM attachments WHERE id = {} AND referenced_by_seq IS NULL",
        dialect.param(1)
    )
}

/// Parameters: id, session id, seq. Only a file of that session that no
/// message carries yet: zero rows changed means the reference is refused.
pub(crate) fn reference(dialect: Dialect) -> String {
    format!(
        "UPDATE attachments SET referenced_by_seq = {} WHERE id = {} AND session_id = {} \
         AND referenced_by_seq IS NULL",
        dialect.param(3),
        dialect.param(1),
        dialect.param(2)
    )
}

/// Parameters: session id, first seq, last seq. The files carried by the
/// session's messages in that span, in upload order.
pub(crate) fn of_messages(dialect: Dialect) -> String {
    format!(
        "SELECT {} FROM attachments WHERE session_id = {} AND referenced_by_seq >= {} \
         AND referenced_by_seq <= {} ORDER BY created_at, id",
        select_columns(dialect),
        dialect.param(1),
        dialect.param(2),
        dialect.param(3)
    )
}

impl AttachmentRecord {
    /// The file as clients see it (Attachment).
    pub fn public(&self) -> Attachment {
        Attachment {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            name: self.name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            width: self.width,
            height: self.height,
            created_at: self.created_at,
        }
    }
}

/// Fills the `attachments` of `messages` (one session's messages) from the
/// files read for them, in the order read.
pub(crate) fn fill_attachments(messages: &mut [Message], rows: Vec<AttachmentRecord>) {
    for row in rows {
        let Some(seq) = row.referenced_by_seq else {
            continue;
        };
        if let Some(message) = messages.iter_mut().find(|m| m.seq == seq) {
            message.attachments.push(row.public());
        }
    }
}

/// A row of `by_id` or `unreferenced_before`.
pub(crate) fn attachment_row<R: Columns>(row: &R) -> Result<AttachmentRecord, R::Error> {
    Ok(AttachmentRecord {
        id: row.text("id")?,
        session_id: row.text("session_id")?,
        uploader_id: row.text("uploader_id")?,
        name: row.text("name")?,
        size: row.int("size")?,
        content_type: row.text("content_type")?,
        sha256: row.text("sha256")?,
        width: row.optional_int("width")?,
        height: row.optional_int("height")?,
        created_at: Timestamp(row.int("created_at")?),
        referenced_by_seq: row.optional_int("referenced_by_seq")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_name_every_column() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let insert = insert(dialect);
            assert_eq!(insert.matches(", ").count(), 2 * 10, "{insert}");
            assert!(by_id(dialect).contains("referenced_by_seq"));
        }
        assert!(insert(Dialect::Postgres).contains("$8::bigint, $9::bigint, $10"));
        assert!(by_id(Dialect::Postgres).contains("width::bigint AS width"));
    }
}
