//! Routing's I/O around the pure rules of `decide::routing`: it reads the
//! view a batch decides on (agents' loads from the store, presence from the
//! backplane), offers a pool's queue when room opens (one `AutoAssign` per
//! session to the session's own partition, so the owner of each session
//! decides it), tells agents' pools of changed loads (`agent-updated`),
//! tells waiting customers where they stand (`queue-position`), and
//! sweeps every few seconds for what no event announced: queues that could
//! move, chats of agents gone longer than `REASSIGN_AFTER_SECS`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chat_shared::auth::Identity;
use chat_shared::backplane::{Backplane, BackplaneError};
use chat_shared::directory;
use chat_shared::envelope::{self, Command, CommandEnvelope, Delivery};
use chat_shared::names::{partition_of, Names};
use chat_shared::protocol::{frames, server_events, QueuePosition};
use chat_shared::routing::{
    estimated_wait_seconds, PoolAgents, RoutingConfig, ASSIGNMENT_RATE_WINDOW,
};
use chat_shared::store::{Store, StoreError};
use chat_shared::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::decide::{RoutingKeys, RoutingView};

/// Most sessions offered from one queue at once.
const MAX_OFFER: usize = 100;
/// Most waiting customers told their place per pool and push; those
/// further back hear once they move up into it.
pub const MAX_ANNOUNCED: usize = 1000;
/// How often the cluster sweeps (once, whichever worker comes first).
pub const SWEEP_PERIOD: Duration = Duration::from_secs(5);
/// Most chats returned to the queue per sweep.
const MAX_RETURNED: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
}

pub struct Router {
    store: Arc<dyn Store>,
    backplane: Arc<dyn Backplane>,
    names: Names,
    config: RoutingConfig,
    partitions: u32,
}

impl Router {
    pub fn new(
        store: Arc<dyn Store>,
        backplane: Arc<dyn Backplane>,
        names: Names,
        config: RoutingConfig,
        partitions: u32,
    ) -> Self {
        Router {
            store,
            backplane,
            names,
            config,
            partitions,
        }
    }

    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    async fn pool_agents(&self, pool: &str) -> Result<PoolAgents, RouterError> {
        Ok(directory::pool_agents(&*self.store, &*self.backplane, pool).await?)
    }

    /// What a batch with `keys` decides on, read now.
    pub async fn view(&self, keys: &RoutingKeys) -> Result<RoutingView, RouterError> {
        let mut view = RoutingView::default();
        for pool in &keys.pools {
            view.pools
                .insert(pool.clone(), self.pool_agents(pool).await?);
        }
        for (pool, session_id) in &keys.places {
            let ahead = self.store.waiting_ahead(pool, session_id).await?;
            view.waiting_ahead.insert(session_id.clone(), ahead);
        }
        Ok(view)
    }

    /// Offers the head of `pool`'s queue, as many sessions as it has room
    /// for, each to its own partition.
    pub async fn offer(&self, pool: &str) -> Result<(), RouterError> {
        if !self.config.is_auto(pool) {
            return Ok(());
        }
        let agents = self.pool_agents(pool).await?;
        let room = usize::try_from(agents.room(&self.config, pool)).unwrap_or(0);
        if room == 0 {
            return Ok(());
        }
        let queue = self
            .store
            .queue(pool, room.min(MAX_OFFER), Timestamp::now())
            .await?;
        for waiting in queue.waiting {
            self.issue(Command::AutoAssign {
                session_id: waiting.session_id,
                pool: pool.to_owned(),
            })
            .await?;
        }
        Ok(())
    }

    async fn issue(&self, command: Command) -> Result<(), RouterError> {
        let partition = partition_of(command.partition_key(), self.partitions);
        let envelope = CommandEnvelope {
            reply_to: None,
            actor: Identity::system(),
            issued_at: Timestamp::now(),
            command,
        };
        self.backplane
            .append_command(partition, envelope::encode(&envelope)?)
            .await?;
        Ok(())
    }

