//! Routing in the standalone file: agents with their load, the changes an
//! agent or admin makes, the load a commit moves, a pool's queue and the
//! chats of agents who have gone, through `routing_sql`.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::protocol::SessionEvent;
use crate::store::routing_sql::{self, ChangeValue};
use crate::store::sql::{sql_limit, Dialect};
use crate::store::timeline_sql::{self, EventRow};
use crate::store::{supervisor_sql, AgentDay, OpenChats, SupervisedChat};
use crate::store::{HeldChat, Mutation, QueueView, RoutedAgent, RoutingChange, StoreError};
use crate::Timestamp;

const SQLITE: Dialect = Dialect::Sqlite;

pub(super) fn routed_agents(
    conn: &Connection,
    pool: Option<&str>,
) -> Result<Vec<RoutedAgent>, StoreError> {
    let mut statement = conn.prepare_cached(&routing_sql::routed_agents(SQLITE))?;
    let agents = statement
        .query_map([pool], |row| routing_sql::routed_agent_row(row))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(agents)
}

pub(super) fn routed_agent(
    conn: &Connection,
    agent_id: &str,
) -> Result<Option<RoutedAgent>, StoreError> {
    let mut statement = conn.prepare_cached(&routing_sql::routed_agent(SQLITE))?;
    Ok(statement
        .query_row([agent_id], |row| routing_sql::routed_agent_row(row))
        .optional()?)
}

pub(super) fn change_routing(
    tx: &Transaction<'_>,
    agent_id: &str,
    change: RoutingChange,
) -> Result<Option<RoutedAgent>, StoreError> {
    let value = match routing_sql::change_value(change) {
        ChangeValue::Text(text) => Value::Text(text.to_owned()),
        ChangeValue::Int(Some(int)) => Value::Integer(int),
        ChangeValue::Int(None) => Value::Null,
    };
    let changed = tx.execute(
        &routing_sql::change_routing(SQLITE, change),
        params![agent_id, value],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    routed_agent(tx, agent_id)
}

/// Applies the batch's load changes, inside its transaction.
pub(super) fn adjust_loads(tx: &Transaction<'_>, mutations: &[Mutation]) -> Result<(), StoreError> {
    for change in routing_sql::load_changes(mutations) {
        let mut statement = tx.prepare_cached(&routing_sql::adjust_load(SQLITE))?;
        let held: Option<i64> = statement
            .query_row(
                params![
                    change.agent_id,
                    change.delta,
                    change.assigned_at.map(|t| t.0)
                ],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(held) = held {
            change.check(held)?;
        }
    }
    Ok(())
}

pub(super) fn queue(
    conn: &Connection,
    pool: &str,
    max: usize,
    assigned_since: Timestamp,
) -> Result<QueueView, StoreError> {
    let mut head = conn.prepare_cached(&routing_sql::queue_head(SQLITE))?;
    let waiting = head
        .query_map(params![pool, sql_limit(max)], |row| {
            routing_sql::queued_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let assigned = conn
        .prepare_cached(&routing_sql::assigned_since(SQLITE))?
        .query_row(params![pool, assigned_since.0], |row| row.get(0))?;
    Ok(QueueView {
        waiting,
        assigned_since: assigned,
    })
}

pub(super) fn waiting_ahead(
    conn: &Connection,
    pool: &str,
    session_id: &str,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(&routing_sql::waiting_ahead(SQLITE))?
        .query_row(params![pool, session_id], |row| row.get(0))?)
}

pub(super) fn waiting_pools(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(routing_sql::WAITING_POOLS)?;
    let pools = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(pools)
}

pub(super) fn chats_of_agents_seen_before(
    conn: &Connection,
    seen_before: Timestamp,
    max: usize,
) -> Result<Vec<HeldChat>, StoreError> {
    let mut statement = conn.prepare_cached(&routing_sql::chats_of_agents_seen_before(SQLITE))?;
    let chats = statement
        .query_map(params![seen_before.0, sql_limit(max)], |row| {
            routing_sql::held_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(chats)
}

/// Adds a timeline entry, inside the batch's transaction.
pub(super) fn record_event(tx: &Transaction<'_>, event: &SessionEvent) -> Result<(), StoreError> {
    let row = EventRow::of(event);
    tx.prepare_cached(&timeline_sql::insert_event(SQLITE))?
        .execute(params![
            row.session_id,
            row.at,
            row.kind,
            row.by_id,
            row.by_role,
            row.agent_id,
            row.agent_name,
            row.pool,
            row.after_seq
        ])?;
    Ok(())
}

pub(super) fn session_events(
    conn: &Connection,
    session_id: &str,
    max: usize,
) -> Result<Vec<SessionEvent>, StoreError> {
    let mut statement = conn.prepare_cached(&timeline_sql::latest_events(SQLITE))?;
    let mut events = statement
        .query_map(params![session_id, sql_limit(max)], |row| {
            timeline_sql::event_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    events.reverse();
    Ok(events)
}

pub(super) fn open_chats(
    conn: &Connection,
    pool: Option<&str>,
    which: OpenChats,
    max: usize,
) -> Result<Vec<SupervisedChat>, StoreError> {
    let mut statement = conn.prepare_cached(&supervisor_sql::open_chats(SQLITE, which))?;
    let chats = statement
        .query_map(params![pool, sql_limit(max)], |row| {
            supervisor_sql::open_chat_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(chats)
}

pub(super) fn agent_days(
    conn: &Connection,
    day_start: Timestamp,
) -> Result<Vec<AgentDay>, StoreError> {
    let mut statement = conn.prepare_cached(&supervisor_sql::agent_days(SQLITE))?;
    let days = statement
        .query_map(params![day_start.0], |row| {
            supervisor_sql::agent_day_row(row)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(days)
}
