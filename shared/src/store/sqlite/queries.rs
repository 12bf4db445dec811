//! The read side: what the worker loads before deciding a batch, and what
//! gateways ask for (history, session lists, read positions, stats, the
//! agent directory), each on a reader connection.
//!
//! Statements go through the connection's statement cache. Rows are
//! decoded by `store::rows` with checked getters: a column of an
//! unexpected type or an unknown enum name is a `StoreError::Internal`,
//! never a panic.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::LazyLock;

use rusqlite::types::{ToSqlOutput, Type};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, ToSql};

use crate::protocol::{Message, MessagePage, ReadPosition, Session};
use crate::store::rows::{self, Columns};
use crate::store::sql::{self, Dialect, MessageWindow, Param, AGENT_COLUMNS, MESSAGE_COLUMNS};
use crate::store::{
    AgentRecord, BatchKeys, BatchSnapshot, MessageRange, PoolFigures, SessionQuery, SessionRecord,
    StoreError,
};
use crate::Timestamp;

const SQLITE: Dialect = Dialect::Sqlite;

// The batch snapshot's lookups, spelled once: a batch looks up every
// message's client id, and building the text each time only to find the
// cached statement by it costs more than the lookup on a warm cache.
static SESSION_BY_ID: LazyLock<String> = LazyLock::new(|| sql::session_by_id(SQLITE));
static MESSAGE_BY_CLIENT_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages \
         WHERE session_id = ?1 AND sender_id = ?2 AND client_msg_id = ?3"
    )
});
static AGENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ?1"));

// ---------------------------------------------------------------------------
// The worker's batch snapshot

/// Reads everything a batch names, one key at a time: on a local file a
/// lookup costs an index probe, not a round trip.
pub(super) fn load_batch(conn: &Connection, keys: &BatchKeys) -> Result<BatchSnapshot, StoreError> {
    // One read transaction, so the snapshot is consistent across tables.
    let tx = conn.unchecked_transaction()?;
    let mut snapshot = BatchSnapshot::default();
    fill(&mut snapshot.sessions, &keys.session_ids, |id| {
        find_session(&tx, id)
    })?;
    fill(
        &mut snapshot.messages_by_client_id,
        &keys.client_messages,
        |key| find_message_by_client_id(&tx, key),
    )?;
    fill(&mut snapshot.read_positions, &keys.read_positions, |key| {
        find_read_position(&tx, key)
    })?;
    fill(&mut snapshot.user_names, &keys.user_ids, |id| {
        find_user_name(&tx, id)
    })?;
    fill(&mut snapshot.agents, &keys.agent_ids, |id| {
        find_agent(&tx, id)
    })?;
    // Internal notes.
    fill(&mut snapshot.last_note_seqs, &keys.note_sessions, |id| {
        super::notes::last_note_seq(&tx, id).map(Some)
    })?;
    fill(
        &mut snapshot.notes_by_client_id,
        &keys.client_notes,
        |key| super::notes::note_by_client_id(&tx, key),
    )?;
    super::reactions::load(&tx, keys, &mut snapshot)?;
    super::attachments::load(&tx, keys, &mut snapshot)?;
    tx.finish()?;
    Ok(snapshot)
}

/// Looks up each key, keeping those found.
pub(super) fn fill<K: Clone + Eq + Hash, V>(
    found: &mut HashMap<K, V>,
    keys: &[K],
    find: impl Fn(&K) -> Result<Option<V>, StoreError>,
) -> Result<(), StoreError> {
    for key in keys {
        if let Some(value) = find(key)? {
            found.insert(key.clone(), value);
        }
    }
    Ok(())
}

pub(super) fn find_session(
    conn: &Connection,
    id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let record = conn
        .prepare_cached(&SESSION_BY_ID)?
        .query_row([id], |row| rows::session_record(row))
        .optional()?;
    Ok(record)
}

fn find_message_by_client_id(
    conn: &Connection,
    (session_id, sender_id, client_msg_id): &(String, String, String),
) -> Result<Option<Message>, StoreError> {
    let message = conn
        .prepare_cached(&MESSAGE_BY_CLIENT_ID)?
        .query_row([session_id, sender_id, client_msg_id], |row| {
            rows::message(row)
        })
        .optional()?;
    Ok(message)
}

