//! How sessions find agents: each pool's assignment mode and default
//! capacity (from the environment, shared by every process so that the
//! gateway's directory and the worker's decisions agree), the rule that
//! picks an agent for a waiting session, and the queue's wait estimate.
//! Everything here is pure; the worker feeds it what the store and the
//! presence hold.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::config::{ConfigError, Env};
use crate::protocol::AgentStatus;
use crate::store::RoutedAgent;
use crate::Timestamp;

/// Whether a pool's sessions wait for a click or are given out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentMode {
    Manual,
    Auto,
}

impl std::str::FromStr for AssignmentMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "manual" => Ok(AssignmentMode::Manual),
            "auto" => Ok(AssignmentMode::Auto),
            other => Err(format!("{other:?} is neither \"manual\" nor \"auto\"")),
        }
    }
}

/// A value per pool: `default,pool=value,…`, where the leading entry
/// without `=` is the value of every pool not named (the built-in default
/// when it is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerPool<T> {
    pub default: T,
    pub pools: BTreeMap<String, T>,
}

impl<T: Clone> PerPool<T> {
    pub fn uniform(default: T) -> Self {
        PerPool {
            default,
            pools: BTreeMap::new(),
        }
    }

    pub fn of(&self, pool: &str) -> T {
        self.pools
            .get(pool)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

impl<T: std::str::FromStr + Clone> PerPool<T>
where
    T::Err: std::fmt::Display,
{
    fn parse(name: &str, text: &str, default: T) -> Result<Self, ConfigError> {
        let mut parsed = PerPool::uniform(default);
        let bad = |why: String| ConfigError(format!("{name}: {why} in {text:?}"));
        for (index, entry) in text.split(',').map(str::trim).enumerate() {
            match entry.split_once('=') {
                None if index == 0 && !entry.is_empty() => {
                    parsed.default = entry.parse().map_err(|e: T::Err| bad(e.to_string()))?;
                }
                None => return Err(bad(format!("entry {entry:?} names no pool"))),
                Some((pool, value)) => {
                    let pool = pool.trim();
                    crate::ids::PoolName::parse(pool).map_err(|e| bad(e.message))?;
                    let value = value
                        .trim()
                        .parse()
                        .map_err(|e: T::Err| bad(e.to_string()))?;
                    if parsed.pools.insert(pool.to_owned(), value).is_some() {
                        return Err(bad(format!("pool {pool:?} is named twice")));
                    }
                }
            }
        }
        Ok(parsed)
    }
}

/// The routing settings of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// `ASSIGNMENT`: manual unless set.
    pub assignment: PerPool<AssignmentMode>,
    /// `POOL_CAPACITY`: open chats per agent when none is set for them.
    pub capacity: PerPool<u32>,
    /// `REASSIGN_AFTER_SECS`: how long an agent may have no socket before
    /// their chats go back to the queue; never when unset.
    pub reassign_after: Option<Duration>,
}

/// The default of `POOL_CAPACITY`.
pub const DEFAULT_POOL_CAPACITY: u32 = 5;

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            assignment: PerPool::uniform(AssignmentMode::Manual),
            capacity: PerPool::uniform(DEFAULT_POOL_CAPACITY),
            reassign_after: None,
        }
    }
}

