//! Reactions and delivery positions in the cluster's database: their writes
//! in a batch's transaction (one statement per kind, whatever the number of
//! rows), what a batch loads of them, the reactions of a page of history
//! (one range read per page) and a session's delivery positions. The SQL
//! of single rows is `store::reactions_sql`'s, shared with SQLite.
//!
//! A batch's reaction changes are folded per (session, seq, emoji, user),
//! as `ReactionChange`s in the commit's sorting pass:
//! a key taken back anywhere in the batch is deleted first, and a key whose
//! last change adds it is then inserted with that change's time. That is
//! what applying them in turn does (a reaction taken back and given again
//! carries its new time), in two statements instead of one per change.

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::types::ToSql;

use crate::protocol::{MessagePage, ReadPosition};
use crate::store::reactions_sql::{self, ReactionRow};
use crate::store::rows;
use crate::store::sql::{self, Dialect};
use crate::store::{BatchKeys, BatchSnapshot, StoreError};
use crate::Timestamp;

const POSTGRES: Dialect = Dialect::Postgres;

/// Takes back a batch's reactions, one array per key column.
const DELETE_REACTIONS: &str = "DELETE FROM message_reactions AS r \
     USING UNNEST($1::text[], $2::int8[], $3::text[], $4::text[]) \
       AS k (session_id, seq, emoji, user_id) \
     WHERE r.session_id = k.session_id AND r.seq = k.seq \
       AND r.emoji = k.emoji AND r.user_id = k.user_id";

/// Adds a batch's reactions (key columns and times); one already there
/// keeps its time.
const INSERT_REACTIONS: &str =
    "INSERT INTO message_reactions (session_id, seq, emoji, user_id, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[]) \
     ON CONFLICT (session_id, seq, emoji, user_id) DO NOTHING";

/// Sets a batch's delivery positions (session, user, role, up to seq,
/// time).
const UPSERT_DELIVERY_POSITIONS: &str =
    "INSERT INTO delivery_positions (session_id, user_id, role, up_to_seq, delivered_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) \
     ON CONFLICT (session_id, user_id) DO UPDATE SET role = excluded.role, \
     up_to_seq = excluded.up_to_seq, delivered_at = excluded.delivered_at";

/// A reaction in a batch: (session, seq, emoji, user).
pub(super) type ReactionKey<'a> = (&'a str, i64, &'a str, &'a str);

/// A delivery position in a batch: (session, user).
pub(super) type DeliveryKey<'a> = (&'a str, &'a str);

/// A delivery position's last change in a batch, and its time.
pub(super) type Delivery<'a> = (&'a ReadPosition, Timestamp);

/// What a batch's changes of one reaction key do, folded in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReactionChange {
    /// Whether any change takes the reaction back: its row goes first.
    taken_back: bool,
    /// Whether the last change gives it: its row is then inserted.
    given: bool,
    /// The last change's time, in milliseconds.
    at: i64,
}

impl ReactionChange {
    pub(super) fn new(on: bool, at: Timestamp) -> Self {
        ReactionChange {
            taken_back: !on,
            given: on,
            at: at.millis(),
        }
    }

    /// Folds a later change of the same key into this one.
    pub(super) fn then(&mut self, later: ReactionChange) {
        self.taken_back |= later.taken_back;
        self.given = later.given;
        self.at = later.at;
    }
}

/// Applies the batch's reaction and delivery position changes, each
/// folded per key in first-seen order.
pub(super) async fn write(
    tx: &Transaction<'_>,
    reactions: &[(ReactionKey<'_>, ReactionChange)],
    positions: &[(DeliveryKey<'_>, Delivery<'_>)],
) -> Result<(), StoreError> {
    let taken_back: Vec<&(ReactionKey<'_>, ReactionChange)> = reactions
        .iter()
        .filter(|(_, change)| change.taken_back)
        .collect();
    if !taken_back.is_empty() {
        let (sessions, seqs, emoji, users) = columns(taken_back.iter().map(|entry| entry.0));
        let statement = tx.prepare_cached(DELETE_REACTIONS).await?;
        tx.execute(&statement, &[&sessions, &seqs, &emoji, &users])
            .await?;
    }
    let given: Vec<&(ReactionKey<'_>, ReactionChange)> = reactions
        .iter()
        .filter(|(_, change)| change.given)
        .collect();
    if !given.is_empty() {
        let (sessions, seqs, emoji, users) = columns(given.iter().map(|entry| entry.0));
        let times: Vec<i64> = given.iter().map(|(_, change)| change.at).collect();
        let statement = tx.prepare_cached(INSERT_REACTIONS).await?;
        tx.execute(&statement, &[&sessions, &seqs, &emoji, &users, &times])
            .await?;
    }
    if !positions.is_empty() {
        let sessions: Vec<&str> = positions.iter().map(|((session, _), _)| *session).collect();
        let users: Vec<&str> = positions.iter().map(|((_, user), _)| *user).collect();
        let roles: Vec<&str> = positions
            .iter()
            .map(|(_, (p, _))| p.role.as_str())
            .collect();
        let seqs: Vec<i64> = positions.iter().map(|(_, (p, _))| p.up_to_seq).collect();
        let times: Vec<i64> = positions.iter().map(|(_, (_, at))| at.millis()).collect();
        let params: [&(dyn ToSql + Sync); 5] = [&sessions, &users, &roles, &seqs, &times];
        let statement = tx.prepare_cached(UPSERT_DELIVERY_POSITIONS).await?;
        tx.execute(&statement, &params).await?;
    }
    Ok(())
}

type KeyColumns<'a> = (Vec<&'a str>, Vec<i64>, Vec<&'a str>, Vec<&'a str>);

fn columns<'a>(keys: impl Iterator<Item = ReactionKey<'a>>) -> KeyColumns<'a> {
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
    let Some((first, last)) = sql::page_span(&page.items) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(changes: &[(bool, i64)]) -> (bool, bool, i64) {
        let mut changes = changes
            .iter()
            .map(|&(on, at)| ReactionChange::new(on, Timestamp(at)));
        let mut folded = changes.next().expect("a change");
        for later in changes {
            folded.then(later);
        }
        (folded.taken_back, folded.given, folded.at)
    }

    #[test]
    fn a_key_taken_back_anywhere_is_deleted_and_its_last_change_decides_the_insert() {
        assert_eq!(folded(&[(true, 1)]), (false, true, 1));
        assert_eq!(folded(&[(false, 1)]), (true, false, 1));
        assert_eq!(folded(&[(true, 1), (false, 2)]), (true, false, 2));
        assert_eq!(folded(&[(true, 1), (false, 2), (true, 3)]), (true, true, 3));
        assert_eq!(folded(&[(true, 1), (true, 4)]), (false, true, 4));
    }
}
