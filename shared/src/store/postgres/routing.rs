//! Routing in the cluster's database, through `routing_sql`. Every read
//! here goes to the primary: assignments decide on these figures, and a
//! replica's would be behind exactly when they matter.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use crate::protocol::SessionEvent;
use crate::store::routing_sql::{self, ChangeValue};
use crate::store::sql::{sql_limit, Dialect};
use crate::store::timeline_sql::{self, EventRow};
use crate::store::{
    rows::Columns, HeldChat, Mutation, QueueView, RoutedAgent, RoutingChange, StoreError,
};
use crate::store::{supervisor_sql, AgentDay, OpenChats, SupervisedChat};
use crate::Timestamp;

const POSTGRES: Dialect = Dialect::Postgres;

pub(super) async fn routed_agents(
    client: &Object,
    pool: Option<&str>,
) -> Result<Vec<RoutedAgent>, StoreError> {
    let statement = client
        .prepare_cached(&routing_sql::routed_agents(POSTGRES))
        .await?;
    client
        .query(&statement, &[&pool])
        .await?
        .iter()
        .map(routing_sql::routed_agent_row)
        .collect()
}

pub(super) async fn routed_agent(
    client: &Object,
    agent_id: &str,
) -> Result<Option<RoutedAgent>, StoreError> {
    let statement = client
        .prepare_cached(&routing_sql::routed_agent(POSTGRES))
        .await?;
    client
        .query_opt(&statement, &[&agent_id])
        .await?
        .as_ref()
        .map(routing_sql::routed_agent_row)
        .transpose()
}

pub(super) async fn change_routing(
    client: &Object,
    agent_id: &str,
    change: RoutingChange,
) -> Result<Option<RoutedAgent>, StoreError> {
    let sql = routing_sql::change_routing(POSTGRES, change);
    let changed = match routing_sql::change_value(change) {
        ChangeValue::Text(text) => client.execute(&sql, &[&agent_id, &text]).await?,
        ChangeValue::Int(int) => client.execute(&sql, &[&agent_id, &int]).await?,
    };
    if changed == 0 {
        return Ok(None);
    }
    routed_agent(client, agent_id).await
}

/// Applies the batch's load changes inside its transaction `tx`. The
/// UPDATE takes each agent's row lock until the commit, so a second
/// writer's check sees this one's count.
pub(super) async fn adjust_loads(
    tx: &tokio_postgres::Transaction<'_>,
    mutations: &[Mutation],
) -> Result<(), StoreError> {
    let sql = routing_sql::adjust_load(POSTGRES);
    for change in routing_sql::load_changes(mutations) {
        let assigned_at = change.assigned_at.map(|t| t.0);
        let params: [&(dyn ToSql + Sync); 3] = [&change.agent_id, &change.delta, &assigned_at];
        if let Some(row) = tx.query_opt(&sql, &params).await? {
            change.check(row.int("open_chats")?)?;
        }
    }
    Ok(())
}

pub(super) async fn queue(
    client: &Object,
    pool: &str,
    max: usize,
    assigned_since: Timestamp,
) -> Result<QueueView, StoreError> {
    let head = client
        .prepare_cached(&routing_sql::queue_head(POSTGRES))
        .await?;
    let waiting = client
        .query(&head, &[&pool, &sql_limit(max)])
        .await?
        .iter()
        .map(routing_sql::queued_row)
        .collect::<Result<Vec<_>, _>>()?;
    let count = client
        .prepare_cached(&routing_sql::assigned_since(POSTGRES))
        .await?;
    let assigned: i64 = client
        .query_one(&count, &[&pool, &assigned_since.0])
        .await?
        .try_get(0)?;
    Ok(QueueView {
        waiting,
        assigned_since: assigned,
    })
}

pub(super) async fn waiting_ahead(
    client: &Object,
    pool: &str,
    session_id: &str,
) -> Result<i64, StoreError> {
    let statement = client
        .prepare_cached(&routing_sql::waiting_ahead(POSTGRES))
        .await?;
    Ok(client
        .query_one(&statement, &[&pool, &session_id])
        .await?
        .try_get(0)?)
}

pub(super) async fn waiting_pools(client: &Object) -> Result<Vec<String>, StoreError> {
    let statement = client.prepare_cached(routing_sql::WAITING_POOLS).await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
}

pub(super) async fn chats_of_agents_seen_before(
    client: &Object,
    seen_before: Timestamp,
    max: usize,
) -> Result<Vec<HeldChat>, StoreError> {
    let statement = client
        .prepare_cached(&routing_sql::chats_of_agents_seen_before(POSTGRES))
        .await?;
    client
        .query(&statement, &[&seen_before.0, &sql_limit(max)])
        .await?
        .iter()
        .map(routing_sql::held_row)
        .collect()
}

/// Adds the batch's timeline entries inside its transaction `tx`.
pub(super) async fn record_events(
    tx: &tokio_postgres::Transaction<'_>,
    mutations: &[Mutation],
) -> Result<(), StoreError> {
    let sql = timeline_sql::insert_event(POSTGRES);
    for mutation in mutations {
        let Mutation::RecordSessionEvent(event) = mutation else {
            continue;
        };
        let row = EventRow::of(event);
        let params: [&(dyn ToSql + Sync); 9] = [
            &row.session_id,
            &row.at,
            &row.kind,
            &row.by_id,
            &row.by_role,
            &row.agent_id,
            &row.agent_name,
            &row.pool,
            &row.after_seq,
        ];
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

pub(super) async fn session_events(
    client: &Object,
    session_id: &str,
    max: usize,
) -> Result<Vec<SessionEvent>, StoreError> {
    let statement = client
        .prepare_cached(&timeline_sql::latest_events(POSTGRES))
        .await?;
    let mut events = client
        .query(&statement, &[&session_id, &sql_limit(max)])
        .await?
        .iter()
        .map(timeline_sql::event_row)
        .collect::<Result<Vec<_>, _>>()?;
    events.reverse();
    Ok(events)
}

pub(super) async fn open_chats(
    client: &Object,
    pool: Option<&str>,
    which: OpenChats,
    max: usize,
) -> Result<Vec<SupervisedChat>, StoreError> {
    let statement = client
        .prepare_cached(&supervisor_sql::open_chats(POSTGRES, which))
        .await?;
    client
        .query(&statement, &[&pool, &sql_limit(max)])
        .await?
        .iter()
        .map(supervisor_sql::open_chat_row)
        .collect()
}

pub(super) async fn agent_days(
    client: &Object,
    day_start: Timestamp,
) -> Result<Vec<AgentDay>, StoreError> {
    let statement = client
        .prepare_cached(&supervisor_sql::agent_days(POSTGRES))
        .await?;
    client
        .query(&statement, &[&day_start.0])
        .await?
        .iter()
        .map(supervisor_sql::agent_day_row)
        .collect()
}