impl RoutingConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = RoutingConfig::default();
        let assignment = match env.get("ASSIGNMENT") {
            None => defaults.assignment,
            Some(text) => PerPool::parse("ASSIGNMENT", text, AssignmentMode::Manual)?,
        };
        let capacity = match env.get("POOL_CAPACITY") {
            None => defaults.capacity,
            Some(text) => PerPool::parse("POOL_CAPACITY", text, DEFAULT_POOL_CAPACITY)?,
        };
        if let Some(too_many) = std::iter::once(capacity.default)
            .chain(capacity.pools.values().copied())
            .find(|c| i64::from(*c) > crate::protocol::MAX_AGENT_CAPACITY)
        {
            return Err(ConfigError(format!(
                "POOL_CAPACITY: {too_many} is more than {}",
                crate::protocol::MAX_AGENT_CAPACITY
            )));
        }
        let reassign_after = match env.optional::<u64>("REASSIGN_AFTER_SECS")? {
            None | Some(0) => None,
            Some(secs) if secs > 7 * 24 * 3600 => {
                return Err(ConfigError(format!(
                    "REASSIGN_AFTER_SECS: {secs} is more than a week"
                )))
            }
            Some(secs) => Some(Duration::from_secs(secs)),
        };
        Ok(RoutingConfig {
            assignment,
            capacity,
            reassign_after,
        })
    }

    pub fn is_auto(&self, pool: &str) -> bool {
        self.assignment.of(pool) == AssignmentMode::Auto
    }

    /// How many chats `agent` may hold when given sessions of `pool`.
    pub fn capacity_of(&self, agent: &RoutedAgent, pool: &str) -> i64 {
        agent
            .capacity
            .unwrap_or_else(|| i64::from(self.capacity.of(pool)))
    }

    /// The capacity the directory shows for `agent`: their own, else the
    /// default of `pool`, or of their first pool.
    pub fn shown_capacity(&self, agent: &RoutedAgent, pool: Option<&str>) -> i64 {
        let pool = pool
            .or_else(|| agent.agent.pools.first().map(String::as_str))
            .unwrap_or(crate::protocol::DEFAULT_POOL);
        self.capacity_of(agent, pool)
    }
}

/// The agents of one pool as an assignment sees them: who serves it, with
/// their load, and who of them is connected now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolAgents {
    pub agents: Vec<RoutedAgent>,
    pub present: HashSet<String>,
}

impl PoolAgents {
    fn takes_chats(&self, agent: &RoutedAgent) -> bool {
        agent.status == AgentStatus::Online && self.present.contains(&agent.agent.id)
    }

    /// Free places over the agents who take chats now.
    pub fn room(&self, config: &RoutingConfig, pool: &str) -> i64 {
        self.agents
            .iter()
            .filter(|agent| self.takes_chats(agent))
            .map(|agent| (config.capacity_of(agent, pool) - agent.open_chats).max(0))
            .sum()
    }

    /// Whether anyone of the pool takes chats now.
    pub fn anyone_takes_chats(&self, config: &RoutingConfig, pool: &str) -> bool {
        self.agents
            .iter()
            .any(|agent| self.takes_chats(agent) && config.capacity_of(agent, pool) > 0)
    }

    /// The agent the next session of `pool` goes to: connected, `online`,
    /// below capacity, fewest open chats; ties to the one whose last
    /// assignment is oldest (never assigned first), then by id so that
    /// every worker picks alike.
    pub fn choose(&self, config: &RoutingConfig, pool: &str) -> Option<(&RoutedAgent, i64)> {
        self.agents
            .iter()
            .filter(|agent| self.takes_chats(agent))
            .map(|agent| (agent, config.capacity_of(agent, pool)))
            .filter(|(agent, capacity)| agent.open_chats < *capacity)
            .min_by(|(a, _), (b, _)| {
                a.open_chats
                    .cmp(&b.open_chats)
                    .then(a.last_assigned_at.cmp(&b.last_assigned_at))
                    .then(a.agent.id.cmp(&b.agent.id))
            })
    }

    /// Records that `agent_id` was given one more chat at `now`.
    pub fn took_one(&mut self, agent_id: &str, now: Timestamp) {
        if let Some(agent) = self.agents.iter_mut().find(|a| a.agent.id == agent_id) {
            agent.open_chats += 1;
            agent.last_assigned_at = Some(now);
        }
    }

    /// Records that `agent_id` has one chat fewer.
    pub fn freed_one(&mut self, agent_id: &str) {
        if let Some(agent) = self.agents.iter_mut().find(|a| a.agent.id == agent_id) {
            agent.open_chats = (agent.open_chats - 1).max(0);
        }
    }
}

