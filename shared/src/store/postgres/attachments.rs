//! Attachments' metadata in the cluster's database, through
//! `attachments_sql`.

use deadpool_postgres::Object;

use crate::store::attachments_sql::{self, AttachmentRecord};
use crate::store::sql::Dialect;
use crate::store::StoreError;
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
        .query(&statement, &[&before.0, &attachments_sql::limit(limit)])
        .await?;
    rows.iter().map(attachments_sql::attachment_row).collect()
}

pub(super) async fn delete_unreferenced(client: &Object, id: &str) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(&attachments_sql::delete_unreferenced(POSTGRES))
        .await?;
    Ok(client.execute(&statement, &[&id]).await? > 0)
}
