//! The read side: what the worker loads before deciding a batch, and what
//! gateways ask for (history, session lists, read positions, stats).
//!
//! Every statement goes through the connection's statement cache, so after
//! its first use on a connection it costs one round trip. Rows are decoded
//! with checked getters: a column of an unexpected type or an unknown enum
//! name is a `StoreError::Internal`, never a panic.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::protocol::{MessagePage, ReadPosition, Session};
use crate::store::rows::{self, Columns};
use crate::store::{
    AgentRecord, BatchKeys, BatchSnapshot, MessageRange, PoolFigures, SessionQuery, SessionRecord,
    SessionScope, StoreError,
};
use crate::Timestamp;

pub(super) const SESSION_COLUMNS: &str = "id, customer_id, customer_name, agent_id, agent_name, \
     pool, status, subject, created_at, assigned_at, closed_at, last_seq, last_message_at, \
     version, first_assigned_at, first_response_at, first_response_ms";

pub(super) const MESSAGE_COLUMNS: &str =
    "id, session_id, seq, sender_id, sender_name, sender_role, content, client_msg_id, created_at";

/// A parameter list built alongside dynamic SQL.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

// ---------------------------------------------------------------------------
// The worker's batch snapshot

/// Reads everything a batch names. The four queries are sent together
/// (pipelined) outside any transaction: one round trip whatever the number
/// of keys. No snapshot is needed, since the worker reading them is the
/// only writer of the sessions they name; a racing writer is caught by the
/// version checks of the commit.
pub(super) async fn load_batch(
    client: &mut Object,
    keys: &BatchKeys,
) -> Result<BatchSnapshot, StoreError> {
    let db = &**client;

    let sessions = async {
        if keys.session_ids.is_empty() {
            return Ok(Vec::new());
        }
        let statement = db
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ANY($1)"
            ))
            .await?;
        db.query(&statement, &[&keys.session_ids]).await
    };

    let (msg_sessions, msg_senders, msg_client_ids) = unzip3(&keys.client_messages);
    let messages = async {
        if keys.client_messages.is_empty() {
            return Ok(Vec::new());
        }
        let statement = db
            .prepare_cached(
                // LATERAL keeps one index probe per key whatever plan the
                // prepared statement settles on; a hash join over the
                // whole table would grow with history.
                "SELECT m.id, m.session_id, m.seq, m.sender_id, m.sender_name, m.sender_role, \
                 m.content, m.client_msg_id, m.created_at \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k (session_id, sender_id, client_msg_id) \
                 CROSS JOIN LATERAL (SELECT * FROM messages \
                   WHERE session_id = k.session_id AND sender_id = k.sender_id \
                   AND client_msg_id = k.client_msg_id) AS m",
            )
            .await?;
        db.query(&statement, &[&msg_sessions, &msg_senders, &msg_client_ids])
            .await
    };

    let (read_sessions, read_users): (Vec<&str>, Vec<&str>) = keys
        .read_positions
        .iter()
        .map(|(session, user)| (session.as_str(), user.as_str()))
        .unzip();
    let positions = async {
        if keys.read_positions.is_empty() {
            return Ok(Vec::new());
        }
        let statement = db
            .prepare_cached(
                "SELECT r.session_id, r.user_id, r.up_to_seq \
                 FROM UNNEST($1::text[], $2::text[]) AS k (session_id, user_id) \
                 CROSS JOIN LATERAL (SELECT * FROM read_positions \
                   WHERE session_id = k.session_id AND user_id = k.user_id) AS r",
            )
            .await?;
        db.query(&statement, &[&read_sessions, &read_users]).await
    };

    let users = async {
        if keys.user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let statement = db
            .prepare_cached("SELECT user_id, name FROM users WHERE user_id = ANY($1)")
            .await?;
        db.query(&statement, &[&keys.user_ids]).await
    };

    let agents = async {
        if keys.agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let statement = db
            .prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ANY($1)"
            ))
            .await?;
        db.query(&statement, &[&keys.agent_ids]).await
    };

    let (sessions, messages, positions, users, agents) =
        match tokio::join!(sessions, messages, positions, users, agents) {
            (Ok(sessions), Ok(messages), Ok(positions), Ok(users), Ok(agents)) => {
                (sessions, messages, positions, users, agents)
            }
            (sessions, messages, positions, users, agents) => {
                let first = [
                    sessions.err(),
                    messages.err(),
                    positions.err(),
                    users.err(),
                    agents.err(),
                ]
                .into_iter()
                .flatten()
                .next();
                return Err(first.map_or_else(
                    || StoreError::Internal("a batch read failed".into()),
                    StoreError::from,
                ));
            }
        };

    let mut snapshot = BatchSnapshot::default();
    for row in &sessions {
        let record = rows::session_record(row)?;
        snapshot.sessions.insert(record.session.id.clone(), record);
    }
    for row in &messages {
        let message = rows::message(row)?;
        // The join matched on the client id, so it is present.
        if let Some(client_msg_id) = &message.client_msg_id {
            let key = (
                message.session_id.clone(),
                message.sender_id.clone(),
                client_msg_id.clone(),
            );
            snapshot.messages_by_client_id.insert(key, message);
        }
    }
    for row in &positions {
        let key = (row.try_get("session_id")?, row.try_get("user_id")?);
        snapshot
            .read_positions
            .insert(key, row.try_get("up_to_seq")?);
    }
    for row in &users {
        snapshot
            .user_names
            .insert(row.try_get("user_id")?, row.try_get("name")?);
    }
    for row in &agents {
        let agent = agent_record(row)?;
        snapshot.agents.insert(agent.id.clone(), agent);
    }
    Ok(snapshot)
}

