//! The store on an embedded SQLite file, for standalone mode.
//!
//! SQLite is synchronous, so every call runs on tokio's blocking pool and
//! the async runtime never waits on disk. The file is in WAL mode: one
//! writer connection (behind a mutex, since SQLite admits one writer at a
//! time anyway) applies batches, while a few reader connections serve
//! history, lists and stats concurrently from the last committed snapshot.
//! `synchronous = FULL` makes every commit durable before it returns, so a
//! message the worker acknowledges survives a crash or power loss.
//!
//! The schema and its migrations live in `sqlite_schema.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{Type, Value};
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};

use super::rows::{self, Columns};
use super::{
    AgentRecord, BatchKeys, BatchSnapshot, MessageRange, Mutation, PoolFigures, SessionQuery,
    SessionRecord, SessionScope, Store, StoreError,
};
use crate::protocol::{Message, MessagePage, ReadPosition, Session};
use crate::Timestamp;

#[path = "sqlite_schema.rs"]
mod schema;

/// Reader connections; a handful covers the gateway's concurrent queries
/// on a small machine without holding many file handles.
const READERS: usize = 4;

/// How long a connection waits for a lock held by another process (or a
/// checkpoint) before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SESSION_COLUMNS: &str = "id, customer_id, customer_name, agent_id, agent_name, pool, \
     status, subject, created_at, assigned_at, closed_at, last_seq, last_message_at, version, \
     first_assigned_at, first_response_at, first_response_ms";

const MESSAGE_COLUMNS: &str =
    "id, session_id, seq, sender_id, sender_name, sender_role, content, client_msg_id, created_at";

/// `Store` on one SQLite file. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReaderPool>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, creating its directory if
    /// needed, and brings the schema up to date. This does blocking I/O:
    /// call it at startup, before serving.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        create_parent_dir(path)?;
        let mut writer = open_writer(path)?;
        schema::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(ReaderPool::new(readers)),
        })
    }

    /// Runs `work` with the writer connection on the blocking pool.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        run_blocking(move || work(&mut lock(&writer))).await
    }

    /// Runs `work` with a reader connection on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        run_blocking(move || readers.with(work)).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_batch(&self, keys: &BatchKeys) -> Result<BatchSnapshot, StoreError> {
        let keys = keys.clone();
        self.read(move |conn| load_batch(conn, &keys)).await
    }

    /// A commit whose caller stops waiting still runs to its end on the
    /// blocking pool; the version checks make the caller's retry safe.
    async fn commit(&self, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        if mutations.is_empty() {
            return Ok(());
        }
        self.write(move |conn| commit(conn, &mutations)).await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| Ok(find_session(conn, &id)?.map(|record| record.session)))
            .await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
        let query = query.clone();
        self.read(move |conn| list_sessions(conn, &query)).await
    }

    async fn messages(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| message_page(conn, &session_id, range, limit))
            .await
    }

    async fn read_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| read_positions(conn, &session_id))
            .await
    }

    async fn pool_figures(
        &self,
        pool: &str,
        day_start: Timestamp,
    ) -> Result<PoolFigures, StoreError> {
        let pool = pool.to_owned();
        self.read(move |conn| pool_figures(conn, &pool, day_start))
            .await
    }

    async fn remember_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let agent = agent.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            remember_agent(&tx, &agent)?;
            remember_user(&tx, &agent.id, &agent.name)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_agents(&self, pool: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let pool = pool.map(str::to_owned);
        self.read(move |conn| list_agents(conn, pool.as_deref()))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            // Another process holds the file longer than the busy timeout:
            // transient, worth retrying.
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!("sqlite is busy: {err}"))
            }
            Some(ErrorCode::CannotOpen | ErrorCode::DiskFull | ErrorCode::ReadOnly) => {
                StoreError::Unavailable(format!("sqlite: {err}"))
            }
            _ => StoreError::Internal(format!("sqlite: {err}")),
        }
    }
}

// ---------------------------------------------------------------------------
// Connections

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|err| {
            StoreError::Unavailable(format!("cannot create {}: {err}", dir.display()))
        }),
        _ => Ok(()),
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers proceed while the writer commits; the mode is stored
    // in the file, so setting it once here covers the readers too.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "sqlite refused WAL mode (got {mode}) for {}",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Readers must never write: every write goes through the one writer.
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// A poisoned lock only means another call panicked while holding the
/// connection; its open transaction was rolled back when dropped, so the
/// connection is still sound.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Internal(format!("store task failed: {err}")))?
}

