//! The write path: one batch of mutations, one transaction, all or nothing.
//!
//! A batch from the worker can carry hundreds of changes, so rows are not
//! written one statement each. The mutations are sorted by kind into
//! columns of values, and each kind is one statement over arrays
//! (`INSERT ... SELECT * FROM UNNEST($1::text[], ...)`): one round trip
//! whatever the number of rows, a fixed statement text that stays in the
//! statement cache, and no limit on parameters.
//!
//! The order of a batch is kept where it matters. Session rows go first
//! (messages and read positions refer to them), in runs whose session ids
//! are distinct, so a batch that inserts a session and then updates it, or
//! updates it twice, applies those in order. Users, messages and read
//! positions touch separate tables and are independent of each other, so
//! their three statements are sent together (pipelined). For read
//! positions and user names the last mutation of a key wins, as if each had
//! been applied in turn.
//!
//! Races are detected by counting rows, never by catching a failed
//! statement: inserts use `ON CONFLICT DO NOTHING` and updates check the
//! expected version in their WHERE clause, so fewer rows written than asked
//! means another writer got there first. Any shortfall fails the whole
//! batch with `StoreError::Conflict`, and the transaction is rolled back
//! before its connection goes back to the pool. (A unique violation that
//! still gets through, as SQLSTATE 23505, is a `Conflict` too.)

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::types::ToSql;

use crate::protocol::{Message, ReadPosition};
use crate::store::{Mutation, SessionRecord, StoreError};
use crate::Timestamp;

