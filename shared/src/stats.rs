//! Computing a pool's Stats (docs/protocol.md) from the store's figures and
//! the backplane's presence; used by the worker's pushes and by `GET /stats`.

use crate::backplane::Backplane;
use crate::protocol::Stats;
use crate::store::Store;
use crate::{ChatError, Timestamp};

pub async fn compute(
    store: &dyn Store,
    backplane: &dyn Backplane,
    pool: &str,
) -> Result<Stats, ChatError> {
    let now = Timestamp::now();
    let figures = store
        .pool_figures(pool, now.start_of_utc_day())
        .await
        .map_err(|error| {
            tracing::warn!(%error, "stats: store read failed");
            ChatError::unavailable("the chat store is unavailable; try again")
        })?;
    let online = backplane.presence_count(pool).await.map_err(|error| {
        tracing::warn!(%error, "stats: presence read failed");
        ChatError::unavailable("the chat backplane is unavailable; try again")
    })?;
    Ok(Stats {
        pool: pool.to_owned(),
        pending_sessions: figures.pending_sessions,
        active_sessions: figures.active_sessions,
        closed_today: figures.closed_today,
        online_agents: i64::try_from(online).unwrap_or(i64::MAX),
        avg_wait_seconds: figures.avg_wait_seconds,
        longest_wait_seconds: figures
            .oldest_pending_created_at
            .map_or(0.0, |created| now.seconds_since(created).max(0.0)),
        avg_first_response_seconds: figures.avg_first_response_seconds,
        messages_today: figures.messages_today,
        updated_at: now,
    })
}