#[derive(Debug)]
struct ReaderPool {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReaderPool {
    fn new(connections: Vec<Connection>) -> Self {
        ReaderPool {
            connections: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Takes an idle connection if there is one; otherwise queues on the
    /// connections in turn so waiting callers spread out.
    fn with<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for conn in &self.connections {
            match conn.try_lock() {
                Ok(guard) => return work(&guard),
                Err(TryLockError::Poisoned(poisoned)) => return work(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = self
            .connections
            .get(turn % self.connections.len().max(1))
            .ok_or_else(|| StoreError::Internal("no reader connections".into()))?;
        work(&lock(conn))
    }
}

// ---------------------------------------------------------------------------
// Writes

fn commit(conn: &mut Connection, mutations: &[Mutation]) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so a batch never fails
    // half-way for want of it. Dropping `tx` on error rolls everything back.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for mutation in mutations {
        apply(&tx, mutation)?;
    }
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
    }
}

fn insert_session(tx: &Transaction<'_>, record: &SessionRecord) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    );
    tx.prepare_cached(&sql)?
        .execute(params_from_iter(session_params(record)))
        .map_err(|err| collision_is_conflict(err, || format!("session {}", record.session.id)))?;
    Ok(())
}

fn update_session(
    tx: &Transaction<'_>,
    record: &SessionRecord,
    expected_version: i64,
) -> Result<(), StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE sessions SET customer_id = ?2, customer_name = ?3, agent_id = ?4, \
             agent_name = ?5, pool = ?6, status = ?7, subject = ?8, created_at = ?9, \
             assigned_at = ?10, closed_at = ?11, last_seq = ?12, last_message_at = ?13, \
             version = ?14, first_assigned_at = ?15, first_response_at = ?16, \
             first_response_ms = ?17 \
             WHERE id = ?1 AND version = ?18",
        )?
        .execute(params_from_iter(
            session_params(record)
                .into_iter()
                .chain([Value::Integer(expected_version)]),
        ))?;
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "session {} is no longer at version {expected_version}",
            record.session.id
        )));
    }
    Ok(())
}

fn insert_message(tx: &Transaction<'_>, message: &Message) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?
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

fn remember_user(tx: &Transaction<'_>, user_id: &str, name: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO users (user_id, name) VALUES (?1, ?2) \
         ON CONFLICT (user_id) DO UPDATE SET name = excluded.name",
    )?
    .execute(params![user_id, name])?;
    Ok(())
}

fn remember_agent(tx: &Transaction<'_>, agent: &AgentRecord) -> Result<(), StoreError> {
    let pools = pools_json(&agent.pools)?;
    tx.prepare_cached(
        "INSERT INTO agents (agent_id, name, pools, last_seen_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (agent_id) DO UPDATE SET name = excluded.name, pools = excluded.pools, \
         last_seen_at = MAX(agents.last_seen_at, excluded.last_seen_at)",
    )?
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
fn collision_is_conflict(err: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
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

/// Parameters ?1..?17 in `SESSION_COLUMNS` order.
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

// ---------------------------------------------------------------------------
// Reads

fn load_batch(conn: &Connection, keys: &BatchKeys) -> Result<BatchSnapshot, StoreError> {
    // One read transaction, so the snapshot is consistent across tables.
    let tx = conn.unchecked_transaction()?;
    let mut snapshot = BatchSnapshot::default();
    for id in &keys.session_ids {
        if let Some(record) = find_session(&tx, id)? {
            snapshot.sessions.insert(id.clone(), record);
        }
    }
    for key in &keys.client_messages {
        if let Some(message) = find_message_by_client_id(&tx, key)? {
            snapshot.messages_by_client_id.insert(key.clone(), message);
        }
    }
    for key in &keys.read_positions {
        if let Some(up_to_seq) = find_read_position(&tx, key)? {
            snapshot.read_positions.insert(key.clone(), up_to_seq);
        }
    }
    for user_id in &keys.user_ids {
        if let Some(name) = find_user_name(&tx, user_id)? {
            snapshot.user_names.insert(user_id.clone(), name);
        }
    }
    for agent_id in &keys.agent_ids {
        if let Some(agent) = find_agent(&tx, agent_id)? {
            snapshot.agents.insert(agent_id.clone(), agent);
        }
    }
    tx.finish()?;
    Ok(snapshot)
}

const AGENT_COLUMNS: &str = "agent_id, name, pools, last_seen_at";

fn agent_row(row: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    let pools: String = row.get("pools")?;
    let pools = serde_json::from_str(&pools)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(err)))?;
    Ok(AgentRecord {
        id: row.get("agent_id")?,
        name: row.get("name")?,
        pools,
        last_seen_at: Timestamp(row.get("last_seen_at")?),
    })
}

