//! The SQL of routing, written once for both stores as `sql` is: agents
//! with their status, capacity and load, the changes an agent or admin
//! makes to them, the load a commit moves, a pool's queue, and the chats of
//! agents who have gone. The rows decode here too.

use crate::protocol::AgentStatus;
use crate::store::rows::{self, Columns};
use crate::store::sql::{self, Dialect, AGENT_COLUMNS};
use crate::store::{HeldChat, QueuedSession, RoutedAgent, RoutingChange};
use crate::Timestamp;

/// The routing columns of `agents`, after the directory's own.
const ROUTING_COLUMNS: &str = "status, capacity, open_chats, last_assigned_at";

fn routed_columns() -> String {
    format!("{AGENT_COLUMNS}, {ROUTING_COLUMNS}")
}

/// The directory's agents with their routing (parameter: the pool, or
/// NULL for all), ordered as `list_agents`.
pub(crate) fn routed_agents(dialect: Dialect) -> String {
    sql::agents_serving(dialect, &routed_columns())
}

/// One agent with their routing (parameter: the agent id).
pub(crate) fn routed_agent(dialect: Dialect) -> String {
    format!(
        "SELECT {} FROM agents WHERE agent_id = {}",
        routed_columns(),
        dialect.param(1)
    )
}

/// The statement of a routing change (parameters: the agent id, the new
/// value).
pub(crate) fn change_routing(dialect: Dialect, change: RoutingChange) -> String {
    let column = match change {
        RoutingChange::Status(_) => "status",
        RoutingChange::Capacity(_) => "capacity",
    };
    format!(
        "UPDATE agents SET {column} = {} WHERE agent_id = {}",
        dialect.param(2),
        dialect.param(1)
    )
}

