//! The gateway's part of routing: agents saying whether they take chats
//! (`set-status`), admins setting an agent's capacity (REST), and a
//! waiting customer's place in the queue when they join their session.
//! The store keeps status and capacity; the worker gives sessions out. A
//! change that may open room asks the workers to offer the agent's pools'
//! queues (`Dispatch`), and every change tells the agent's pools
//! (`agent-updated`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use chat_shared::auth::Identity;
use chat_shared::directory;
use chat_shared::envelope::Command;
use chat_shared::protocol::{
    AgentEntry, AgentStatus, CapacityBody, QueuePosition, Role, Session, SessionStatus,
};
use chat_shared::routing::{estimated_wait_seconds, ASSIGNMENT_RATE_WINDOW};
use chat_shared::store::RoutingChange;
use chat_shared::{ChatError, Timestamp};

use crate::http_caller::{json_body, Writer};
use crate::http_error::ApiResult;
use crate::state::GatewayState;

fn unavailable(error: impl std::fmt::Display) -> ChatError {
    tracing::warn!(%error, "routing: store or backplane failed");
    ChatError::unavailable("the agent directory is unavailable; try again")
}

/// Applies `change` to `agent_id`, tells their pools, and offers the
/// queues of their pools when the change may open room.
async fn change(
    state: &GatewayState,
    actor: &Identity,
    agent_id: &str,
    change: RoutingChange,
) -> Result<AgentEntry, ChatError> {
    let changed = state
        .store
        .change_routing(agent_id, change)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ChatError::not_found(format!("no agent {agent_id:?} is known")))?;
    let opens_room = match change {
        RoutingChange::Status(status) => status == AgentStatus::Online,
        RoutingChange::Capacity(_) => true,
    };
    if opens_room {
        let auto = changed
            .agent
            .pools
            .iter()
            .filter(|pool| state.config.routing.is_auto(pool));
        for pool in auto {
            state
                .presence
                .request(actor, Command::Dispatch { pool: pool.clone() })
                .await;
        }
    }
    let published = directory::publish_agent_updated(
        &*state.store,
        &*state.backplane,
        state.hub.names(),
        &state.config.routing,
        agent_id,
    )
    .await
    .map_err(unavailable)?;
    published.ok_or_else(|| ChatError::not_found(format!("no agent {agent_id:?} is known")))
}

/// `set-status`: the calling agent takes chats (`online`) or not (`away`).
pub async fn set_status(
    state: &GatewayState,
    caller: &Identity,
    status: AgentStatus,
) -> Result<AgentEntry, ChatError> {
    if caller.role != Role::Agent {
        return Err(ChatError::forbidden("only agents set a status"));
    }
    change(
        state,
        caller,
        &caller.user_id,
        RoutingChange::Status(status),
    )
    .await
}

/// `POST /agents/{id}/capacity`: an admin sets an agent's own capacity.
pub async fn set_capacity(
    State(state): State<Arc<GatewayState>>,
    Writer(caller): Writer,
    Path(agent_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<AgentEntry>> {
    let body = CapacityBody::parse(json_body(body)?)?;
    if !caller.is_admin() {
        return Err(ChatError::forbidden("only admins set an agent's capacity").into());
    }
    chat_shared::validate::user_id(&agent_id, "id")?;
    let entry = change(
        &state,
        &caller,
        &agent_id,
        RoutingChange::Capacity(body.capacity),
    )
    .await?;
    Ok(Json(entry))
}

/// Where `session` stands in its pool's queue, for its customer; `None`
/// when it does not wait.
pub async fn queue_position(
    state: &GatewayState,
    session: &Session,
) -> Result<Option<QueuePosition>, ChatError> {
    if session.status != SessionStatus::Pending {
        return Ok(None);
    }
    let store = &state.store;
    let ahead = store
        .waiting_ahead(&session.pool, &session.id)
        .await
        .map_err(unavailable)?;
    let window = i64::try_from(ASSIGNMENT_RATE_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = Timestamp(Timestamp::now().0 - window);
    let queue = store
        .queue(&session.pool, 0, since)
        .await
        .map_err(unavailable)?;
    let agents = directory::pool_agents(&**store, &*state.backplane, &session.pool)
        .await
        .map_err(unavailable)?;
    let anyone = agents.anyone_takes_chats(&state.config.routing, &session.pool);
    let position = ahead + 1;
    Ok(Some(QueuePosition {
        session_id: session.id.clone(),
        position,
        estimated_wait_seconds: estimated_wait_seconds(position, queue.assigned_since, anyone),
    }))
}
