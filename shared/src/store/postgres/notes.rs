//! Internal notes and invited colleagues on PostgreSQL: the statements a
//! commit runs for `InsertNote` and `SetParticipants` in the batch's
//! transaction (after `chat_commit_batch`, which has checked the versions
//! of the rows the batch updates), the batch's lookups of notes, and the
//! pages of `Store::notes`. The SQL is `store::notes_sql`, shared with
//! SQLite.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use crate::protocol::MessagePage;
use crate::store::notes_sql::{self, NoteRow};
use crate::store::sql::Dialect;
use crate::store::{rows, BatchKeys, BatchSnapshot, MessageRange, Mutation, StoreError};

const POSTGRES: Dialect = Dialect::Postgres;

/// The batch's notes and colleagues, in its order. A note colliding with
/// a stored one is a unique violation: the whole batch rolls back as a
/// conflict, as for messages.
pub(super) async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    mutations: &[Mutation],
) -> Result<(), StoreError> {
    for mutation in mutations {
        match mutation {
            Mutation::InsertNote(note) => {
                let row = NoteRow::of(note);
                let params: [&(dyn ToSql + Sync); 10] = [
                    &row.id,
                    &row.session_id,
                    &row.seq,
                    &row.after_seq,
                    &row.sender_id,
                    &row.sender_name,
                    &row.sender_role,
                    &row.content,
                    &row.client_msg_id,
                    &row.created_at,
                ];
                let statement = tx.prepare_cached(&notes_sql::insert_note(POSTGRES)).await?;
                tx.execute(&statement, &params).await?;
            }
            Mutation::SetParticipants {
                session_id,
                participants,
            } => {
                let statement = tx
                    .prepare_cached(&notes_sql::set_participants(POSTGRES))
                    .await?;
                let json = rows::participants_json(participants);
                let written = tx.execute(&statement, &[session_id, &json]).await?;
                if written == 0 {
                    return Err(StoreError::Conflict(format!(
                        "session {session_id} is not stored"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fills the snapshot's notes: each named session's latest note number
/// and the notes found by client id. Run only for batches that send notes.
pub(super) async fn load(
    db: &deadpool_postgres::ClientWrapper,
    keys: &BatchKeys,
    snapshot: &mut BatchSnapshot,
) -> Result<(), StoreError> {
    if !keys.note_sessions.is_empty() {
        let statement = db
            .prepare_cached(
                "SELECT k.session_id, \
                   (SELECT COALESCE(MAX(seq), 0) FROM session_notes n \
                     WHERE n.session_id = k.session_id) AS last_seq \
                 FROM UNNEST($1::text[]) AS k (session_id)",
            )
            .await?;
        for row in db.query(&statement, &[&keys.note_sessions]).await? {
            snapshot
                .last_note_seqs
                .insert(row.try_get("session_id")?, row.try_get("last_seq")?);
        }
    }
    for key in &keys.client_notes {
        let statement = db
            .prepare_cached(&notes_sql::note_by_client_id(POSTGRES))
            .await?;
        let (session_id, sender_id, client_msg_id) = key;
        if let Some(row) = db
            .query_opt(&statement, &[session_id, sender_id, client_msg_id])
            .await?
        {
            snapshot
                .notes_by_client_id
                .insert(key.clone(), notes_sql::note(&row)?);
        }
    }
    Ok(())
}

pub(super) async fn note_page(
    client: &Object,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let (sql, window) = notes_sql::note_page(POSTGRES, range, limit);
    let statement = client.prepare_cached(&sql).await?;
    let rows = client
        .query(
            &statement,
            &[&session_id, &window.lower, &window.upper, &window.fetch()],
        )
        .await?;
    let items = rows
        .iter()
        .map(notes_sql::note)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(window.page(items))
}
