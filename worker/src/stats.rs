//! Pool statistics: pools are marked dirty as commands change them, and a
//! loop pushes a fresh `stats-update` for each dirty pool at most once a
//! second cluster-wide (a backplane throttle), so a burst of messages costs
//! one computation per pool per second, and every change is visible within
//! about a second and a quarter.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_shared::backplane::Backplane;
use chat_shared::envelope::{self, Delivery};
use chat_shared::names::Names;
use chat_shared::protocol::frames;
use chat_shared::protocol::server_events;
use chat_shared::stats::compute;
use chat_shared::store::Store;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::router::Router;

/// Minimum time between two pushes of one pool's stats, cluster-wide.
pub const STATS_PERIOD: Duration = Duration::from_secs(1);
/// How often a pool still waiting for its turn is looked at again.
const RETRY_TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct StatsTracker {
    dirty: Mutex<BTreeSet<String>>,
    /// Pools whose queue changed: their waiting customers hear their place
    /// with the pool's next stats push.
    queue_dirty: Mutex<BTreeSet<String>>,
    changed: Notify,
}

impl StatsTracker {
    pub fn mark_dirty(&self, pool: String) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pool);
        self.changed.notify_one();
    }

    /// The queue of `pool` changed (and so did its stats).
    pub fn mark_queue_dirty(&self, pool: String) {
        self.queue_dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pool.clone());
        self.mark_dirty(pool);
    }

    fn take_queue_dirty(&self, pool: &str) -> bool {
        self.queue_dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pool)
    }

    fn take_dirty(&self) -> Vec<String> {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *dirty).into_iter().collect()
    }
}

/// Pushes stats of dirty pools until `shutdown`.
pub async fn run_stats_loop(
    tracker: Arc<StatsTracker>,
    store: Arc<dyn Store>,
    backplane: Arc<dyn Backplane>,
    names: Names,
    router: Arc<Router>,
    shutdown: CancellationToken,
) {
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    // When each pool may be tried again: a message marks its pool dirty,
    // and asking the backplane's throttle after every one would cost a
    // round trip per message for nothing.
    let mut not_before: HashMap<String, Instant> = HashMap::new();
    loop {
        let next_due = waiting
            .iter()
            .map(|pool| not_before.get(pool).copied().unwrap_or_else(Instant::now))
            .min();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tracker.changed.notified() => {}
            _ = sleep_until_due(next_due) => {}
        }
        waiting.extend(tracker.take_dirty());
        let now = Instant::now();
        not_before.retain(|_, at| *at > now);
        let due: Vec<String> = waiting
            .iter()
            .filter(|pool| !not_before.contains_key(*pool))
            .cloned()
            .collect();
        for pool in due {
            match push_if_due(&*store, &*backplane, &names, &pool).await {
                Ok(true) => {
                    if tracker.take_queue_dirty(&pool) {
                        if let Err(error) = router.announce_queue(&pool).await {
                            tracing::warn!(%error, %pool, "queue places not announced");
                        }
                    }
                    waiting.remove(&pool);
                    not_before.insert(pool, now + STATS_PERIOD);
                }
                Ok(false) => {
                    not_before.insert(pool, now + RETRY_TICK);
                }
                Err(error) => {
                    tracing::warn!(%error, %pool, "stats not pushed; will retry");
                    not_before.insert(pool, now + RETRY_TICK);
                }
            }
        }
    }
}

/// Sleeps until `due`, or forever when nothing waits.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

async fn push_if_due(
    store: &dyn Store,
    backplane: &dyn Backplane,
    names: &Names,
    pool: &str,
) -> Result<bool, chat_shared::ChatError> {
    let due = backplane
        .throttle(&names.stats_throttle(pool), STATS_PERIOD)
        .await
        .map_err(|e| chat_shared::ChatError::unavailable(e.to_string()))?;
    if !due {
        return Ok(false);
    }
    let stats = compute(store, backplane, pool).await?;
    let delivery = Delivery {
        event: server_events::STATS_UPDATE.to_owned(),
        audience: vec![names.pool_channel(pool), names.admin_channel()],
        session_id: None,
        seq: None,
        except_socket: None,
        frame: frames::event(server_events::STATS_UPDATE, &stats),
        committed_at_ms: None,
        reply: None,
    };
    let bytes = envelope::encode(&delivery)
        .map_err(|e| chat_shared::ChatError::unavailable(e.to_string()))?;
    for channel in &delivery.audience {
        backplane
            .publish(channel, bytes.clone())
            .await
            .map_err(|e| chat_shared::ChatError::unavailable(e.to_string()))?;
    }
    Ok(true)
}
