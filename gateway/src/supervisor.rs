//! `GET /api/chat/supervisor?pool=`: the supervisor's live view, for
//! admins. The open chats (waiting and active, with when each entered the
//! queue and what its agent has not read) and every agent of the directory
//! with their status, load and first responses of the day, read in one go
//! from the store and the presence so that the dashboard can redraw both
//! tables from one answer every second or two, cluster-wide.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use chat_shared::ids::PoolName;
use chat_shared::protocol::{SupervisedAgent, SupervisedChatEntry, SupervisorView};
use chat_shared::store::OpenChats;
use chat_shared::{ChatError, Timestamp};

use crate::http_caller::Caller;
use crate::http_error::ApiResult;
use crate::state::GatewayState;

/// Most open chats one view lists, oldest first.
pub const MAX_OPEN_CHATS: usize = 500;

fn unavailable(error: impl std::fmt::Display) -> ChatError {
    tracing::warn!(%error, "supervisor view read failed");
    ChatError::unavailable("the supervisor view is unavailable; try again")
}

pub async fn view(
    State(state): State<Arc<GatewayState>>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<SupervisorView>> {
    if !caller.is_admin() {
        return Err(ChatError::forbidden("the supervisor view is for admins").into());
    }
    let pool = match query.get("pool").map(String::as_str) {
        None | Some("") => None,
        Some(pool) => Some(PoolName::parse(pool)?),
    };
    let pool = pool.as_deref();
    let now = Timestamp::now();
    let chats = state
        .store
        .open_chats(pool, OpenChats::All, MAX_OPEN_CHATS)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|chat| SupervisedChatEntry {
            session: chat.session,
            queued_at: chat.queued_at,
            unread_by_agent: chat.unread_by_agent,
        })
        .collect();
    let days: HashMap<String, (i64, Option<f64>)> = state
        .store
        .agent_days(now.start_of_utc_day())
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|day| (day.agent_id, (day.answered, day.avg_first_response_seconds)))
        .collect();
    let agents = crate::agents::entries(&state, pool, None)
        .await
        .map_err(ChatError::from)?
        .into_iter()
        .map(|agent| {
            let (answered_today, avg_first_response_seconds) =
                days.get(&agent.id).copied().unwrap_or((0, None));
            SupervisedAgent {
                agent,
                answered_today,
                avg_first_response_seconds,
            }
        })
        .collect();
    Ok(Json(SupervisorView {
        chats,
        agents,
        updated_at: now,
    }))
}