    /// After a commit: offers the queues that may move and tells the pools
    /// of agents whose load changed. Failures are logged; the sweep makes
    /// up for a lost offer, the next change for a lost update.
    pub async fn after_commit(&self, dispatch_pools: &[String], agents_changed: &[String]) {
        for pool in dispatch_pools {
            if let Err(error) = self.offer(pool).await {
                tracing::warn!(%error, %pool, "queue not offered");
            }
        }
        for agent_id in agents_changed {
            let published = directory::publish_agent_updated(
                &*self.store,
                &*self.backplane,
                &self.names,
                &self.config,
                agent_id,
            )
            .await;
            if let Err(error) = published {
                tracing::warn!(%error, %agent_id, "agent update not published");
            }
        }
    }

    /// Tells `pool`'s waiting customers their place and wait. Called when
    /// the queue changed (a session joined or left it), at most once a
    /// second per pool with the stats: every waiting customer hears, since
    /// the worker that told them last may not be this one.
    pub async fn announce_queue(&self, pool: &str) -> Result<(), RouterError> {
        let now = Timestamp::now();
        let since = Timestamp(
            now.0 - i64::try_from(ASSIGNMENT_RATE_WINDOW.as_millis()).unwrap_or(i64::MAX),
        );
        let queue = self.store.queue(pool, MAX_ANNOUNCED, since).await?;
        let anyone = self
            .pool_agents(pool)
            .await?
            .anyone_takes_chats(&self.config, pool);
        let mut publications = Vec::with_capacity(queue.waiting.len());
        for (index, waiting) in queue.waiting.iter().enumerate() {
            let position = i64::try_from(index).unwrap_or(i64::MAX) + 1;
            let place = QueuePosition {
                session_id: waiting.session_id.clone(),
                position,
                estimated_wait_seconds: estimated_wait_seconds(
                    position,
                    queue.assigned_since,
                    anyone,
                ),
            };
            let channel = self.names.user_channel(&waiting.customer_id);
            let delivery = queue_delivery(&channel, &place);
            publications.push((channel, envelope::encode(&delivery)?));
        }
        if !publications.is_empty() {
            self.backplane.publish_batch(&publications).await?;
        }
        Ok(())
    }

    /// One sweep: offers every automatic pool with a queue, and returns to
    /// their queue the chats of agents gone longer than allowed.
    pub async fn sweep(&self) -> Result<(), RouterError> {
        for pool in self.store.waiting_pools().await? {
            if self.config.is_auto(&pool) {
                self.offer(&pool).await?;
            }
        }
        let Some(after) = self.config.reassign_after else {
            return Ok(());
        };
        let cutoff =
            Timestamp(Timestamp::now().0 - i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        let held = self
            .store
            .chats_of_agents_seen_before(cutoff, MAX_RETURNED)
            .await?;
        let mut present_by_pool: HashMap<String, HashSet<String>> = HashMap::new();
        for chat in held {
            if !present_by_pool.contains_key(&chat.pool) {
                let present = self.backplane.presence_users(&chat.pool).await?;
                present_by_pool.insert(chat.pool.clone(), present.into_iter().collect());
            }
            let still_here = present_by_pool
                .get(&chat.pool)
                .is_some_and(|present| present.contains(&chat.agent_id));
            if !still_here {
                self.issue(Command::ReturnToQueue {
                    session_id: chat.session_id,
                    agent_id: chat.agent_id,
                })
                .await?;
            }
        }
        Ok(())
    }
}

fn queue_delivery(channel: &str, place: &QueuePosition) -> Delivery {
    Delivery {
        event: server_events::QUEUE_POSITION.to_owned(),
        audience: vec![channel.to_owned()],
        session_id: Some(place.session_id.clone()),
        seq: None,
        except_socket: None,
        frame: frames::event(server_events::QUEUE_POSITION, place),
        committed_at_ms: None,
        reply: None,
    }
}

/// Sweeps every `SWEEP_PERIOD`, once across the cluster (a backplane
/// throttle picks the worker), until `shutdown`.
pub async fn run_sweeps(
    router: Arc<Router>,
    backplane: Arc<dyn Backplane>,
    names: Names,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SWEEP_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match backplane
            .throttle(&names.routing_sweep_throttle(), SWEEP_PERIOD)
            .await
        {
            Ok(true) => {
                if let Err(error) = router.sweep().await {
                    tracing::warn!(%error, "routing sweep failed; the next one retries");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "routing sweep not started"),
        }
    }
}