fn find_agent(conn: &Connection, id: &str) -> Result<Option<AgentRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ?1"
        ))?
        .query_row([id], agent_row)
        .optional()?)
}

fn list_agents(conn: &Connection, pool: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
    // Names compare bytewise, as in Rust and PostgreSQL's "C" collation.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents \
         WHERE ?1 IS NULL OR EXISTS (SELECT 1 FROM json_each(agents.pools) WHERE value = ?1) \
         ORDER BY name, agent_id"
    ))?;
    let agents = statement
        .query_map([pool], agent_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(agents)
}

fn find_session(conn: &Connection, id: &str) -> Result<Option<SessionRecord>, StoreError> {
    let record = conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
        ))?
        .query_row([id], |row| rows::session_record(row))
        .optional()?;
    Ok(record)
}

fn find_message_by_client_id(
    conn: &Connection,
    (session_id, sender_id, client_msg_id): &(String, String, String),
) -> Result<Option<Message>, StoreError> {
    let message = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE session_id = ?1 AND sender_id = ?2 AND client_msg_id = ?3"
        ))?
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

fn list_sessions(conn: &Connection, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
    let Some((sql, values)) = session_list_sql(query) else {
        return Ok(Vec::new());
    };
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(values), |row| rows::session_record(row))?;
    let mut sessions = Vec::new();
    for row in rows {
        sessions.push(row?.session);
    }
    Ok(sessions)
}

/// The SQL and parameters of a session list, or `None` when the query can
/// match nothing (no pools in scope, or a zero limit).
fn session_list_sql(query: &SessionQuery) -> Option<(String, Vec<Value>)> {
    if query.limit == 0 {
        return None;
    }
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    match &query.scope {
        SessionScope::Customer(customer_id) => {
            conditions.push("customer_id = ?".into());
            values.push(Value::Text(customer_id.clone()));
        }
        SessionScope::Pools(pools) if pools.is_empty() => return None,
        SessionScope::Pools(pools) => {
            conditions.push(format!("pool IN ({})", vec!["?"; pools.len()].join(", ")));
            values.extend(pools.iter().cloned().map(Value::Text));
        }
        SessionScope::All => {}
    }
    if let Some(status) = query.status {
        conditions.push("status = ?".into());
        values.push(Value::Text(status.as_str().to_owned()));
    }
    if let Some(pool) = &query.pool {
        conditions.push("pool = ?".into());
        values.push(Value::Text(pool.clone()));
    }
    if let Some(cursor) = &query.after {
        conditions.push("(created_at, id) < (?, ?)".into());
        values.push(Value::Integer(cursor.created_at.millis()));
        values.push(Value::Text(cursor.id.clone()));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    values.push(Value::Integer(sql_limit(query.limit)));
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions {filter} \
         ORDER BY created_at DESC, id DESC LIMIT ?"
    );
    Some((sql, values))
}

fn message_page(
    conn: &Connection,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let (lower, upper, newest_first) = range.bounds();
    let order = if newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?1 AND seq > ?2 AND seq < ?3 \
         ORDER BY seq {order} LIMIT ?4"
    );
    // Reading one row beyond the limit tells whether more exist.
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        params![session_id, lower, upper, sql_limit(limit.saturating_add(1))],
        |row| rows::message(row),
    )?;
    let mut items = rows.collect::<Result<Vec<_>, _>>()?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    if newest_first {
        items.reverse();
    }
    Ok(MessagePage { items, has_more })
}

