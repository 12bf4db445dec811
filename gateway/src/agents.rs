//! The agent directory: `GET /api/chat/agents?pool=` lists the agents who
//! have connected (from the store, which gateways fill as agents connect
//! and disconnect), each marked online when the backplane's presence holds
//! them in one of their pools right now. Agents see only the pools they
//! serve; admins see every pool; customers see nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use chat_shared::auth::Identity;
use chat_shared::directory;
use chat_shared::ids::PoolName;
use chat_shared::protocol::{AgentEntry, AgentList, Role};
use chat_shared::store::RoutedAgent;
use chat_shared::ChatError;

use crate::http_caller::Caller;
use crate::http_error::ApiResult;
use crate::state::GatewayState;

/// Why a directory read failed, as the protocol code the caller gets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectoryError {
    #[error("store: {0}")]
    Store(#[from] chat_shared::store::StoreError),
    #[error("backplane: {0}")]
    Backplane(#[from] chat_shared::backplane::BackplaneError),
}

impl From<DirectoryError> for ChatError {
    fn from(error: DirectoryError) -> Self {
        // The details help an operator, not the client: they go to the log.
        tracing::warn!(%error, "agent directory read failed");
        ChatError::unavailable("the agent directory is unavailable; try again")
    }
}

pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<AgentList>> {
    let pool = match query.get("pool").map(String::as_str) {
        None | Some("") => None,
        Some(pool) => Some(PoolName::parse(pool)?),
    };
    let visible = visible_pools(
        &caller,
        pool.as_deref(),
        "the agent directory is for agents and admins",
    )?;
    let items = entries(&state, pool.as_deref(), visible.as_ref())
        .await
        .map_err(ChatError::from)?;
    Ok(Json(AgentList { items }))
}

/// The pools the caller may list: `None` for every pool (an admin asking
/// for all), else a set; asking for a pool one does not serve is refused,
/// and customers are refused with `refusal_to_customers`.
pub(crate) fn visible_pools(
    caller: &Identity,
    pool: Option<&str>,
    refusal_to_customers: &'static str,
) -> Result<Option<HashSet<String>>, ChatError> {
    match (caller.role, pool) {
        (Role::Customer, _) => Err(ChatError::forbidden(refusal_to_customers)),
        (Role::Admin, None) => Ok(None),
        (Role::Admin, Some(pool)) => Ok(Some(HashSet::from([pool.to_owned()]))),
        (Role::Agent, Some(pool)) if caller.pools.iter().any(|p| p == pool) => {
            Ok(Some(HashSet::from([pool.to_owned()])))
        }
        (Role::Agent, Some(_)) => Err(ChatError::forbidden(
            "agents may list only the pools they serve",
        )),
        (Role::Agent, None) => Ok(Some(caller.pools.iter().cloned().collect())),
    }
}

pub(crate) async fn entries(
    state: &GatewayState,
    pool: Option<&str>,
    visible: Option<&HashSet<String>>,
) -> Result<Vec<AgentEntry>, DirectoryError> {
    let agents: Vec<RoutedAgent> = state
        .store
        .routed_agents(pool)
        .await?
        .into_iter()
        .filter(|routed| {
            visible.is_none_or(|pools| routed.agent.pools.iter().any(|p| pools.contains(p)))
        })
        .collect();
    // Presence is kept per pool: one read per pool that matters, whatever
    // the number of agents. An agent counts as online through any pool.
    let pools: BTreeSet<&str> = match pool {
        Some(pool) => BTreeSet::from([pool]),
        None => agents
            .iter()
            .flat_map(|routed| routed.agent.pools.iter().map(String::as_str))
            .collect(),
    };
    let mut online = HashSet::new();
    for pool in pools {
        online.extend(state.backplane.presence_users(pool).await?);
    }
    Ok(agents
        .into_iter()
        .map(|routed| {
            let present = online.contains(&routed.agent.id);
            directory::entry(routed, present, &state.config.routing, pool)
        })
        .collect())
}