fn find_read_position(
    conn: &Connection,
    (session_id, user_id): &(String, String),
) -> Result<Option<i64>, StoreError> {
    let up_to_seq = conn
        .prepare_cached(
            "SELECT up_to_seq FROM read_positions WHERE session_id = ?1 AND user_id = ?2",
        )?
        .query_row([session_id, user_id], |row| row.get(0))
        .optional()?;
    Ok(up_to_seq)
}

fn find_user_name(conn: &Connection, user_id: &str) -> Result<Option<String>, StoreError> {
    let name = conn
        .prepare_cached("SELECT name FROM users WHERE user_id = ?1")?
        .query_row([user_id], |row| row.get(0))
        .optional()?;
    Ok(name)
}

fn find_agent(conn: &Connection, id: &str) -> Result<Option<AgentRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&AGENT_BY_ID)?
        .query_row([id], |row| rows::agent(row))
        .optional()?)
}

// ---------------------------------------------------------------------------
// Gateway reads

pub(super) fn list_sessions(
    conn: &Connection,
    query: &SessionQuery,
) -> Result<Vec<Session>, StoreError> {
    let Some(statement) = sql::session_list(SQLITE, query) else {
        return Ok(Vec::new());
    };
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let rows = prepared.query_map(params_from_iter(statement.params), |row| {
        rows::session_record(row)
    })?;
    let mut sessions = Vec::new();
    for row in rows {
        sessions.push(row?.session);
    }
    Ok(sessions)
}

pub(super) fn message_page(
    conn: &Connection,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let window = MessageWindow::new(range, limit);
    let mut statement = conn.prepare_cached(&window.sql(SQLITE))?;
    let rows = statement.query_map(
        params![session_id, window.lower, window.upper, window.fetch()],
        |row| rows::message(row),
    )?;
    let mut page = window.page(rows.collect::<Result<Vec<_>, _>>()?);
    super::reactions::fill_page(conn, session_id, &mut page)?;
    super::attachments::fill_page(conn, session_id, &mut page)?;
    Ok(page)
}

pub(super) fn read_positions(
    conn: &Connection,
    session_id: &str,
) -> Result<Vec<ReadPosition>, StoreError> {
    let mut statement = conn.prepare_cached(&sql::read_positions(SQLITE))?;
    let rows = statement.query_map([session_id], |row| rows::read_position(row))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn pool_figures(
    conn: &Connection,
    pool: &str,
    day_start: Timestamp,
) -> Result<PoolFigures, StoreError> {
    Ok(conn
        .prepare_cached(&sql::pool_figures(SQLITE))?
        .query_row(params![pool, day_start.millis()], |row| {
            rows::pool_figures(row)
        })?)
}

pub(super) fn list_agents(
    conn: &Connection,
    pool: Option<&str>,
) -> Result<Vec<AgentRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&sql::list_agents(SQLITE))?;
    let agents = statement
        .query_map([pool], |row| rows::agent(row))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(agents)
}

// ---------------------------------------------------------------------------
// Parameters and rows

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Text(text) => text.to_sql(),
            Param::Int(int) => int.to_sql(),
            // `sql` binds lists item by item for SQLite.
            Param::Texts(_) => Err(rusqlite::Error::ToSqlConversionFailure(
                "sqlite takes no list parameters".into(),
            )),
        }
    }
}

impl Columns for Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, column: &str) -> rusqlite::Result<String> {
        self.get(column)
    }

    fn optional_text(&self, column: &str) -> rusqlite::Result<Option<String>> {
        self.get(column)
    }

    fn int(&self, column: &str) -> rusqlite::Result<i64> {
        self.get(column)
    }

    fn optional_int(&self, column: &str) -> rusqlite::Result<Option<i64>> {
        self.get(column)
    }

    fn optional_float(&self, column: &str) -> rusqlite::Result<Option<f64>> {
        self.get(column)
    }

    /// Pools are a JSON array (see `commit::pools_json`).
    fn text_list(&self, column: &str) -> rusqlite::Result<Vec<String>> {
        let text: String = self.get(column)?;
        serde_json::from_str(&text).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(
                index_of(self, column),
                Type::Text,
                err.into(),
            )
        })
    }

    /// A conversion error, and so `StoreError::Internal`.
    fn unknown(&self, column: &str, text: &str) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            index_of(self, column),
            Type::Text,
            format!("unknown {column} {text:?}").into(),
        )
    }
}

/// Where `column` is in the row, for error messages (0 if it is not).
fn index_of(row: &Row<'_>, column: &str) -> usize {
    row.as_ref().column_index(column).unwrap_or_default()
}
