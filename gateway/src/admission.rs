//! What a customer may open, checked before the command goes to a worker:
//! a session only in a pool someone serves (or the configured `POOLS`),
//! and no more open sessions at once than the cap. Made-up pools would
//! each add work to the stats loop and a `new-pending-session` to every
//! admin; unbounded sessions would let one visitor flood the queue.

use chat_shared::auth::Identity;
use chat_shared::protocol::{SessionStatus, DEFAULT_POOL};
use chat_shared::store::{SessionQuery, SessionScope};
use chat_shared::{ChatError, ErrorCode};

use crate::state::GatewayState;

pub async fn may_open_session(
    state: &GatewayState,
    customer: &Identity,
    pool: &str,
) -> Result<(), ChatError> {
    pool_is_served(state, pool).await?;
    let cap = state.config.max_open_sessions;
    let mut open = 0;
    for status in [SessionStatus::Pending, SessionStatus::Active] {
        let query = SessionQuery {
            scope: SessionScope::Customer(customer.user_id.clone()),
            status: Some(status),
            pool: None,
            limit: cap,
            after: None,
        };
        open += state
            .store
            .list_sessions(&query)
            .await
            .map_err(unavailable)?
            .len();
    }
    if open >= cap {
        return Err(ChatError::new(
            ErrorCode::RateLimited,
            format!("at most {cap} open chats at once; close one first"),
        ));
    }
    Ok(())
}

async fn pool_is_served(state: &GatewayState, pool: &str) -> Result<(), ChatError> {
    let served = match &state.config.pools {
        Some(allowed) => allowed.iter().any(|p| p == pool),
        None if pool == DEFAULT_POOL => true,
        None => !state
            .store
            .list_agents(Some(pool))
            .await
            .map_err(unavailable)?
            .is_empty(),
    };
    if served {
        Ok(())
    } else {
        Err(ChatError::invalid(format!(
            "no one serves the pool {pool:?}"
        )))
    }
}

fn unavailable(error: chat_shared::store::StoreError) -> ChatError {
    tracing::warn!(%error, "admission check: store read failed");
    ChatError::unavailable("the chat store is unavailable; try again")
}