/// What a routing change stores: the status's name, or the capacity.
pub(crate) enum ChangeValue {
    Text(&'static str),
    Int(Option<i64>),
}

pub(crate) fn change_value(change: RoutingChange) -> ChangeValue {
    match change {
        RoutingChange::Status(status) => ChangeValue::Text(status.as_str()),
        RoutingChange::Capacity(capacity) => ChangeValue::Int(capacity),
    }
}

/// Moves an agent's load (parameters: agent id, delta, last assigned at
/// or NULL) and returns the count it now holds; no row for an agent
/// outside the directory.
pub(crate) fn adjust_load(dialect: Dialect) -> String {
    format!(
        "UPDATE agents SET open_chats = open_chats + {delta}, \
         last_assigned_at = COALESCE({at}, last_assigned_at) \
         WHERE agent_id = {id} RETURNING open_chats",
        id = dialect.param(1),
        delta = dialect.param(2),
        at = dialect.param(3),
    )
}

/// The head of a pool's queue (parameters: the pool, the limit).
pub(crate) fn queue_head(dialect: Dialect) -> String {
    format!(
        "SELECT id, customer_id, created_at FROM sessions \
         WHERE pool = {} AND status = 'pending' ORDER BY created_at, id LIMIT {}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// Sessions of a pool first assigned since a time (parameters: the pool,
/// the time).
pub(crate) fn assigned_since(dialect: Dialect) -> String {
    format!(
        "SELECT count(*) FROM sessions WHERE pool = {} AND first_assigned_at >= {}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// Sessions of a pool waiting ahead of one (parameters: the pool, the
/// session id); every waiting one when the session is not stored.
pub(crate) fn waiting_ahead(dialect: Dialect) -> String {
    let (pool, id) = (dialect.param(1), dialect.param(2));
    format!(
        "SELECT count(*) FROM sessions s \
         WHERE s.pool = {pool} AND s.status = 'pending' AND s.id <> {id} \
         AND NOT EXISTS (SELECT 1 FROM sessions me WHERE me.id = {id} \
           AND (me.created_at < s.created_at \
                OR (me.created_at = s.created_at AND me.id < s.id)))"
    )
}

/// The pools with a queue.
pub(crate) const WAITING_POOLS: &str =
    "SELECT DISTINCT pool FROM sessions WHERE status = 'pending' ORDER BY pool";

/// Active sessions of agents last seen before a time (parameters: the
/// time, the limit).
pub(crate) fn chats_of_agents_seen_before(dialect: Dialect) -> String {
    format!(
        "SELECT s.id, s.agent_id, s.pool FROM sessions s \
         JOIN agents a ON a.agent_id = s.agent_id \
         WHERE s.status = 'active' AND a.last_seen_at < {} \
         ORDER BY s.id LIMIT {}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// A row of `routed_agents` or `routed_agent`.
pub(crate) fn routed_agent_row<R: Columns>(row: &R) -> Result<RoutedAgent, R::Error> {
    let status = row.text("status")?;
    Ok(RoutedAgent {
        agent: rows::agent(row)?,
        status: match AgentStatus::parse(&status) {
            Some(status @ (AgentStatus::Online | AgentStatus::Away)) => status,
            _ => return Err(row.unknown("status", &status)),
        },
        capacity: row.optional_int("capacity")?,
        open_chats: row.int("open_chats")?,
        last_assigned_at: row.optional_int("last_assigned_at")?.map(Timestamp),
    })
}

/// A row of `queue_head`.
pub(crate) fn queued_row<R: Columns>(row: &R) -> Result<QueuedSession, R::Error> {
    Ok(QueuedSession {
        session_id: row.text("id")?,
        customer_id: row.text("customer_id")?,
        created_at: Timestamp(row.int("created_at")?),
    })
}

/// A row of `chats_of_agents_seen_before`.
pub(crate) fn held_row<R: Columns>(row: &R) -> Result<HeldChat, R::Error> {
    Ok(HeldChat {
        session_id: row.text("id")?,
        agent_id: row.text("agent_id")?,
        pool: row.text("pool")?,
    })
}

/// The load changes of a batch, one per agent (summed), in agent id order
/// so that two transactions lock agents in the same order and cannot
/// deadlock on them; the tightest bound and the latest assignment win.
pub(crate) fn load_changes(mutations: &[crate::store::Mutation]) -> Vec<LoadChange<'_>> {
    let mut changes: std::collections::BTreeMap<&str, LoadChange<'_>> =
        std::collections::BTreeMap::new();
    for mutation in mutations {
        let crate::store::Mutation::AdjustAgentLoad {
            agent_id,
            delta,
            at_most,
            assigned_at,
        } = mutation
        else {
            continue;
        };
        let change = changes.entry(agent_id).or_insert(LoadChange {
            agent_id,
            delta: 0,
            at_most: None,
            assigned_at: None,
        });
        change.delta += delta;
        change.at_most = match (change.at_most, *at_most) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        change.assigned_at = change.assigned_at.max(*assigned_at);
    }
    changes.into_values().collect()
}

/// The net load change of one agent in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadChange<'a> {
    pub agent_id: &'a str,
    pub delta: i64,
    pub at_most: Option<i64>,
    pub assigned_at: Option<Timestamp>,
}

impl LoadChange<'_> {
    /// The conflict when the count an update returned breaks the bound.
    pub(crate) fn check(&self, open_chats: i64) -> Result<(), crate::store::StoreError> {
        match self.at_most {
            Some(bound) if open_chats > bound => Err(crate::store::StoreError::Conflict(format!(
                "agent {} would hold {open_chats} chats, more than {bound}",
                self.agent_id
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Mutation;

    fn adjust(agent: &str, delta: i64, at_most: Option<i64>) -> Mutation {
        Mutation::AdjustAgentLoad {
            agent_id: agent.to_owned(),
            delta,
            at_most,
            assigned_at: None,
        }
    }

    #[test]
    fn a_batch_moves_each_agent_once_in_id_order_with_the_tightest_bound() {
        let mutations = [
            adjust("b", 1, Some(3)),
            adjust("a", -1, None),
            adjust("b", 1, Some(2)),
        ];
        let changes = load_changes(&mutations);
        assert_eq!(
            changes,
            vec![
                LoadChange {
                    agent_id: "a",
                    delta: -1,
                    at_most: None,
                    assigned_at: None
                },
                LoadChange {
                    agent_id: "b",
                    delta: 2,
                    at_most: Some(2),
                    assigned_at: None
                },
            ]
        );
        assert!(changes[1].check(2).is_ok());
        assert!(matches!(
            changes[1].check(3),
            Err(crate::store::StoreError::Conflict(_))
        ));
    }
}
