//! Routing inside a batch: agents' loads follow every session write, and
//! a waiting session of an automatic pool is given to the pool's best
//! agent when the pool has room for it and for every session ahead of it.
//!
//! Why this cannot over-assign when two partitions assign at once: each
//! batch decides on the agents' loads read from the store for it (never
//! remembered), and its commit moves each agent's count in the same
//! transaction as the sessions, with the bound it decided on. The count's
//! row is locked by the first writer until its commit, so the second sees
//! the first's count; if the bound no longer holds its batch fails as a
//! conflict and is decided again on the new counts (`Processor`). A
//! session itself cannot be given twice: its own version is checked.

use std::collections::{BTreeSet, HashMap};

use chat_shared::envelope::{Command, CommandEnvelope};
use chat_shared::protocol::SessionStatus;
use chat_shared::routing::{PoolAgents, RoutingConfig};
use chat_shared::store::{Mutation, SessionRecord};
use chat_shared::Timestamp;

use super::{BatchState, Decision};

/// What a batch of an automatic pool needs besides the store's snapshot,
/// read fresh for every attempt: the pool's agents with their loads and
/// presence, and how many sessions wait ahead of each session to place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingView {
    pub pools: HashMap<String, PoolAgents>,
    /// Per session id: the sessions of its pool waiting ahead of it.
    pub waiting_ahead: HashMap<String, i64>,
}

/// The reads a batch's routing needs: pools whose agents to load, and
/// (pool, session) pairs whose place in the queue to count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingKeys {
    pub pools: BTreeSet<String>,
    pub places: Vec<(String, String)>,
}

impl RoutingKeys {
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.places.is_empty()
    }
}

/// What `commands` need read for routing under `config`.
pub fn routing_keys_for(commands: &[&CommandEnvelope], config: &RoutingConfig) -> RoutingKeys {
    let mut keys = RoutingKeys::default();
    for envelope in commands {
        let (session_id, pool) = match &envelope.command {
            Command::CreateSession {
                session_id, pool, ..
            }
            | Command::AutoAssign { session_id, pool } => (session_id, pool),
            _ => continue,
        };
        if config.is_auto(pool) {
            keys.pools.insert(pool.clone());
            keys.places.push((pool.clone(), session_id.clone()));
        }
    }
    keys
}

/// Who holds a session: its agent while it is active.
fn holder(record: &SessionRecord) -> Option<&str> {
    match record.session.status {
        SessionStatus::Active => record.session.agent_id.as_deref(),
        _ => None,
    }
}

impl BatchState {
    /// Moves agents' loads from what `before` was to what `after` is.
    pub(super) fn track_load(&mut self, before: Option<&SessionRecord>, after: &SessionRecord) {
        let old = before.and_then(holder).map(str::to_owned);
        let new = holder(after).map(str::to_owned);
        if old == new {
            return;
        }
        if let Some(agent) = old {
            self.load_changes.push(Mutation::AdjustAgentLoad {
                agent_id: agent.clone(),
                delta: -1,
                at_most: None,
                assigned_at: None,
            });
            for pool in self.routing_view.pools.values_mut() {
                pool.freed_one(&agent);
            }
            if let Some(before) = before {
                // Room opened: the queue of the session's pool may move.
                let pool = before.session.pool.clone();
                self.dispatch_if_auto(pool);
            }
            self.agents_changed.push(agent);
        }
        if let Some(agent) = new {
            let at = after.session.assigned_at;
            self.load_changes.push(Mutation::AdjustAgentLoad {
                agent_id: agent.clone(),
                delta: 1,
                at_most: None,
                assigned_at: at,
            });
            for pool in self.routing_view.pools.values_mut() {
                pool.took_one(&agent, at.unwrap_or(Timestamp(0)));
            }
            self.agents_changed.push(agent);
        }
    }

    /// Notes the pools whose queue gains or loses the session.
    pub(super) fn track_queue(&mut self, before: Option<&SessionRecord>, after: &SessionRecord) {
        let waiting_in = |record: &SessionRecord| {
            (record.session.status == SessionStatus::Pending).then(|| record.session.pool.clone())
        };
        let (old, new) = (before.and_then(waiting_in), waiting_in(after));
        if old == new {
            return;
        }
        // The places counted before the batch are corrected by what the
        // batch itself moves: a session given out no longer waits ahead,
        // one created or sent back waits ahead of every later one.
        if let (Some(pool), Some(before)) = (&old, before) {
            self.queue_moves
                .entry(pool.clone())
                .or_default()
                .push((queue_key(before), -1));
        }
        if let Some(pool) = &new {
            self.queue_moves
                .entry(pool.clone())
                .or_default()
                .push((queue_key(after), 1));
        }
        for pool in old.into_iter().chain(new) {
            if !self.queue_pools.contains(&pool) {
                self.queue_pools.push(pool);
            }
        }
    }

    /// Asks for the queue of `pool` to be offered, when it gives sessions
    /// out automatically.
    pub(super) fn dispatch_if_auto(&mut self, pool: String) {
        if self.routing.is_auto(&pool) && !self.dispatch_pools.contains(&pool) {
            self.dispatch_pools.push(pool);
        }
    }

    /// Gives the waiting session `record` to the best agent of its pool if
    /// the pool gives sessions out automatically and has room for it and
    /// for every session waiting ahead of it; the decision is then the
    /// assignment's. `None` leaves it waiting.
    pub(super) fn try_auto_assign(
        &mut self,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Option<Decision> {
        let pool = record.session.pool.clone();
        if record.session.status != SessionStatus::Pending || !self.routing.is_auto(&pool) {
            return None;
        }
        let agents = self.routing_view.pools.get(&pool)?;
        let ahead = self
            .routing_view
            .waiting_ahead
            .get(&record.session.id)
            .copied()
            .unwrap_or(0)
            + self.moved_ahead_of(record);
        if agents.room(&self.routing, &pool) <= ahead {
            return None;
        }
        let (chosen, capacity) = agents.choose(&self.routing, &pool)?;
        let agent_id = chosen.agent.id.clone();
        let mut updated = record.clone();
        updated.session.agent_name = Some(self.display_name(&agent_id));
        updated.session.agent_id = Some(agent_id.clone());
        updated.session.status = SessionStatus::Active;
        updated.session.assigned_at = Some(now);
        updated.first_assigned_at.get_or_insert(now);
        let decision = self.finish_reassignment(updated, None, &pool, None);
        // The bound this assignment was decided on, checked on commit.
        self.load_changes.push(Mutation::AdjustAgentLoad {
            agent_id,
            delta: 0,
            at_most: Some(capacity),
            assigned_at: None,
        });
        Some(decision)
    }

    /// How many more (or fewer) sessions wait ahead of `record` than were
    /// counted before the batch, by what the batch has moved so far.
    fn moved_ahead_of(&self, record: &SessionRecord) -> i64 {
        let key = queue_key(record);
        self.queue_moves
            .get(&record.session.pool)
            .map(|moves| {
                moves
                    .iter()
                    .filter(|(other, _)| *other < key)
                    .map(|(_, delta)| delta)
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// A change the batch made to a pool's queue: the session's place and
/// whether it joined (+1) or left (-1) the queue.
pub(super) type QueueMove = ((Timestamp, String), i64);

/// A session's place in its pool's queue: creation, then id, as the store
/// orders it (a session sent back keeps its place).
fn queue_key(record: &SessionRecord) -> (Timestamp, String) {
    (record.session.created_at, record.session.id.clone())
}
