//! The PostgreSQL schema as an ordered list of migrations.
//!
//! The database outlives every binary that uses it, and in a cluster many
//! pods start at the same moment, each wanting the schema up to date. So
//! `migrate` takes a transaction-scoped advisory lock (keyed by the schema
//! name) before it even looks: the first pod applies what is missing and
//! records each version in `schema_migrations`; the others wait on the
//! lock, then find nothing left to do. All steps run in that one
//! transaction (PostgreSQL's DDL is transactional), so a pod that dies
//! half-way leaves the schema as it was. A database written by a newer
//! build is refused rather than misread.
//!
//! The tables mirror the SQLite schema: the same columns and meanings,
//! timestamps as BIGINT milliseconds since the Unix epoch. Identifier
//! columns use the "C" collation: ids are opaque strings, and lists that
//! break ties by id must order them bytewise, as Rust does, whatever the
//! database's locale.

use deadpool_postgres::{Object, Transaction};

use crate::store::StoreError;
use crate::Timestamp;

/// One forward step of the schema. Versions start at 1 and never change
/// once released; a new step gets the next number. Every step runs inside
/// a transaction, so none may use `CREATE INDEX CONCURRENTLY`.
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
        sql: V2_COMMIT_BATCH,
    },
    Migration {
        version: 3,
        sql: V3_AGENTS,
    },
];

/// What `chat_commit_batch` raises when a batch lost a race (a stale
/// version, a row that exists already).
pub(super) const BATCH_CONFLICT_SQLSTATE: &str = "CH001";

/// First key of the advisory lock that guards migrations ("chat" in ASCII);
/// the second is a hash of the schema name, so separate schemas migrate
/// independently.
const LOCK_NAMESPACE: i32 = 0x6368_6174;

const V1_INITIAL: &str = r#"
CREATE TABLE sessions (
    id                TEXT COLLATE "C" PRIMARY KEY,
    customer_id       TEXT COLLATE "C" NOT NULL,
    customer_name     TEXT NOT NULL,
    agent_id          TEXT COLLATE "C",
    agent_name        TEXT,
    pool              TEXT COLLATE "C" NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'active', 'closed')),
    subject           TEXT,
    created_at        BIGINT NOT NULL,
    assigned_at       BIGINT,
    closed_at         BIGINT,
    last_seq          BIGINT NOT NULL,
    last_message_at   BIGINT,
    version           BIGINT NOT NULL,
    first_assigned_at BIGINT,
    first_response_at BIGINT,
    first_response_ms BIGINT
)
-- Every message updates its session's row (last_seq, version); room on the
-- page lets those updates stay on it (HOT) without touching the indexes.
WITH (fillfactor = 80);

-- Agents' lists and pool stats filter by pool and status, newest first.
CREATE INDEX sessions_by_pool ON sessions (pool, status, created_at, id);
-- Customers list their own sessions, newest first.
CREATE INDEX sessions_by_customer ON sessions (customer_id, created_at, id);
-- Admins list everything, newest first, paged by (created_at, id).
CREATE INDEX sessions_by_created ON sessions (created_at, id);
-- Today's figures of a pool, recomputed every second or so, must not scan
-- every session the pool ever had.
CREATE INDEX sessions_closed_by_pool ON sessions (pool, closed_at);
CREATE INDEX sessions_assigned_by_pool ON sessions (pool, first_assigned_at);
CREATE INDEX sessions_answered_by_pool ON sessions (pool, first_response_at);

CREATE TABLE messages (
    id            TEXT COLLATE "C" PRIMARY KEY,
    session_id    TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    seq           BIGINT NOT NULL,
    sender_id     TEXT COLLATE "C" NOT NULL,
    sender_name   TEXT NOT NULL,
    sender_role   TEXT NOT NULL CHECK (sender_role IN ('customer', 'agent', 'admin')),
    content       TEXT NOT NULL,
    client_msg_id TEXT COLLATE "C",
    created_at    BIGINT NOT NULL,
    -- Also the history index: every page is a range of seq in one session.
    CONSTRAINT messages_seq_unique UNIQUE (session_id, seq)
);

-- Idempotent sends: one message per client id and sender in a session.
-- NULLs are distinct, so messages without a client id never clash.
CREATE UNIQUE INDEX messages_by_client_id ON messages (session_id, sender_id, client_msg_id);
-- Messages-today figures scan by creation time.
CREATE INDEX messages_by_created ON messages (created_at);