fn unzip3(keys: &[(String, String, String)]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let mut columns = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for (a, b, c) in keys {
        columns.0.push(a.as_str());
        columns.1.push(b.as_str());
        columns.2.push(c.as_str());
    }
    columns
}

// ---------------------------------------------------------------------------
// Gateway reads

pub(super) async fn find_session(
    client: &Object,
    id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(rows::session_record)
        .transpose()
}

pub(super) async fn list_sessions(
    client: &Object,
    query: &SessionQuery,
) -> Result<Vec<Session>, StoreError> {
    let Some((sql, params)) = session_list_sql(query) else {
        return Ok(Vec::new());
    };
    let statement = client.prepare_cached(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    client
        .query(&statement, &params)
        .await?
        .iter()
        .map(|row| Ok(rows::session_record(row)?.session))
        .collect()
}

/// The SQL and parameters of a session list, or `None` when the query can
/// match nothing (no pools in scope, or a zero limit). The statement text
/// depends only on which filters are present, so the few variants all stay
/// in the statement cache.
fn session_list_sql(query: &SessionQuery) -> Option<(String, Params)> {
    if query.limit == 0 {
        return None;
    }
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Params = Vec::new();
    match &query.scope {
        SessionScope::Customer(customer_id) => {
            let p = bind(&mut params, customer_id.clone());
            conditions.push(format!("customer_id = {p}"));
        }
        SessionScope::Pools(pools) if pools.is_empty() => return None,
        SessionScope::Pools(pools) => {
            let p = bind(&mut params, pools.clone());
            conditions.push(format!("pool = ANY({p})"));
        }
        SessionScope::All => {}
    }
    if let Some(status) = query.status {
        let p = bind(&mut params, status.as_str());
        conditions.push(format!("status = {p}"));
    }
    if let Some(pool) = &query.pool {
        let p = bind(&mut params, pool.clone());
        conditions.push(format!("pool = {p}"));
    }
    if let Some(cursor) = &query.after {
        let created_at = bind(&mut params, cursor.created_at.millis());
        let id = bind(&mut params, cursor.id.clone());
        conditions.push(format!("(created_at, id) < ({created_at}, {id})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let limit = bind(&mut params, sql_limit(query.limit));
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions {filter} \
         ORDER BY created_at DESC, id DESC LIMIT {limit}"
    );
    Some((sql, params))
}

pub(super) async fn message_page(
    client: &Object,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let (lower, upper, newest_first) = range.bounds();
    let order = if newest_first { "DESC" } else { "ASC" };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE session_id = $1 AND seq > $2 AND seq < $3 \
             ORDER BY seq {order} LIMIT $4"
        ))
        .await?;
    // Reading one row beyond the limit tells whether more exist.
    let rows = client
        .query(
            &statement,
            &[
                &session_id,
                &lower,
                &upper,
                &sql_limit(limit.saturating_add(1)),
            ],
        )
        .await?;
    let mut items = rows
        .iter()
        .map(rows::message)
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    if newest_first {
        items.reverse();
    }
    Ok(MessagePage { items, has_more })
}

const AGENT_COLUMNS: &str = "agent_id, name, pools, last_seen_at";

fn agent_record(row: &Row) -> Result<AgentRecord, StoreError> {
    Ok(AgentRecord {
        id: row.try_get("agent_id")?,
        name: row.try_get("name")?,
        pools: row.try_get("pools")?,
        last_seen_at: Timestamp(row.try_get("last_seen_at")?),
    })
}

/// The agent's row and their display name, in one statement (so one
/// transaction): the name is the same fact in both places.
pub(super) async fn remember_agent(client: &Object, agent: &AgentRecord) -> Result<(), StoreError> {
    // Sorted and without repeats, as the SQLite store keeps them.
    let pools: Vec<&str> = agent
        .pools
        .iter()
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let statement = client
        .prepare_cached(
            "WITH agent AS (
               INSERT INTO agents (agent_id, name, pools, last_seen_at)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (agent_id) DO UPDATE SET name = EXCLUDED.name,
                 pools = EXCLUDED.pools,
                 last_seen_at = GREATEST(agents.last_seen_at, EXCLUDED.last_seen_at)
             )
             INSERT INTO users (user_id, name) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name
             WHERE users.name IS DISTINCT FROM EXCLUDED.name",
        )
        .await?;
    client
        .execute(
            &statement,
            &[&agent.id, &agent.name, &pools, &agent.last_seen_at.millis()],
        )
        .await?;
    Ok(())
}