/// The window over which a pool's assignment rate is measured.
pub const ASSIGNMENT_RATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The estimated wait of the session at `position`: the position over the
/// pool's assignment rate in the window, rounded up; `None` without a
/// basis (nothing assigned in the window, nobody taking chats).
pub fn estimated_wait_seconds(
    position: i64,
    assigned_in_window: i64,
    anyone_takes_chats: bool,
) -> Option<i64> {
    if assigned_in_window <= 0 || !anyone_takes_chats || position <= 0 {
        return None;
    }
    let window = i64::try_from(ASSIGNMENT_RATE_WINDOW.as_secs()).unwrap_or(i64::MAX);
    let scaled = position.saturating_mul(window);
    Some((scaled + assigned_in_window - 1) / assigned_in_window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AgentRecord;

    fn agent(id: &str, status: AgentStatus, open: i64, last: Option<i64>) -> RoutedAgent {
        RoutedAgent {
            agent: AgentRecord {
                id: id.to_owned(),
                name: id.to_owned(),
                pools: vec!["default".to_owned()],
                last_seen_at: Timestamp(0),
            },
            status,
            capacity: None,
            open_chats: open,
            last_assigned_at: last.map(Timestamp),
        }
    }

    fn pool(agents: Vec<RoutedAgent>, present: &[&str]) -> PoolAgents {
        PoolAgents {
            agents,
            present: present.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn settings_read_a_default_and_per_pool_values() {
        let env = Env::from_pairs([
            ("ASSIGNMENT", "auto, vip=manual"),
            ("POOL_CAPACITY", "sales=2"),
            ("REASSIGN_AFTER_SECS", "90"),
        ]);
        let config = RoutingConfig::from_env(&env).unwrap();
        assert!(config.is_auto("default"));
        assert!(!config.is_auto("vip"));
        assert_eq!(config.capacity.of("sales"), 2);
        assert_eq!(config.capacity.of("default"), DEFAULT_POOL_CAPACITY);
        assert_eq!(config.reassign_after, Some(Duration::from_secs(90)));
        assert_eq!(
            RoutingConfig::from_env(&Env::default()).unwrap(),
            RoutingConfig::default()
        );
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        for (name, value) in [
            ("ASSIGNMENT", "automatic"),
            ("ASSIGNMENT", "auto,manual"),
            ("ASSIGNMENT", "a=auto,a=manual"),
            ("ASSIGNMENT", "bad pool=auto"),
            ("POOL_CAPACITY", "-1"),
            ("POOL_CAPACITY", "5000"),
            ("REASSIGN_AFTER_SECS", "soon"),
        ] {
            let err = RoutingConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.0.contains(name), "{name}={value}: {}", err.0);
        }
    }

    #[test]
    fn the_least_loaded_connected_online_agent_below_capacity_is_chosen() {
        let config = RoutingConfig::default();
        let agents = pool(
            vec![
                agent("away", AgentStatus::Away, 0, None),
                agent("gone", AgentStatus::Online, 0, None),
                agent("busy", AgentStatus::Online, 2, None),
                agent("light", AgentStatus::Online, 1, Some(5)),
                agent("idle", AgentStatus::Online, 1, Some(3)),
            ],
            &["away", "busy", "light", "idle"],
        );
        let (chosen, capacity) = agents.choose(&config, "default").unwrap();
        assert_eq!(chosen.agent.id, "idle", "fewest chats, then longest idle");
        assert_eq!(capacity, 5);
        assert_eq!(agents.room(&config, "default"), 3 + 4 + 4);
    }

    #[test]
    fn nobody_is_chosen_when_everyone_is_full() {
        let config = RoutingConfig {
            capacity: PerPool::uniform(1),
            ..RoutingConfig::default()
        };
        let mut agents = pool(vec![agent("a", AgentStatus::Online, 0, None)], &["a"]);
        assert!(agents.choose(&config, "default").is_some());
        agents.took_one("a", Timestamp(1));
        assert!(agents.choose(&config, "default").is_none());
        assert_eq!(agents.room(&config, "default"), 0);
        agents.freed_one("a");
        assert_eq!(agents.room(&config, "default"), 1);
    }

    #[test]
    fn an_agents_own_capacity_wins_over_the_pool_default() {
        let config = RoutingConfig::default();
        let mut own = agent("a", AgentStatus::Online, 2, None);
        own.capacity = Some(2);
        let agents = pool(vec![own], &["a"]);
        assert!(agents.choose(&config, "default").is_none());
    }

    #[test]
    fn the_estimate_needs_a_rate_and_someone_to_take_chats() {
        assert_eq!(estimated_wait_seconds(3, 0, true), None);
        assert_eq!(estimated_wait_seconds(3, 10, false), None);
        // 10 in 900 s: one every 90 s.
        assert_eq!(estimated_wait_seconds(3, 10, true), Some(270));
        assert_eq!(estimated_wait_seconds(1, 7, true), Some(129));
    }
}