CREATE TABLE read_positions (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    user_id    TEXT COLLATE "C" NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    up_to_seq  BIGINT NOT NULL,
    read_at    BIGINT NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE users (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    name    TEXT NOT NULL
);
"#;

/// The write path in one call (see `commit`): a batch arrives as one array
/// per column and is written with one statement per table, all in the
/// caller's single-statement transaction. Rows of a kind are counted, and
/// a shortfall (a stale expected version, a key that exists already)
/// raises CH001, which rolls the whole batch back. Sessions with a NULL
/// expected version are created; the others are updated.
///
/// Messages per pool and UTC day are counted as they are written
/// (`pool_message_counts`), so the stats pushed every second read a few
/// rows instead of counting a day of messages; the index that counting
/// needed goes. The messages' foreign key goes too: it locked the session
/// row for every message, and the function checks each named session once
/// (none at all when the batch writes the session). So does the index on
/// message ids, which nothing looks up: (session, seq) is the key.
const V2_COMMIT_BATCH: &str = r#"
CREATE TABLE pool_message_counts (
    pool     TEXT COLLATE "C" NOT NULL,
    -- Start of the UTC day, in milliseconds since the Unix epoch.
    day      BIGINT NOT NULL,
    shard    INTEGER NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (pool, day, shard)
);
INSERT INTO pool_message_counts (pool, day, shard, messages)
SELECT s.pool, (m.created_at / 86400000) * 86400000, 0, count(*)
FROM messages AS m JOIN sessions AS s ON s.id = m.session_id
GROUP BY 1, 2;

DROP INDEX messages_by_created;
ALTER TABLE messages DROP CONSTRAINT messages_session_id_fkey;
-- Messages are found by (session, seq), never by id alone; one index fewer
-- to write per message. Ids stay unique by construction (UUIDv7).
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages REPLICA IDENTITY USING INDEX messages_seq_unique;

CREATE FUNCTION chat_commit_batch(
    s_id text[], s_customer_id text[], s_customer_name text[], s_agent_id text[],
    s_agent_name text[], s_pool text[], s_status text[], s_subject text[],
    s_created_at int8[], s_assigned_at int8[], s_closed_at int8[], s_last_seq int8[],
    s_last_message_at int8[], s_version int8[], s_first_assigned_at int8[],
    s_first_response_at int8[], s_first_response_ms int8[], s_expected_version int8[],
    m_id text[], m_session_id text[], m_seq int8[], m_sender_id text[], m_sender_name text[],
    m_sender_role text[], m_content text[], m_client_msg_id text[], m_created_at int8[],
    r_session_id text[], r_user_id text[], r_role text[], r_up_to_seq int8[], r_read_at int8[],
    u_user_id text[], u_name text[],
    c_pool text[], c_day int8[], c_messages int8[], x_session_id text[]
) RETURNS void LANGUAGE plpgsql AS $body$
DECLARE
    wanted bigint;
    written bigint;
BEGIN
    SELECT count(*) INTO wanted FROM unnest(s_expected_version) AS e WHERE e IS NULL;
    IF wanted > 0 THEN
        INSERT INTO sessions (id, customer_id, customer_name, agent_id, agent_name, pool,
            status, subject, created_at, assigned_at, closed_at, last_seq, last_message_at,
            version, first_assigned_at, first_response_at, first_response_ms)
        SELECT u.id, u.customer_id, u.customer_name, u.agent_id, u.agent_name, u.pool,
            u.status, u.subject, u.created_at, u.assigned_at, u.closed_at, u.last_seq,
            u.last_message_at, u.version, u.first_assigned_at, u.first_response_at,
            u.first_response_ms
        FROM UNNEST(s_id, s_customer_id, s_customer_name, s_agent_id, s_agent_name, s_pool,
            s_status, s_subject, s_created_at, s_assigned_at, s_closed_at, s_last_seq,
            s_last_message_at, s_version, s_first_assigned_at, s_first_response_at,
            s_first_response_ms, s_expected_version)
            AS u (id, customer_id, customer_name, agent_id, agent_name, pool, status,
                subject, created_at, assigned_at, closed_at, last_seq, last_message_at,
                version, first_assigned_at, first_response_at, first_response_ms,
                expected_version)
        WHERE u.expected_version IS NULL
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written < wanted THEN
            RAISE EXCEPTION USING ERRCODE = 'CH001',
                MESSAGE = format('%s of %s sessions already exist', wanted - written, wanted);
        END IF;
    END IF;

    wanted := cardinality(s_id) - wanted;
    IF wanted > 0 THEN
        UPDATE sessions AS s SET
            customer_id = u.customer_id, customer_name = u.customer_name,
            agent_id = u.agent_id, agent_name = u.agent_name, pool = u.pool,
            status = u.status, subject = u.subject, created_at = u.created_at,
            assigned_at = u.assigned_at, closed_at = u.closed_at, last_seq = u.last_seq,
            last_message_at = u.last_message_at, version = u.version,
            first_assigned_at = u.first_assigned_at, first_response_at = u.first_response_at,
            first_response_ms = u.first_response_ms
        FROM UNNEST(s_id, s_customer_id, s_customer_name, s_agent_id, s_agent_name, s_pool,
            s_status, s_subject, s_created_at, s_assigned_at, s_closed_at, s_last_seq,
            s_last_message_at, s_version, s_first_assigned_at, s_first_response_at,
            s_first_response_ms, s_expected_version)
            AS u (id, customer_id, customer_name, agent_id, agent_name, pool, status,
                subject, created_at, assigned_at, closed_at, last_seq, last_message_at,
                version, first_assigned_at, first_response_at, first_response_ms,
                expected_version)
        WHERE u.expected_version IS NOT NULL
            AND s.id = u.id AND s.version = u.expected_version;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written < wanted THEN
            RAISE EXCEPTION USING ERRCODE = 'CH001',
                MESSAGE = format('%s of %s sessions changed or missing', wanted - written, wanted);
        END IF;
    END IF;

    wanted := cardinality(m_id);
    IF wanted > 0 THEN
        -- What a foreign key would check, for the sessions of messages
        -- whose session the batch does not write (those it writes exist),
        -- without locking session rows.
        IF cardinality(x_session_id) > 0 THEN
            SELECT count(*) INTO written FROM unnest(x_session_id) AS x (id)
            WHERE NOT EXISTS (SELECT 1 FROM sessions AS s WHERE s.id = x.id);
            IF written > 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                    MESSAGE = format('messages name %s sessions that do not exist', written);
            END IF;
        END IF;

        -- A plain insert: a message colliding with a stored one (same seq,
        -- or same sender and client id) fails the batch with a unique
        -- violation, a conflict like any other. ON CONFLICT would cost a
        -- speculative insertion per row to learn the same thing.
        INSERT INTO messages (id, session_id, seq, sender_id, sender_name, sender_role,
            content, client_msg_id, created_at)
        SELECT * FROM UNNEST(m_id, m_session_id, m_seq, m_sender_id, m_sender_name,
            m_sender_role, m_content, m_client_msg_id, m_created_at);

        -- Counted by the caller where it knows the pool (c_*), here for
        -- the others. Each connection adds to a shard of its own, so that
        -- two workers committing messages of one pool never wait for each
        -- other here.
        INSERT INTO pool_message_counts AS c (pool, day, shard, messages)
        SELECT counted.pool, counted.day, pg_backend_pid() % 16, sum(counted.n)
        FROM (
            SELECT k.pool, k.day, k.n FROM unnest(c_pool, c_day, c_messages) AS k (pool, day, n)
            UNION ALL
            SELECT s.pool, (m.created_at / 86400000) * 86400000, count(*)
            FROM unnest(m_session_id, m_created_at) AS m (session_id, created_at)
            JOIN sessions AS s ON s.id = m.session_id
            WHERE m.session_id = ANY (x_session_id)
            GROUP BY 1, 2
        ) AS counted
        GROUP BY counted.pool, counted.day
        ON CONFLICT (pool, day, shard) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    END IF;

    IF cardinality(r_session_id) > 0 THEN
        INSERT INTO read_positions (session_id, user_id, role, up_to_seq, read_at)
        SELECT * FROM UNNEST(r_session_id, r_user_id, r_role, r_up_to_seq, r_read_at)
        ON CONFLICT (session_id, user_id) DO UPDATE SET
            role = EXCLUDED.role, up_to_seq = EXCLUDED.up_to_seq, read_at = EXCLUDED.read_at;
    END IF;

    -- A name that did not change is left alone: no new row version to
    -- write and vacuum for every join of a known user.
    IF cardinality(u_user_id) > 0 THEN
        INSERT INTO users (user_id, name) SELECT * FROM UNNEST(u_user_id, u_name)
        ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name
        WHERE users.name IS DISTINCT FROM EXCLUDED.name;
    END IF;
END
$body$;
"#;

/// The agent directory, as in SQLite's migration 2: one row per agent who
/// ever connected. Pools are an array, read and written with the row; the
/// GIN index serves a pool's list (`pools @> ARRAY[pool]`).
const V3_AGENTS: &str = r#"
CREATE TABLE agents (
    agent_id     TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL,
    pools        TEXT[] NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX agents_by_pool ON agents USING GIN (pools);
"#;

/// Brings the schema up to date, creating `schema` first if one is named
/// (the connection's search path already points at it).
pub(super) async fn migrate(client: &mut Object, schema: Option<&str>) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    match apply_missing(&tx, schema).await {
        Ok(()) => Ok(tx.commit().await?),
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

async fn apply_missing(tx: &Transaction<'_>, schema: Option<&str>) -> Result<(), StoreError> {
    // Held until the transaction ends; concurrent callers queue here.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, current_schema()::text, '')))",
        &[&LOCK_NAMESPACE, &schema],
    )
    .await?;
    if let Some(schema) = schema {
        // The name was checked by the caller: it needs no quoting.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .await?;
    let applied: Vec<i64> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    refuse_newer_schema(&applied)?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&migration.version, &Timestamp::now().millis()],
        )
        .await?;
        tracing::info!(version = migration.version, "applied postgresql migration");
    }
    Ok(())
}

fn refuse_newer_schema(applied: &[i64]) -> Result<(), StoreError> {
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.version);
    match applied.iter().max() {
        Some(&newest) if newest > newest_known => Err(StoreError::Internal(format!(
            "database schema version {newest} is newer than this build knows ({newest_known})"
        ))),
        _ => Ok(()),
    }
}
