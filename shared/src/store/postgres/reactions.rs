//! Reactions and delivery positions in the cluster's database: their writes
//! in a batch's transaction (one statement per kind, whatever the number of
//! rows), what a batch loads of them, the reactions of a page of history
//! (one range read per page) and a session's delivery positions. The SQL
//! of single rows is `store::reactions_sql`'s, shared with SQLite.
//!
//! A batch's reaction changes are folded per (session, seq, emoji, user):
//! a key taken back anywhere in the batch is deleted first, and a key whose
//! last change adds it is then inserted with that change's time. That is
//! what applying them in turn does (a reaction taken back and given again
//! carries its new time), in two statements instead of one per change.

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use crate::protocol::{MessagePage, ReadPosition};
use crate::store::reactions_sql::{self, ReactionRow};
use crate::store::rows;
use crate::store::sql::Dialect;
use crate::store::{BatchKeys, BatchSnapshot, Mutation, StoreError};
use crate::Timestamp;

const POSTGRES: Dialect = Dialect::Postgres;

/// Applies the batch's reaction and delivery position changes.
pub(super) async fn write(tx: &Transaction<'_>, mutations: &[Mutation]) -> Result<(), StoreError> {
    type Key<'a> = (&'a str, i64, &'a str, &'a str);
    // Per key: whether it was taken back in the batch, and its last change.
    let mut reactions: Vec<(Key<'_>, bool, bool, i64)> = Vec::new();
    let mut reaction_at: HashMap<Key<'_>, usize> = HashMap::new();
    let mut positions: Vec<(&str, &ReadPosition, i64)> = Vec::new();
    let mut position_at: HashMap<(&str, &str), usize> = HashMap::new();
    for mutation in mutations {
        match mutation {
            Mutation::SetReaction {
                session_id,
                seq,
                emoji,
                user_id,
                on,
                at,
            } => {
                let key = (session_id.as_str(), *seq, emoji.as_str(), user_id.as_str());
                match reaction_at.get(&key).and_then(|&i| reactions.get_mut(i)) {
                    Some(entry) => {
                        entry.1 |= !on;
                        entry.2 = *on;
                        entry.3 = at.millis();
                    }
                    None => {
                        reaction_at.insert(key, reactions.len());
                        reactions.push((key, !on, *on, at.millis()));
                    }
                }
            }
            Mutation::SetDeliveryPosition {
                session_id,
                position,
                delivered_at,
            } => {
                let key = (session_id.as_str(), position.user_id.as_str());
                let value = (session_id.as_str(), position, delivered_at.millis());
                match position_at.get(&key).and_then(|&i| positions.get_mut(i)) {
                    Some(entry) => *entry = value,
                    None => {
                        position_at.insert(key, positions.len());
                        positions.push(value);
                    }
                }
            }
            _ => {}
        }
    }

    let taken_back: Vec<&(Key<'_>, bool, bool, i64)> =
        reactions.iter().filter(|entry| entry.1).collect();
    if !taken_back.is_empty() {
        let (sessions, seqs, emoji, users) = columns(taken_back.iter().map(|entry| entry.0));
        tx.execute(
            "DELETE FROM message_reactions AS r \
             USING UNNEST($1::text[], $2::int8[], $3::text[], $4::text[]) \
               AS k (session_id, seq, emoji, user_id) \
             WHERE r.session_id = k.session_id AND r.seq = k.seq \
               AND r.emoji = k.emoji AND r.user_id = k.user_id",
            &[&sessions, &seqs, &emoji, &users],
        )
        .await?;
    }
    let given: Vec<&(Key<'_>, bool, bool, i64)> =
        reactions.iter().filter(|entry| entry.2).collect();
    if !given.is_empty() {
        let (sessions, seqs, emoji, users) = columns(given.iter().map(|entry| entry.0));
        let times: Vec<i64> = given.iter().map(|entry| entry.3).collect();
        tx.execute(
            "INSERT INTO message_reactions (session_id, seq, emoji, user_id, created_at) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[]) \
             ON CONFLICT (session_id, seq, emoji, user_id) DO NOTHING",
            &[&sessions, &seqs, &emoji, &users, &times],
        )
        .await?;
    }
    if !positions.is_empty() {
        let sessions: Vec<&str> = positions.iter().map(|p| p.0).collect();
        let users: Vec<&str> = positions.iter().map(|p| p.1.user_id.as_str()).collect();
        let roles: Vec<&str> = positions.iter().map(|p| p.1.role.as_str()).collect();
        let seqs: Vec<i64> = positions.iter().map(|p| p.1.up_to_seq).collect();
        let times: Vec<i64> = positions.iter().map(|p| p.2).collect();
        let params: [&(dyn ToSql + Sync); 5] = [&sessions, &users, &roles, &seqs, &times];
        tx.execute(
            "INSERT INTO delivery_positions (session_id, user_id, role, up_to_seq, delivered_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) \
             ON CONFLICT (session_id, user_id) DO UPDATE SET role = excluded.role, \
             up_to_seq = excluded.up_to_seq, delivered_at = excluded.delivered_at",
            &params,
        )
        .await?;
    }
    Ok(())
}

type KeyColumns<'a> = (Vec<&'a str>, Vec<i64>, Vec<&'a str>, Vec<&'a str>);

fn columns<'a>(keys: impl Iterator<Item = (&'a str, i64, &'a str, &'a str)>) -> KeyColumns<'a> {
    let mut out: KeyColumns<'a> = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (session, seq, emoji, user) in keys {
        out.0.push(session);
        out.1.push(seq);
        out.2.push(emoji);
        out.3.push(user);
    }
    out
}