pub(super) async fn list_agents(
    client: &Object,
    pool: Option<&str>,
) -> Result<Vec<AgentRecord>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents \
             WHERE $1::text IS NULL OR pools @> ARRAY[$1::text] \
             ORDER BY name, agent_id"
        ))
        .await?;
    client
        .query(&statement, &[&pool])
        .await?
        .iter()
        .map(agent_record)
        .collect()
}

pub(super) async fn read_positions(
    client: &Object,
    session_id: &str,
) -> Result<Vec<ReadPosition>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT user_id, role, up_to_seq FROM read_positions \
             WHERE session_id = $1 ORDER BY user_id",
        )
        .await?;
    client
        .query(&statement, &[&session_id])
        .await?
        .iter()
        .map(rows::read_position)
        .collect()
}

pub(super) async fn pool_figures(
    client: &Object,
    pool: &str,
    day_start: Timestamp,
) -> Result<PoolFigures, StoreError> {
    // One statement, so every figure comes from the same snapshot. AVG of
    // a BIGINT is NUMERIC; the casts make it a float8 the client reads.
    let statement = client
        .prepare_cached(
            "SELECT
            (SELECT COUNT(*) FROM sessions WHERE pool = $1 AND status = 'pending'),
            (SELECT COUNT(*) FROM sessions WHERE pool = $1 AND status = 'active'),
            (SELECT COUNT(*) FROM sessions
              WHERE pool = $1 AND status = 'closed' AND closed_at >= $2),
            (SELECT MIN(created_at) FROM sessions WHERE pool = $1 AND status = 'pending'),
            (SELECT AVG((first_assigned_at - created_at)::float8) FROM sessions
              WHERE pool = $1 AND first_assigned_at >= $2),
            (SELECT AVG(first_response_ms::float8) FROM sessions
              WHERE pool = $1 AND first_response_at >= $2 AND first_response_ms IS NOT NULL),
            (SELECT COALESCE(SUM(messages), 0)::int8 FROM pool_message_counts
              WHERE pool = $1 AND day >= $2)",
        )
        .await?;
    let row = client
        .query_one(&statement, &[&pool, &day_start.millis()])
        .await?;
    Ok(PoolFigures {
        pending_sessions: row.try_get(0)?,
        active_sessions: row.try_get(1)?,
        closed_today: row.try_get(2)?,
        oldest_pending_created_at: row.try_get::<_, Option<i64>>(3)?.map(Timestamp),
        avg_wait_seconds: row.try_get::<_, Option<f64>>(4)?.map(millis_to_seconds),
        avg_first_response_seconds: row.try_get::<_, Option<f64>>(5)?.map(millis_to_seconds),
        messages_today: row.try_get(6)?,
    })
}

fn millis_to_seconds(millis: f64) -> f64 {
    millis / 1000.0
}

/// Adds a parameter and returns its placeholder.
fn bind(params: &mut Params, value: impl ToSql + Sync + Send + 'static) -> String {
    params.push(Box::new(value));
    format!("${}", params.len())
}

/// LIMIT takes a BIGINT; anything larger is as good as unlimited.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------
// Rows

impl Columns for Row {
    type Error = StoreError;

    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn optional_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn unknown(&self, column: &str, text: &str) -> StoreError {
        StoreError::Internal(format!("unknown {column} {text:?} in a row"))
    }
}
