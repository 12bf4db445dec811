//! The read side: what the worker loads before deciding a batch, and what
//! gateways ask for (history, session lists, read positions, stats).
//!
//! Every statement goes through the connection's statement cache, so after
//! its first use on a connection it costs one round trip. Rows are decoded
//! by `store::rows` with checked getters: a column of an unexpected type or
//! an unknown enum name is a `StoreError::Internal`, never a panic.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::protocol::{MessagePage, ReadPosition, Session};
use crate::store::rows::{self, Columns};
use crate::store::sql::{
    self, Dialect, MessageWindow, Param, AGENT_COLUMNS, MESSAGE_COLUMNS, SESSION_COLUMNS,
};
use crate::store::{
    AgentRecord, BatchKeys, BatchSnapshot, MessageRange, PoolFigures, SessionQuery, SessionRecord,
    StoreError,
};
use crate::Timestamp;

const POSTGRES: Dialect = Dialect::Postgres;

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
                &format!(
                    "SELECT {} \
                     FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                       AS k (session_id, sender_id, client_msg_id) \
                     CROSS JOIN LATERAL (SELECT * FROM messages \
                       WHERE session_id = k.session_id AND sender_id = k.sender_id \
                       AND client_msg_id = k.client_msg_id) AS m",
                    MESSAGE_COLUMNS.of("m")
                ),
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
        let agent = rows::agent(row)?;
        snapshot.agents.insert(agent.id.clone(), agent);
    }
    // Internal notes: only batches that send one name any.
    super::notes::load(db, keys, &mut snapshot).await?;
    // Reactions and delivery positions: likewise.
    super::reactions::load(db, keys, &mut snapshot).await?;
    super::attachments::load(db, keys, &mut snapshot).await?;
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
    let statement = client.prepare_cached(&sql::session_by_id(POSTGRES)).await?;
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
    let Some(statement) = sql::session_list(POSTGRES, query) else {
        return Ok(Vec::new());
    };
    let prepared = client.prepare_cached(&statement.sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = statement.params.iter().map(param).collect();
    client
        .query(&prepared, &params)
        .await?
        .iter()
        .map(|row| Ok(rows::session_record(row)?.session))
        .collect()
}

pub(super) async fn message_page(
    client: &Object,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let window = MessageWindow::new(range, limit);
    let statement = client.prepare_cached(&window.sql(POSTGRES)).await?;
    let rows = client
        .query(
            &statement,
            &[&session_id, &window.lower, &window.upper, &window.fetch()],
        )
        .await?;
    let items = rows
        .iter()
        .map(rows::message)
        .collect::<Result<Vec<_>, _>>()?;
    let mut page = window.page(items);
    super::reactions::fill_page(client, session_id, &mut page).await?;
    super::attachments::fill_page(client, session_id, &mut page).await?;
    Ok(page)
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
        .prepare_cached(&format!(
            "WITH agent AS ({}) {}",
            sql::upsert_agent(POSTGRES),
            sql::upsert_user(POSTGRES)
        ))
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
    let statement = client.prepare_cached(&sql::list_agents(POSTGRES)).await?;
    client
        .query(&statement, &[&pool])
        .await?
        .iter()
        .map(rows::agent)
        .collect()
}

pub(super) async fn read_positions(
    client: &Object,
    session_id: &str,
) -> Result<Vec<ReadPosition>, StoreError> {
    let statement = client
        .prepare_cached(&sql::read_positions(POSTGRES))
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
    let statement = client.prepare_cached(&sql::pool_figures(POSTGRES)).await?;
    let row = client
        .query_one(&statement, &[&pool, &day_start.millis()])
        .await?;
    rows::pool_figures(&row)
}

/// A parameter of `store::sql` as the client binds it.
fn param<'a>(param: &'a Param<'_>) -> &'a (dyn ToSql + Sync) {
    match param {
        Param::Text(text) => text,
        Param::Int(int) => int,
        Param::Texts(texts) => texts,
    }
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

    fn optional_float(&self, column: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    /// Pools are a `text[]`.
    fn text_list(&self, column: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn unknown(&self, column: &str, text: &str) -> StoreError {
        StoreError::Internal(format!("unknown {column} {text:?} in a row"))
    }
}
