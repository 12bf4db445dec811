//! Reactions and delivery positions in the standalone file: their writes
//! inside a batch's transaction, what a batch loads of them, the reactions
//! of a page of history (one range read per page) and a session's delivery
//! positions. The SQL is `store::reactions_sql`'s, shared with PostgreSQL.

use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::queries::fill;

use crate::protocol::{MessagePage, ReadPosition};
use crate::store::reactions_sql::{self, ReactionRow};
use crate::store::rows;
use crate::store::sql::{self, Dialect};
use crate::store::{BatchKeys, BatchSnapshot, StoreError};
use crate::Timestamp;

const SQLITE: Dialect = Dialect::Sqlite;

static INSERT: LazyLock<String> = LazyLock::new(|| reactions_sql::insert_reaction(SQLITE));
static DELETE: LazyLock<String> = LazyLock::new(|| reactions_sql::delete_reaction(SQLITE));
static OF_MESSAGE: LazyLock<String> = LazyLock::new(|| reactions_sql::reactions_of_message(SQLITE));
static BETWEEN: LazyLock<String> = LazyLock::new(|| reactions_sql::reactions_between(SQLITE));
static UPSERT_DELIVERY: LazyLock<String> =
    LazyLock::new(|| reactions_sql::upsert_delivery_position(SQLITE));
static DELIVERY_OF: LazyLock<String> =
    LazyLock::new(|| reactions_sql::delivery_position_of(SQLITE));

/// `Mutation::SetReaction`.
pub(super) fn set_reaction(
    conn: &Connection,
    (session_id, seq, emoji, user_id): (&str, i64, &str, &str),
    on: bool,
    at: Timestamp,
) -> Result<(), StoreError> {
    if on {
        conn.prepare_cached(&INSERT)?.execute(params![
            session_id,
            seq,
            emoji,
            user_id,
            at.millis()
        ])?;
    } else {
        conn.prepare_cached(&DELETE)?
            .execute(params![session_id, seq, emoji, user_id])?;
    }
    Ok(())
}

/// `Mutation::SetDeliveryPosition`.
pub(super) fn set_delivery_position(
    conn: &Connection,
    session_id: &str,
    position: &ReadPosition,
    delivered_at: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(&UPSERT_DELIVERY)?.execute(params![
        session_id,
        position.user_id,
        position.role.as_str(),
        position.up_to_seq,
        delivered_at.millis(),
    ])?;
    Ok(())
}

/// Adds what `keys` names of reactions and delivery positions to
/// `snapshot`, inside the batch read's transaction. A message without
/// reactions gets no entry, as a position never set does.
pub(super) fn load(
    conn: &Connection,
    keys: &BatchKeys,
    snapshot: &mut BatchSnapshot,
) -> Result<(), StoreError> {
    fill(
        &mut snapshot.reactions,
        &keys.reactions,
        |(session_id, seq)| {
            let found = conn
                .prepare_cached(&OF_MESSAGE)?
                .query_map(params![session_id, seq], reaction_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((!found.is_empty()).then_some(found))
        },
    )?;
    fill(
        &mut snapshot.delivery_positions,
        &keys.delivery_positions,
        |(session_id, user_id)| {
            Ok(conn
                .prepare_cached(&DELIVERY_OF)?
                .query_row([session_id, user_id], |row| row.get(0))
                .optional()?)
        },
    )
}

/// Fills the reactions of a page of `session_id`'s history.
pub(super) fn fill_page(
    conn: &Connection,
    session_id: &str,
    page: &mut MessagePage,
) -> Result<(), StoreError> {
    let Some((first, last)) = sql::page_span(&page.items) else {
        return Ok(());
    };
    let mut statement = conn.prepare_cached(&BETWEEN)?;
    let found = statement
        .query_map(params![session_id, first, last], |row| {
            Ok((row.get::<_, i64>("seq")?, reaction_row(row)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    reactions_sql::fill_reactions(&mut page.items, found);
    Ok(())
}

/// A row of `reactions_of_message` or `reactions_between`.
fn reaction_row(row: &Row<'_>) -> rusqlite::Result<ReactionRow> {
    Ok(ReactionRow {
        emoji: row.get("emoji")?,
        user_id: row.get("user_id")?,
        created_at: Timestamp(row.get("created_at")?),
    })
}

pub(super) fn delivery_positions(
    conn: &Connection,
    session_id: &str,
) -> Result<Vec<ReadPosition>, StoreError> {
    let mut statement = conn.prepare_cached(&reactions_sql::delivery_positions(SQLITE))?;
    let found = statement.query_map([session_id], |row| rows::read_position(row))?;
    Ok(found.collect::<Result<Vec<_>, _>>()?)
}