fn read_positions(conn: &Connection, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT user_id, role, up_to_seq FROM read_positions \
         WHERE session_id = ?1 ORDER BY user_id",
    )?;
    let rows = statement.query_map([session_id], |row| rows::read_position(row))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn pool_figures(
    conn: &Connection,
    pool: &str,
    day_start: Timestamp,
) -> Result<PoolFigures, StoreError> {
    // One statement, so every figure comes from the same snapshot.
    let figures = conn
        .prepare_cached(
            "SELECT
            (SELECT COUNT(*) FROM sessions WHERE pool = ?1 AND status = 'pending'),
            (SELECT COUNT(*) FROM sessions WHERE pool = ?1 AND status = 'active'),
            (SELECT COUNT(*) FROM sessions
              WHERE pool = ?1 AND status = 'closed' AND closed_at >= ?2),
            (SELECT MIN(created_at) FROM sessions WHERE pool = ?1 AND status = 'pending'),
            (SELECT AVG(first_assigned_at - created_at) FROM sessions
              WHERE pool = ?1 AND first_assigned_at >= ?2),
            (SELECT AVG(first_response_ms) FROM sessions
              WHERE pool = ?1 AND first_response_at >= ?2 AND first_response_ms IS NOT NULL),
            (SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session_id
              WHERE s.pool = ?1 AND m.created_at >= ?2)",
        )?
        .query_row(params![pool, day_start.millis()], |row| {
            Ok(PoolFigures {
                pending_sessions: row.get(0)?,
                active_sessions: row.get(1)?,
                closed_today: row.get(2)?,
                oldest_pending_created_at: row.get::<_, Option<i64>>(3)?.map(Timestamp),
                avg_wait_seconds: row.get::<_, Option<f64>>(4)?.map(millis_to_seconds),
                avg_first_response_seconds: row.get::<_, Option<f64>>(5)?.map(millis_to_seconds),
                messages_today: row.get(6)?,
            })
        })?;
    Ok(figures)
}

fn millis_to_seconds(millis: f64) -> f64 {
    millis / 1000.0
}

