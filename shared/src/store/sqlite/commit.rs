//! The write path: a batch of mutations applied in turn inside one
//! IMMEDIATE transaction, all or nothing.
//!
//! IMMEDIATE takes the file's write lock up front, so a batch never fails
//! half-way for want of it, and dropping the transaction on any error rolls
//! everything back. Races fail the whole batch as `StoreError::Conflict`:
//! a session update checks the expected version in its WHERE clause, and
//! an insert colliding with a unique key (a session id, a message's seq or
//! client id) means another writer got there first.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::protocol::{Message, ReadPosition};
use crate::store::sql::{self, Dialect, MESSAGE_COLUMNS, SESSION_WRITTEN_COLUMNS};
use crate::store::{AgentRecord, Mutation, SessionRecord, StoreError};
use crate::Timestamp;

const SQLITE: Dialect = Dialect::Sqlite;

// The write path's statements, spelled once: `store::sql` builds text on
// each call, which a batch of hundreds of rows would otherwise repeat for
// every row just to find its cached statement.
static INSERT_SESSION: LazyLock<String> =
    LazyLock::new(|| sql::insert(SQLITE, "sessions", SESSION_WRITTEN_COLUMNS));
static UPDATE_SESSION: LazyLock<String> = LazyLock::new(|| sql::update_session(SQLITE));
static UPDATE_SESSION_IN_PLACE: LazyLock<String> =
    LazyLock::new(|| sql::update_session_in_place(SQLITE));
static INSERT_MESSAGE: LazyLock<String> =
    LazyLock::new(|| sql::insert(SQLITE, "messages", MESSAGE_COLUMNS));
static UPSERT_USER: LazyLock<String> = LazyLock::new(|| sql::upsert_user(SQLITE));

/// Milliseconds in a UTC day: `pool_message_counts` keys days by their start.
const DAY_MS: i64 = 86_400_000;

/// Applies `mutations` in one transaction.
pub(super) fn commit(conn: &mut Connection, mutations: &[Mutation]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for mutation in mutations {
        apply(&tx, mutation)?;
    }
    count_messages(&tx, mutations)?;
    super::routing::adjust_loads(&tx, mutations)?;
    tx.commit()?;
    Ok(())
}

fn apply(tx: &Transaction<'_>, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertSession(record) => insert_session(tx, record),
        Mutation::UpdateSession {
            record,
            expected_version,
        } => update_session(tx, record, *expected_version),
        Mutation::InsertMessage(message) => insert_message(tx, message),
        Mutation::SetReadPosition {
            session_id,
            position,
            read_at,
        } => set_read_position(tx, session_id, position, *read_at),
        Mutation::RememberUser { user_id, name } => remember_user(tx, user_id, name),
        // Summed per agent and applied after every session write.
        Mutation::AdjustAgentLoad { .. } => Ok(()),
        Mutation::RecordSessionEvent(event) => super::routing::record_event(tx, event),
        // Reactions and delivery positions.
        Mutation::SetReaction {
            session_id,
            seq,
            emoji,
            user_id,
            on,
            at,
        } => super::reactions::set_reaction(tx, (session_id, *seq, emoji, user_id), *on, *at),
        Mutation::SetDeliveryPosition {
            session_id,
            position,
            delivered_at,
        } => super::reactions::set_delivery_position(tx, session_id, position, *delivered_at),
        // Internal notes and invited colleagues.
        Mutation::InsertNote(note) => super::notes::insert_note(tx, note),
        Mutation::SetParticipants {
            session_id,
            participants,
        } => super::notes::set_participants(tx, session_id, participants),
        Mutation::ReferenceAttachment {
            attachment_id,
            session_id,
            seq,
        } => super::attachments::reference(tx, attachment_id, session_id, *seq),
    }
}

/// Adds the batch's messages to the per-pool daily counts the stats read,
/// one row per pool and day however many messages the batch holds.
fn count_messages(tx: &Transaction<'_>, mutations: &[Mutation]) -> Result<(), StoreError> {
    let pools: HashMap<&str, &str> = mutations
        .iter()
        .filter_map(|mutation| match mutation {
            Mutation::InsertSession(record) | Mutation::UpdateSession { record, .. } => {
                Some((record.session.id.as_str(), record.session.pool.as_str()))
            }
            _ => None,
        })
        .collect();
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for mutation in mutations {
        let Mutation::InsertMessage(message) = mutation else {
            continue;
        };
        let pool = match pools.get(message.session_id.as_str()) {
            Some(pool) => (*pool).to_owned(),
            // A message whose session the batch does not write: its pool is
            // the stored row's (the insert above checked that it exists).
            None => tx
                .prepare_cached("SELECT pool FROM sessions WHERE id = ?1")?
                .query_row([&message.session_id], |row| row.get(0))?,
        };
        let day = message.created_at.millis() / DAY_MS * DAY_MS;
        *counts.entry((pool, day)).or_default() += 1;
    }
    for ((pool, day), messages) in counts {
        tx.prepare_cached(
            "INSERT INTO pool_message_counts (pool, day, messages) VALUES (?1, ?2, ?3) \
             ON CONFLICT (pool, day) DO UPDATE SET messages = messages + excluded.messages",
        )?
        .execute(params![pool, day, messages])?;
    }
    Ok(())
}

