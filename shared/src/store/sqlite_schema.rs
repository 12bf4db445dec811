//! The SQLite schema as an ordered list of migrations.
//!
//! A database file outlives the binary that created it, so the schema only
//! ever moves forward: each migration runs once, in its own transaction,
//! and is recorded in `schema_migrations`. Reopening a file applies only the
//! migrations it has not seen; a file written by a newer build (one that
//! knows migrations this build does not) is refused rather than misread.
//! Timestamps are INTEGER milliseconds since the Unix epoch, as in
//! `crate::Timestamp`.

use rusqlite::{params, Connection, TransactionBehavior};

use crate::store::StoreError;
use crate::Timestamp;

/// One forward step of the schema. Versions start at 1 and never change
/// once released; a new step gets the next number.
pub(super) struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: V1_INITIAL,
    },
    Migration {
        version: 2,
        sql: V2_AGENTS,
    },
];

const V1_INITIAL: &str = "
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL,
    customer_name     TEXT NOT NULL,
    agent_id          TEXT,
    agent_name        TEXT,
    pool              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'active', 'closed')),
    subject           TEXT,
    created_at        INTEGER NOT NULL,
    assigned_at       INTEGER,
    closed_at         INTEGER,
    last_seq          INTEGER NOT NULL,
    last_message_at   INTEGER,
    version           INTEGER NOT NULL,
    first_assigned_at INTEGER,
    first_response_at INTEGER,
    first_response_ms INTEGER
);

-- Agents' lists and pool stats filter by pool and status, newest first.
CREATE INDEX sessions_by_pool ON sessions (pool, status, created_at);
-- Customers list their own sessions, newest first.
CREATE INDEX sessions_by_customer ON sessions (customer_id, created_at);
-- Admins list everything, newest first, paged by (created_at, id).
CREATE INDEX sessions_by_created ON sessions (created_at, id);

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    seq           INTEGER NOT NULL,
    sender_id     TEXT NOT NULL,
    sender_name   TEXT NOT NULL,
    sender_role   TEXT NOT NULL CHECK (sender_role IN ('customer', 'agent', 'admin')),
    content       TEXT NOT NULL,
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    -- Also the history index: every page is a range of seq in one session.
    UNIQUE (session_id, seq)
);

-- Idempotent sends: one message per client id and sender in a session.
-- SQL treats NULLs as distinct, so messages without a client id never clash.
CREATE UNIQUE INDEX messages_by_client_id ON messages (session_id, sender_id, client_msg_id);
-- Messages-today figures scan by creation time.
CREATE INDEX messages_by_created ON messages (created_at);

CREATE TABLE read_positions (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    up_to_seq  INTEGER NOT NULL,
    read_at    INTEGER NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    name    TEXT NOT NULL
);
";

/// The agent directory. An agent serves a handful of pools, read and
/// written together, so they are one JSON array (sorted, no repeats) rather
/// than a table of their own; listing a pool scans the directory, which is
/// as large as the staff, not the traffic.
const V2_AGENTS: &str = "
CREATE TABLE agents (
    agent_id     TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    pools        TEXT NOT NULL,
    last_seen_at INTEGER NOT NULL
);
";

/// Brings the schema up to date. Each step checks and records its version
/// inside one IMMEDIATE transaction, so two processes opening the same file
/// at once cannot both apply it.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )?;
    refuse_newer_schema(conn)?;
    for migration in MIGRATIONS {
        apply(conn, migration)?;
    }
    Ok(())
}

fn refuse_newer_schema(conn: &Connection) -> Result<(), StoreError> {
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.version);
    let newest_applied: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
            row.get(0)
        })?;
    match newest_applied {
        Some(applied) if applied > newest_known => Err(StoreError::Internal(format!(
            "database schema version {applied} is newer than this build knows ({newest_known})"
        ))),
        _ => Ok(()),
    }
}

fn apply(conn: &mut Connection, migration: &Migration) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
        [migration.version],
        |row| row.get(0),
    )?;
    if !applied {
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![migration.version, Timestamp::now().millis()],
        )?;
    }
    tx.commit()?;
    Ok(())
}
