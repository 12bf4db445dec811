//! The agent directory as clients see it: an `Agent` entry made from the
//! store's routed agent and the backplane's presence, and `agent-updated`,
//! published by whichever process changed an agent (a gateway when they
//! connect, leave or set their status, a worker when their open chats
//! move). One builder, so that the REST list and the live event agree.

use std::collections::HashSet;

use crate::backplane::{Backplane, BackplaneError};
use crate::envelope::{self, Delivery};
use crate::names::Names;
use crate::protocol::{frames, server_events, AgentEntry, AgentEnvelope, AgentStatus};
use crate::routing::{PoolAgents, RoutingConfig};
use crate::store::{RoutedAgent, Store, StoreError};

/// Why an agent's entry could not be read or published.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("backplane: {0}")]
    Backplane(#[from] BackplaneError),
    #[error("envelope: {0}")]
    Envelope(#[from] envelope::EnvelopeError),
}

/// The entry of `agent`, `present` when a socket of theirs is connected,
/// with the capacity of `pool` (or of their first pool).
pub fn entry(
    agent: RoutedAgent,
    present: bool,
    config: &RoutingConfig,
    pool: Option<&str>,
) -> AgentEntry {
    let capacity = config.shown_capacity(&agent, pool);
    AgentEntry {
        online: present,
        status: if present {
            agent.status
        } else {
            AgentStatus::Offline
        },
        open_chats: agent.open_chats,
        capacity,
        id: agent.agent.id,
        name: agent.agent.name,
        pools: agent.agent.pools,
        last_seen_at: agent.agent.last_seen_at,
    }
}

/// The agents of `pool` with their loads, and who of them is connected.
pub async fn pool_agents(
    store: &dyn Store,
    backplane: &dyn Backplane,
    pool: &str,
) -> Result<PoolAgents, DirectoryError> {
    let agents = store.routed_agents(Some(pool)).await?;
    let present = backplane.presence_users(pool).await?.into_iter().collect();
    Ok(PoolAgents { agents, present })
}

/// Whether `agent_id` is present through any of `pools`.
pub async fn is_present(
    backplane: &dyn Backplane,
    pools: &[String],
    agent_id: &str,
) -> Result<bool, BackplaneError> {
    for pool in pools {
        let present: HashSet<String> = backplane.presence_users(pool).await?.into_iter().collect();
        if present.contains(agent_id) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Publishes `agent-updated` for `agent_id` to the agents of each of their
/// pools and to admins (with the capacity of their first pool); returns their entry,
/// `None` when they are not in the directory.
pub async fn publish_agent_updated(
    store: &dyn Store,
    backplane: &dyn Backplane,
    names: &Names,
    config: &RoutingConfig,
    agent_id: &str,
) -> Result<Option<AgentEntry>, DirectoryError> {
    let Some(agent) = store.routed_agent(agent_id).await? else {
        return Ok(None);
    };
    let present = is_present(backplane, &agent.agent.pools, agent_id).await?;
    // One delivery for every channel, so that a socket on several of them
    // (an agent of two pools) gets it once.
    let mut audience: Vec<String> = agent
        .agent
        .pools
        .iter()
        .map(|pool| names.pool_channel(pool))
        .collect();
    audience.push(names.admin_channel());
    let shown = entry(agent, present, config, None);
    let payload = AgentEnvelope {
        agent: shown.clone(),
    };
    let delivery = Delivery {
        event: server_events::AGENT_UPDATED.to_owned(),
        audience: audience.clone(),
        session_id: None,
        seq: None,
        except_socket: None,
        frame: frames::event(server_events::AGENT_UPDATED, &payload),
        committed_at_ms: None,
        reply: None,
    };
    let encoded = envelope::encode(&delivery)?;
    let publications: Vec<(String, bytes::Bytes)> = audience
        .into_iter()
        .map(|channel| (channel, encoded.clone()))
        .collect();
    backplane.publish_batch(&publications).await?;
    Ok(Some(shown))
}