/// Applies `mutations` in one transaction.
pub(super) async fn commit(client: &mut Object, mutations: &[Mutation]) -> Result<(), StoreError> {
    let plan = Plan::new(mutations);
    let tx = client.transaction().await?;
    match write(&tx, &plan).await {
        Ok(()) => Ok(tx.commit().await?),
        Err(err) => {
            // Rolled back before the connection goes back to the pool. If
            // the connection is broken the server rolls back by itself.
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

async fn write(tx: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    for run in &plan.sessions {
        insert_sessions(tx, &run.inserts).await?;
        update_sessions(tx, &run.updates).await?;
    }
    let (users, messages, positions) = tokio::join!(
        remember_users(tx, &plan.users),
        insert_messages(tx, &plan.messages),
        set_read_positions(tx, &plan.read_positions),
    );
    // Checked in this order: once one statement fails, those after it fail
    // only because the transaction is aborted.
    users?;
    messages?;
    positions
}

// ---------------------------------------------------------------------------
// Sorting a batch

/// A batch sorted into the statements that write it.
#[derive(Debug, Default)]
struct Plan<'a> {
    sessions: Vec<SessionRun<'a>>,
    messages: MessageRows<'a>,
    read_positions: LastWins<(&'a str, &'a str), (&'a ReadPosition, Timestamp)>,
    users: LastWins<&'a str, &'a str>,
}

/// Session mutations with distinct ids: their order does not matter.
#[derive(Debug, Default)]
struct SessionRun<'a> {
    ids: HashSet<&'a str>,
    inserts: SessionRows<'a>,
    updates: SessionRows<'a>,
}

impl<'a> Plan<'a> {
    fn new(mutations: &'a [Mutation]) -> Self {
        let mut plan = Plan::default();
        for mutation in mutations {
            match mutation {
                Mutation::InsertSession(record) => plan.add_session(record, None),
                Mutation::UpdateSession {
                    record,
                    expected_version,
                } => plan.add_session(record, Some(*expected_version)),
                Mutation::InsertMessage(message) => plan.messages.push(message),
                Mutation::SetReadPosition {
                    session_id,
                    position,
                    read_at,
                } => plan.read_positions.set(
                    (session_id.as_str(), position.user_id.as_str()),
                    (position, *read_at),
                ),
                Mutation::RememberUser { user_id, name } => {
                    plan.users.set(user_id.as_str(), name.as_str())
                }
            }
        }
        plan
    }

    /// Adds a session mutation to the current run, or to a new one if the
    /// current run already touches this session.
    fn add_session(&mut self, record: &'a SessionRecord, expected_version: Option<i64>) {
        let id = record.session.id.as_str();
        match self.sessions.last_mut() {
            Some(run) if !run.ids.contains(id) => run.add(record, expected_version),
            _ => {
                let mut run = SessionRun::default();
                run.add(record, expected_version);
                self.sessions.push(run);
            }
        }
    }
}

impl<'a> SessionRun<'a> {
    fn add(&mut self, record: &'a SessionRecord, expected_version: Option<i64>) {
        self.ids.insert(record.session.id.as_str());
        match expected_version {
            None => self.inserts.push(record, None),
            Some(expected) => self.updates.push(record, Some(expected)),
        }
    }
}

/// Values by key in first-seen order, where setting a key again replaces
/// its value.
#[derive(Debug)]
struct LastWins<K, V> {
    index: HashMap<K, usize>,
    entries: Vec<(K, V)>,
}

impl<K, V> Default for LastWins<K, V> {
    fn default() -> Self {
        LastWins {
            index: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V> LastWins<K, V> {
    fn set(&mut self, key: K, value: V) {
        match self.index.get(&key) {
            Some(&at) => {
                if let Some(entry) = self.entries.get_mut(at) {
                    entry.1 = value;
                }
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Session rows as columns, in `SESSION_COLUMNS` order, plus the expected
/// version of each when they are updates.
#[derive(Debug, Default)]
struct SessionRows<'a> {
    id: Vec<&'a str>,
    customer_id: Vec<&'a str>,
    customer_name: Vec<&'a str>,
    agent_id: Vec<Option<&'a str>>,
    agent_name: Vec<Option<&'a str>>,
    pool: Vec<&'a str>,
    status: Vec<&'static str>,
    subject: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
    assigned_at: Vec<Option<i64>>,
    closed_at: Vec<Option<i64>>,
    last_seq: Vec<i64>,
    last_message_at: Vec<Option<i64>>,
    version: Vec<i64>,
    first_assigned_at: Vec<Option<i64>>,
    first_response_at: Vec<Option<i64>>,
    first_response_ms: Vec<Option<i64>>,
    expected_version: Vec<i64>,
}

impl<'a> SessionRows<'a> {
    fn push(&mut self, record: &'a SessionRecord, expected_version: Option<i64>) {
        let s = &record.session;
        self.id.push(&s.id);
        self.customer_id.push(&s.customer_id);
        self.customer_name.push(&s.customer_name);
        self.agent_id.push(s.agent_id.as_deref());
        self.agent_name.push(s.agent_name.as_deref());
        self.pool.push(&s.pool);
        self.status.push(s.status.as_str());
        self.subject.push(s.subject.as_deref());
        self.created_at.push(s.created_at.millis());
        self.assigned_at.push(millis(s.assigned_at));
        self.closed_at.push(millis(s.closed_at));
        self.last_seq.push(s.last_seq);
        self.last_message_at.push(millis(s.last_message_at));
        self.version.push(record.version);
        self.first_assigned_at
            .push(millis(record.first_assigned_at));
        self.first_response_at
            .push(millis(record.first_response_at));
        self.first_response_ms.push(record.first_response_ms);
        if let Some(expected) = expected_version {
            self.expected_version.push(expected);
        }
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    /// `$1..$17`, the columns in `SESSION_COLUMNS` order.
    fn columns(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.customer_id,
            &self.customer_name,
            &self.agent_id,
            &self.agent_name,
            &self.pool,
            &self.status,
            &self.subject,
            &self.created_at,
            &self.assigned_at,
            &self.closed_at,
            &self.last_seq,
            &self.last_message_at,
            &self.version,
            &self.first_assigned_at,
            &self.first_response_at,
            &self.first_response_ms,
        ]
    }
}

/// Message rows as columns, in `MESSAGE_COLUMNS` order.
#[derive(Debug, Default)]
struct MessageRows<'a> {
    id: Vec<&'a str>,
    session_id: Vec<&'a str>,
    seq: Vec<i64>,
    sender_id: Vec<&'a str>,
    sender_name: Vec<&'a str>,
    sender_role: Vec<&'static str>,
    content: Vec<&'a str>,
    client_msg_id: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
}

impl<'a> MessageRows<'a> {
    fn push(&mut self, message: &'a Message) {
        self.id.push(&message.id);
        self.session_id.push(&message.session_id);
        self.seq.push(message.seq);
        self.sender_id.push(&message.sender_id);
        self.sender_name.push(&message.sender_name);
        self.sender_role.push(message.sender_role.as_str());
        self.content.push(&message.content);
        self.client_msg_id.push(message.client_msg_id.as_deref());
        self.created_at.push(message.created_at.millis());
    }

    fn len(&self) -> usize {
        self.id.len()
    }
}

fn millis(time: Option<Timestamp>) -> Option<i64> {
    time.map(Timestamp::millis)
}

/// Row counts come back as u64; batches are far below either limit.
fn count(rows: usize) -> u64 {
    u64::try_from(rows).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Statements

const SESSION_ARRAYS: &str = "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], \
     $13::int8[], $14::int8[], $15::int8[], $16::int8[], $17::int8[]";

async fn insert_sessions(tx: &Transaction<'_>, rows: &SessionRows<'_>) -> Result<(), StoreError> {
    if rows.len() == 0 {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO sessions ({}) SELECT * FROM UNNEST({SESSION_ARRAYS}) \
             ON CONFLICT DO NOTHING",
            super::queries::SESSION_COLUMNS
        ))
        .await?;
    let inserted = tx.execute(&statement, &rows.columns()).await?;
    if inserted < count(rows.len()) {
        return Err(StoreError::Conflict(format!(
            "{} of {} sessions already exist",
            count(rows.len()) - inserted,
            rows.len()
        )));
    }
    Ok(())
}

async fn update_sessions(tx: &Transaction<'_>, rows: &SessionRows<'_>) -> Result<(), StoreError> {
    if rows.len() == 0 {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(&format!(
            "UPDATE sessions AS s SET \
             customer_id = u.customer_id, customer_name = u.customer_name, \
             agent_id = u.agent_id, agent_name = u.agent_name, pool = u.pool, \
             status = u.status, subject = u.subject, created_at = u.created_at, \
             assigned_at = u.assigned_at, closed_at = u.closed_at, last_seq = u.last_seq, \
             last_message_at = u.last_message_at, version = u.version, \
             first_assigned_at = u.first_assigned_at, first_response_at = u.first_response_at, \
             first_response_ms = u.first_response_ms \
             FROM UNNEST({SESSION_ARRAYS}, $18::int8[]) AS u ({}, expected_version) \
             WHERE s.id = u.id AND s.version = u.expected_version \
             RETURNING s.id",
            super::queries::SESSION_COLUMNS
        ))
        .await?;
    let mut params = rows.columns();
    params.push(&rows.expected_version);
    let updated = tx.query(&statement, &params).await?;
    if updated.len() < rows.len() {
        let done = updated
            .iter()
            .map(|row| row.try_get::<_, &str>(0))
            .collect::<Result<HashSet<_>, _>>()?;
        let stale: Vec<String> = rows
            .id
            .iter()
            .zip(&rows.expected_version)
            .filter(|(id, _)| !done.contains(**id))
            .map(|(id, version)| format!("{id} (expected version {version})"))
            .collect();
        return Err(StoreError::Conflict(format!(
            "sessions changed or missing: {}",
            stale.join(", ")
        )));
    }
    Ok(())
}

async fn insert_messages(tx: &Transaction<'_>, rows: &MessageRows<'_>) -> Result<(), StoreError> {
    if rows.len() == 0 {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO messages ({}) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::int8[]) \
             ON CONFLICT DO NOTHING",
            super::queries::MESSAGE_COLUMNS
        ))
        .await?;
    let inserted = tx
        .execute(
            &statement,
            &[
                &rows.id,
                &rows.session_id,
                &rows.seq,
                &rows.sender_id,
                &rows.sender_name,
                &rows.sender_role,
                &rows.content,
                &rows.client_msg_id,
                &rows.created_at,
            ],
        )
        .await?;
    if inserted < count(rows.len()) {
        // A seq or client id that exists already: another writer stored
        // messages in this session meanwhile (or this batch is a replay).
        return Err(StoreError::Conflict(format!(
            "{} of {} messages collide with stored ones (same seq, client id or id)",
            count(rows.len()) - inserted,
            rows.len()
        )));
    }
    Ok(())
}

async fn set_read_positions(
    tx: &Transaction<'_>,
    positions: &LastWins<(&str, &str), (&ReadPosition, Timestamp)>,
) -> Result<(), StoreError> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut session_id = Vec::with_capacity(positions.entries.len());
    let mut user_id = Vec::with_capacity(positions.entries.len());
    let mut role = Vec::with_capacity(positions.entries.len());
    let mut up_to_seq = Vec::with_capacity(positions.entries.len());
    let mut read_at = Vec::with_capacity(positions.entries.len());
    for ((session, user), (position, at)) in &positions.entries {
        session_id.push(*session);
        user_id.push(*user);
        role.push(position.role.as_str());
        up_to_seq.push(position.up_to_seq);
        read_at.push(at.millis());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO read_positions (session_id, user_id, role, up_to_seq, read_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) \
             ON CONFLICT (session_id, user_id) DO UPDATE SET \
             role = EXCLUDED.role, up_to_seq = EXCLUDED.up_to_seq, read_at = EXCLUDED.read_at",
        )
        .await?;
    tx.execute(
        &statement,
        &[&session_id, &user_id, &role, &up_to_seq, &read_at],
    )
    .await?;
    Ok(())
}

async fn remember_users(
    tx: &Transaction<'_>,
    users: &LastWins<&str, &str>,
) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    let (user_id, name): (Vec<&str>, Vec<&str>) = users.entries.iter().copied().unzip();
    // A name that did not change is left alone: no new row version to
    // write and vacuum for every join of a known user.
    let statement = tx
        .prepare_cached(
            "INSERT INTO users (user_id, name) SELECT * FROM UNNEST($1::text[], $2::text[]) \
             ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name \
             WHERE users.name IS DISTINCT FROM EXCLUDED.name",
        )
        .await?;
    tx.execute(&statement, &[&user_id, &name]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Role, Session, SessionStatus};

    fn record(id: &str, version: i64) -> SessionRecord {
        SessionRecord {
            session: Session {
                id: id.into(),
                customer_id: "c".into(),
                customer_name: "Carla".into(),
                agent_id: None,
                agent_name: None,
                pool: "p".into(),
                status: SessionStatus::Pending,
                subject: None,
                created_at: Timestamp(0),
                assigned_at: None,
                closed_at: None,
                last_seq: 0,
                last_message_at: None,
            },
            version,
            first_assigned_at: None,
            first_response_at: None,
            first_response_ms: None,
        }
    }

    fn insert(id: &str) -> Mutation {
        Mutation::InsertSession(record(id, 1))
    }

    fn update(id: &str, from: i64) -> Mutation {
        Mutation::UpdateSession {
            record: record(id, from + 1),
            expected_version: from,
        }
    }

    fn runs(mutations: &[Mutation]) -> Vec<(Vec<&str>, Vec<&str>)> {
        Plan::new(mutations)
            .sessions
            .into_iter()
            .map(|run| (run.inserts.id, run.updates.id))
            .collect()
    }

    #[test]
    fn sessions_with_distinct_ids_share_one_run() {
        let batch = [insert("a"), update("b", 1), insert("c"), update("d", 4)];
        assert_eq!(runs(&batch), vec![(vec!["a", "c"], vec!["b", "d"])]);
    }

    #[test]
    fn a_session_touched_twice_starts_a_new_run() {
        let batch = [insert("a"), update("a", 1), update("b", 1), update("a", 2)];
        assert_eq!(
            runs(&batch),
            vec![
                (vec!["a"], vec![]),
                (vec![], vec!["a", "b"]),
                (vec![], vec!["a"]),
            ]
        );
        let plan = Plan::new(&batch);
        let expected: Vec<Vec<i64>> = plan
            .sessions
            .iter()
            .map(|run| run.updates.expected_version.clone())
            .collect();
        assert_eq!(expected, vec![vec![], vec![1, 1], vec![2]]);
    }

    #[test]
    fn the_last_name_and_read_position_of_a_key_win() {
        let position = |user: &str, seq: i64| Mutation::SetReadPosition {
            session_id: "s".into(),
            position: ReadPosition {
                user_id: user.into(),
                role: Role::Agent,
                up_to_seq: seq,
            },
            read_at: Timestamp(seq),
        };
        let name = |user: &str, name: &str| Mutation::RememberUser {
            user_id: user.into(),
            name: name.into(),
        };
        let batch = [
            name("u1", "Ann"),
            position("u1", 1),
            name("u2", "Bob"),
            position("u2", 5),
            name("u1", "Anne"),
            position("u1", 3),
        ];
        let plan = Plan::new(&batch);
        assert_eq!(plan.users.entries, vec![("u1", "Anne"), ("u2", "Bob")]);
        let seqs: Vec<(&str, i64)> = plan
            .read_positions
            .entries
            .iter()
            .map(|((_, user), (position, _))| (*user, position.up_to_seq))
            .collect();
        assert_eq!(seqs, vec![("u1", 3), ("u2", 5)]);
    }
}