fn insert_session(tx: &Transaction<'_>, record: &SessionRecord) -> Result<(), StoreError> {
    tx.prepare_cached(&INSERT_SESSION)?
        .execute(params_from_iter(session_params(record)))
        .map_err(|err| collision_is_conflict(err, || format!("session {}", record.session.id)))?;
    Ok(())
}

fn update_session(
    tx: &Transaction<'_>,
    record: &SessionRecord,
    expected_version: i64,
) -> Result<(), StoreError> {
    let params: Vec<Value> = session_params(record)
        .into_iter()
        .chain([Value::Integer(expected_version)])
        .collect();
    // Most updates (a message's seq and time) leave the indexed columns as
    // they were; writing those anyway would rewrite all three of the
    // table's indexes. Only when the narrow form matches no row does the
    // whole row get written, and that statement's version check decides.
    let in_place = tx
        .prepare_cached(&UPDATE_SESSION_IN_PLACE)?
        .execute(params_from_iter(params.iter()))?;
    if in_place == 1 {
        return Ok(());
    }
    let changed = tx
        .prepare_cached(&UPDATE_SESSION)?
        .execute(params_from_iter(params))?;
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "session {} is no longer at version {expected_version}",
            record.session.id
        )));
    }
    Ok(())
}

fn insert_message(tx: &Transaction<'_>, message: &Message) -> Result<(), StoreError> {
    tx.prepare_cached(&INSERT_MESSAGE)?
        .execute(params![
            message.id,
            message.session_id,
            message.seq,
            message.sender_id,
            message.sender_name,
            message.sender_role.as_str(),
            message.content,
            message.client_msg_id,
            message.created_at.millis(),
        ])
        .map_err(|err| {
            collision_is_conflict(err, || {
                format!(
                    "message seq {} or client id {:?} of session {}",
                    message.seq, message.client_msg_id, message.session_id
                )
            })
        })?;
    Ok(())
}

fn set_read_position(
    tx: &Transaction<'_>,
    session_id: &str,
    position: &ReadPosition,
    read_at: Timestamp,
) -> Result<(), StoreError> {
    // Not in `store::sql`: PostgreSQL's is part of `chat_commit_batch`,
    // released in its migration 2 and so never rewritten.
    tx.prepare_cached(
        "INSERT INTO read_positions (session_id, user_id, role, up_to_seq, read_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (session_id, user_id) DO UPDATE SET \
         role = excluded.role, up_to_seq = excluded.up_to_seq, read_at = excluded.read_at",
    )?
    .execute(params![
        session_id,
        position.user_id,
        position.role.as_str(),
        position.up_to_seq,
        read_at.millis(),
    ])?;
    Ok(())
}

pub(super) fn remember_user(
    tx: &Transaction<'_>,
    user_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(&UPSERT_USER)?
        .execute(params![user_id, name])?;
    Ok(())
}

pub(super) fn remember_agent(tx: &Transaction<'_>, agent: &AgentRecord) -> Result<(), StoreError> {
    let pools = pools_json(&agent.pools)?;
    tx.prepare_cached(&sql::upsert_agent(SQLITE))?
        .execute(params![
            agent.id,
            agent.name,
            pools,
            agent.last_seen_at.millis()
        ])?;
    Ok(())
}

/// Pools as stored: a JSON array, sorted and without repeats, so that
/// equal sets are equal text.
fn pools_json(pools: &[String]) -> Result<String, StoreError> {
    let set: std::collections::BTreeSet<&str> = pools.iter().map(String::as_str).collect();
    serde_json::to_string(&set).map_err(|err| StoreError::Internal(format!("agent pools: {err}")))
}

/// A unique-key collision means another writer got there first: the caller
/// reloads and decides again. Any other failure is not a race.
pub(super) fn collision_is_conflict(
    err: rusqlite::Error,
    what: impl FnOnce() -> String,
) -> StoreError {
    let collided = err.sqlite_error().is_some_and(|e| {
        e.code == ErrorCode::ConstraintViolation
            && matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            )
    });
    if collided {
        StoreError::Conflict(format!("{} already exists", what()))
    } else {
        err.into()
    }
}

/// Parameters ?1..?17 in `SESSION_WRITTEN_COLUMNS` order: the row but its
/// colleagues, which `SetParticipants` writes.
fn session_params(record: &SessionRecord) -> Vec<Value> {
    let s = &record.session;
    vec![
        Value::Text(s.id.clone()),
        Value::Text(s.customer_id.clone()),
        Value::Text(s.customer_name.clone()),
        optional_text(&s.agent_id),
        optional_text(&s.agent_name),
        Value::Text(s.pool.clone()),
        Value::Text(s.status.as_str().to_owned()),
        optional_text(&s.subject),
        Value::Integer(s.created_at.millis()),
        optional_time(s.assigned_at),
        optional_time(s.closed_at),
        Value::Integer(s.last_seq),
        optional_time(s.last_message_at),
        Value::Integer(record.version),
        optional_time(record.first_assigned_at),
        optional_time(record.first_response_at),
        record.first_response_ms.map_or(Value::Null, Value::Integer),
    ]
}

fn optional_text(text: &Option<String>) -> Value {
    text.clone().map_or(Value::Null, Value::Text)
}

fn optional_time(time: Option<Timestamp>) -> Value {
    time.map_or(Value::Null, |t| Value::Integer(t.millis()))
}
