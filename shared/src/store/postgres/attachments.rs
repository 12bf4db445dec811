//! Attachments' metadata in the cluster's database, through
//! `attachments_sql`: uploads' rows, the messages that come to carry them
//! (in the batch's transaction), and the files of a page of history.

use deadpool_postgres::{Object, Transaction};

use crate::protocol::MessagePage;
use crate::store::attachments_sql::{self, AttachmentRecord};
use crate::store::sql::{self, Dialect};
use crate::store::{BatchKeys, BatchSnapshot, Mutation, StoreError};
use crate::Timestamp;

const POSTGRES: Dialect = Dialect::Postgres;

pub(super) async fn insert(client: &Object, row: &AttachmentRecord) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(&attachments_sql::insert(POSTGRES))
        .await?;
    client
        .execute(
            &statement,
            &[
                &row.id,
                &row.session_id,
                &row.uploader_id,
                &row.name,
                &row.size,
                &row.content_type,
                &row.sha256,
                &row.width,
                &row.height,
                &row.created_at.0,
                &row.referenced_by_seq,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn by_id(
    client: &Object,
    id: &str,
) -> Result<Option<AttachmentRecord>, StoreError> {
    let statement = client
        .prepare_cached(&attachments_sql::by_id(POSTGRES))
        .await?;
    match client.query_opt(&statement, &[&id]).await? {
        Some(row) => Ok(Some(attachments_sql::attachment_row(&row)?)),
        None => Ok(None),
    }
}

pub(super) async fn unreferenced_before(
    client: &Object,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<AttachmentRecord>, StoreError> {
    let statement = client
        .prepare_cached(&attachments_sql::unreferenced_before(POSTGRES))
        .await?;
    let rows = client
        .query(&statement, &[&before.0, &sql::sql_limit(limit)])
        .await?;
    rows.iter().map(attachments_sql::attachment_row).collect()
}

pub(super) async fn delete_unreferenced(client: &Object, id: &str) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(&attachments_sql::delete_unreferenced(POSTGRES))
        .await?;
    Ok(client.execute(&statement, &[&id]).await? > 0)
}

/// Marks the batch's files as carried by their messages, in its
/// transaction; a file of another session, or one a message already
/// carries, fails the batch. Messages carry a handful of files, and few
/// messages carry any: one statement per file.
pub(super) async fn reference(
    tx: &Transaction<'_>,
    mutations: &[Mutation],
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(&attachments_sql::reference(POSTGRES))
        .await?;
    for mutation in mutations {
        if let Mutation::ReferenceAttachment {
            attachment_id,
            session_id,
            seq,
        } = mutation
        {
            if tx
                .execute(&statement, &[attachment_id, session_id, seq])
                .await?
                == 0
            {
                return Err(StoreError::Conflict(format!(
                    "attachment {attachment_id} is not a free upload of session {session_id}"
                )));
            }
        }
    }
    Ok(())
}

/// Adds the files a batch names to its snapshot, and the files of the
/// messages it found by client id (a retried send answers with them).
pub(super) async fn load(
    db: &deadpool_postgres::ClientWrapper,
    keys: &BatchKeys,
    snapshot: &mut BatchSnapshot,
) -> Result<(), StoreError> {
    if !keys.attachment_ids.is_empty() {
        let statement = db
            .prepare_cached(&attachments_sql::by_ids_postgres())
            .await?;
        for row in db.query(&statement, &[&keys.attachment_ids]).await? {
            let row = attachments_sql::attachment_row(&row)?;
            snapshot.attachments.insert(row.id.clone(), row);
        }
    }
    for message in snapshot.messages_by_client_id.values_mut() {
        let rows = of_messages(db, &message.session_id, message.seq, message.seq).await?;
        attachments_sql::fill_attachments(std::slice::from_mut(message), rows);
    }
    Ok(())
}

/// Fills the attachments of a page of one session's history: one read.
pub(super) async fn fill_page(
    client: &Object,
    session_id: &str,
    page: &mut MessagePage,
) -> Result<(), StoreError> {
    let Some((first, last)) = sql::page_span(&page.items) else {
        return Ok(());
    };
    let rows = of_messages(client, session_id, first, last).await?;
    attachments_sql::fill_attachments(&mut page.items, rows);
    Ok(())
}

async fn of_messages(
    db: &deadpool_postgres::ClientWrapper,
    session_id: &str,
    first: i64,
    last: i64,
) -> Result<Vec<AttachmentRecord>, StoreError> {
    let statement = db
        .prepare_cached(&attachments_sql::of_messages(POSTGRES))
        .await?;
    let rows = db.query(&statement, &[&session_id, &first, &last]).await?;
    rows.iter().map(attachments_sql::attachment_row).collect()
}