/// Adds what `keys` names of reactions and delivery positions to
/// `snapshot`: one statement each, only when the batch names any.
pub(super) async fn load(
    db: &deadpool_postgres::ClientWrapper,
    keys: &BatchKeys,
    snapshot: &mut BatchSnapshot,
) -> Result<(), StoreError> {
    if !keys.reactions.is_empty() {
        let sessions: Vec<&str> = keys.reactions.iter().map(|k| k.0.as_str()).collect();
        let seqs: Vec<i64> = keys.reactions.iter().map(|k| k.1).collect();
        let statement = db
            .prepare_cached(
                "SELECT r.session_id, r.seq, r.emoji, r.user_id, r.created_at \
                 FROM UNNEST($1::text[], $2::int8[]) AS k (session_id, seq) \
                 CROSS JOIN LATERAL (SELECT * FROM message_reactions \
                   WHERE session_id = k.session_id AND seq = k.seq) AS r",
            )
            .await?;
        for row in db.query(&statement, &[&sessions, &seqs]).await? {
            let key: (String, i64) = (row.try_get("session_id")?, row.try_get("seq")?);
            snapshot
                .reactions
                .entry(key)
                .or_default()
                .push(ReactionRow {
                    emoji: row.try_get("emoji")?,
                    user_id: row.try_get("user_id")?,
                    created_at: Timestamp(row.try_get("created_at")?),
                });
        }
    }
    if !keys.delivery_positions.is_empty() {
        let (sessions, users): (Vec<&str>, Vec<&str>) = keys
            .delivery_positions
            .iter()
            .map(|(session, user)| (session.as_str(), user.as_str()))
            .unzip();
        let statement = db
            .prepare_cached(
                "SELECT d.session_id, d.user_id, d.up_to_seq \
                 FROM UNNEST($1::text[], $2::text[]) AS k (session_id, user_id) \
                 CROSS JOIN LATERAL (SELECT * FROM delivery_positions \
                   WHERE session_id = k.session_id AND user_id = k.user_id) AS d",
            )
            .await?;
        for row in db.query(&statement, &[&sessions, &users]).await? {
            let key = (row.try_get("session_id")?, row.try_get("user_id")?);
            snapshot
                .delivery_positions
                .insert(key, row.try_get("up_to_seq")?);
        }
    }
    Ok(())
}

/// Fills the reactions of a page of `session_id`'s history, on the
/// connection that read the page.
pub(super) async fn fill_page(
    client: &Object,
    session_id: &str,
    page: &mut MessagePage,
) -> Result<(), StoreError> {
    let Some((first, last)) = reactions_sql::page_span(&page.items) else {
        return Ok(());
    };
    let statement = client
        .prepare_cached(&reactions_sql::reactions_between(POSTGRES))
        .await?;
    let mut found = Vec::new();
    for row in client
        .query(&statement, &[&session_id, &first, &last])
        .await?
    {
        found.push((
            row.try_get::<_, i64>("seq")?,
            ReactionRow {
                emoji: row.try_get("emoji")?,
                user_id: row.try_get("user_id")?,
                created_at: Timestamp(row.try_get("created_at")?),
            },
        ));
    }
    reactions_sql::fill_reactions(&mut page.items, found);
    Ok(())
}

pub(super) async fn delivery_positions(
    client: &Object,
    session_id: &str,
) -> Result<Vec<ReadPosition>, StoreError> {
    let statement = client
        .prepare_cached(&reactions_sql::delivery_positions(POSTGRES))
        .await?;
    client
        .query(&statement, &[&session_id])
        .await?
        .iter()
        .map(rows::read_position)
        .collect()
}