/// SQLite takes limits as i64; anything larger is as good as unlimited.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------
// Rows

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

    /// A conversion error, and so `StoreError::Internal`.
    fn unknown(&self, column: &str, text: &str) -> rusqlite::Error {
        let index = self.as_ref().column_index(column).unwrap_or_default();
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Text,
            format!("unknown {column} {text:?}").into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Role, SessionStatus};
    use crate::store::conformance;

    fn open_temp() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("chat.db")).expect("open store");
        (dir, store)
    }

    /// One test per conformance check, each on a fresh file, so a failure
    /// names the check.
    macro_rules! conformance_tests {
        ($($check:ident),* $(,)?) => {
            mod conformance_checks {
                use super::*;
                $(
                    #[tokio::test]
                    async fn $check() {
                        let (_dir, store) = open_temp();
                        conformance::$check(&store).await;
                    }
                )*
            }
        };
    }

    conformance_tests!(
        ping_answers,
        empty_commit_is_a_no_op,
        session_round_trip,
        duplicate_session_conflicts,
        update_checks_version,
        failed_batch_writes_nothing,
        racing_updates_have_one_winner,
        duplicate_seq_conflicts,
        duplicate_client_msg_id_conflicts,
        null_client_ids_never_collide,
        load_batch_returns_known_keys,
        remember_user_keeps_latest_name,
        agent_directory,
        message_pages,
        list_sessions_filters,
        list_sessions_pages_by_cursor,
        read_positions_set_and_update,
        pool_figures_counts,
        pool_figures_of_an_empty_pool,
    );

    /// The whole suite twice on one file: the checks must not depend on an
    /// empty database, as when they run against a shared PostgreSQL.
    #[tokio::test]
    async fn whole_suite_twice_on_one_database() {
        let (_dir, store) = open_temp();
        conformance::run_all(&store).await;
        conformance::run_all(&store).await;
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        let versions: Vec<i64> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..).take(versions.len()).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn creates_missing_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("deeper").join("chat.db");
        SqliteStore::open(&path).expect("open store");
        assert!(path.exists());
    }

    #[test]
    fn reopening_applies_no_migration_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        let applied = |store: &SqliteStore| -> Vec<(i64, i64)> {
            let conn = lock(&store.writer);
            let mut statement = conn
                .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
                .expect("prepare");
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };
        let first = applied(&SqliteStore::open(&path).expect("first open"));
        assert_eq!(first.len(), schema::MIGRATIONS.len());
        let second = applied(&SqliteStore::open(&path).expect("second open"));
        assert_eq!(second, first, "reopening records nothing new");
    }

    #[test]
    fn refuses_a_schema_newer_than_this_build() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        drop(SqliteStore::open(&path).expect("first open"));
        let conn = Connection::open(&path).expect("raw open");
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)",
            [],
        )
        .expect("insert future version");
        drop(conn);
        match SqliteStore::open(&path) {
            Err(StoreError::Internal(message)) => assert!(message.contains("9999"), "{message}"),
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[test]
    fn connections_are_durable_and_checked() {
        let (_dir, store) = open_temp();
        let conn = lock(&store.writer);
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|value| format!("{value:?}"))
            .expect("pragma")
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        // 2 is FULL: every commit is synced before it returns.
        assert_eq!(pragma("synchronous"), "Integer(2)");
        assert_eq!(pragma("foreign_keys"), "Integer(1)");
    }

    #[tokio::test]
    async fn data_survives_drop_and_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        let record = SessionRecord {
            session: Session {
                id: "s-1".into(),
                customer_id: "c-1".into(),
                customer_name: "Carla".into(),
                agent_id: None,
                agent_name: None,
                pool: "default".into(),
                status: SessionStatus::Pending,
                subject: Some("Hello".into()),
                created_at: Timestamp(1_700_000_000_000),
                assigned_at: None,
                closed_at: None,
                last_seq: 1,
                last_message_at: Some(Timestamp(1_700_000_000_500)),
            },
            version: 2,
            first_assigned_at: None,
            first_response_at: None,
            first_response_ms: None,
        };
        let message = Message {
            id: "m-1".into(),
            session_id: "s-1".into(),
            seq: 1,
            sender_id: "c-1".into(),
            sender_name: "Carla".into(),
            sender_role: Role::Customer,
            content: "Is anyone there?".into(),
            client_msg_id: Some("k-1".into()),
            created_at: Timestamp(1_700_000_000_500),
        };
        {
            let store = SqliteStore::open(&path).expect("open");
            store
                .commit(vec![
                    Mutation::InsertSession(record.clone()),
                    Mutation::InsertMessage(message.clone()),
                ])
                .await
                .expect("commit");
        }
        let store = SqliteStore::open(&path).expect("reopen");
        let found = store.get_session("s-1").await.expect("get_session");
        assert_eq!(found, Some(record.session));
        let page = store
            .messages("s-1", MessageRange::Latest, 10)
            .await
            .expect("messages");
        assert_eq!(page.items, vec![message]);
    }

    #[tokio::test]
    async fn an_unknown_status_in_a_row_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(&path).expect("open");
        let record = SessionRecord {
            session: Session {
                id: "s-odd".into(),
                customer_id: "c-1".into(),
                customer_name: "Carla".into(),
                agent_id: None,
                agent_name: None,
                pool: "default".into(),
                status: SessionStatus::Pending,
                subject: None,
                created_at: Timestamp(0),
                assigned_at: None,
                closed_at: None,
                last_seq: 0,
                last_message_at: None,
            },
            version: 1,
            first_assigned_at: None,
            first_response_at: None,
            first_response_ms: None,
        };
        store
            .commit(vec![Mutation::InsertSession(record)])
            .await
            .expect("commit");
        let conn = Connection::open(&path).expect("raw open");
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE sessions SET status = 'archived' WHERE id = 's-odd';",
        )
        .expect("corrupt the row");
        match store.get_session("s-odd").await {
            Err(StoreError::Internal(message)) => {
                assert!(message.contains("archived"), "{message}")
            }
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_message_for_an_unknown_session_is_not_a_conflict() {
        let (_dir, store) = open_temp();
        let message = Message {
            id: "m-orphan".into(),
            session_id: "no-such-session".into(),
            seq: 1,
            sender_id: "c-1".into(),
            sender_name: "Carla".into(),
            sender_role: Role::Customer,
            content: "hi".into(),
            client_msg_id: None,
            created_at: Timestamp(0),
        };
        match store.commit(vec![Mutation::InsertMessage(message)]).await {
            Err(StoreError::Internal(_)) => {}
            other => panic!("expected Internal (foreign key), got {other:?}"),
        }
    }
}
