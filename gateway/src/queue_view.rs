//! `GET /api/chat/queue?pool=`: the waiting chats of the pools a caller
//! serves, in queue order, each with when it entered the queue and its
//! place. The console draws its queue from this so that "waiting since"
//! counts from the latest entry into the queue, not from creation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use chat_shared::ids::PoolName;
use chat_shared::protocol::{QueueEntry, QueueList};
use chat_shared::store::OpenChats;
use chat_shared::ChatError;

use crate::agents::visible_pools;
use crate::http_caller::Caller;
use crate::http_error::ApiResult;
use crate::state::GatewayState;

/// Most waiting chats one answer lists per pool, oldest first.
pub const MAX_QUEUED: usize = 500;

pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<QueueList>> {
    let pool = match query.get("pool").map(String::as_str) {
        None | Some("") => None,
        Some(pool) => Some(PoolName::parse(pool)?),
    };
    let visible = visible_pools(
        &caller,
        pool.as_deref(),
        "the queue is for agents and admins",
    )?;
    let mut waiting = Vec::new();
    match visible {
        None => waiting.extend(read(&state, None).await?),
        // One read per pool, in name order so that the answer is stable.
        Some(pools) => {
            for pool in pools.into_iter().collect::<std::collections::BTreeSet<_>>() {
                waiting.extend(read(&state, Some(&pool)).await?);
            }
        }
    }
    let mut places: HashMap<String, i64> = HashMap::new();
    let items = waiting
        .into_iter()
        .map(|chat| {
            let place = places.entry(chat.session.pool.clone()).or_default();
            *place += 1;
            QueueEntry {
                position: *place,
                session: chat.session,
                queued_at: chat.queued_at,
            }
        })
        .collect();
    Ok(Json(QueueList { items }))
}

async fn read(
    state: &GatewayState,
    pool: Option<&str>,
) -> Result<Vec<chat_shared::store::SupervisedChat>, ChatError> {
    state
        .store
        .open_chats(pool, OpenChats::Waiting, MAX_QUEUED)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "queue read failed");
            ChatError::unavailable("the queue is unavailable; try again")
        })
}
