//! The worker's main loop: keep a fair share of the partition leases, read
//! new commands from the owned partitions and hand them to the partitions'
//! lanes (`lanes`: partitions in parallel, each in order), retry what was
//! left pending, and on shutdown finish what was read and hand the leases
//! back at once.
//!
//! Shutdown is only looked at between steps, never inside one: every entry
//! that was read is applied, answered and acknowledged before the leases
//! are released. Workers tell each other on the workers channel when one
//! stops (after releasing its leases) or starts, so that the others take
//! over or give up partitions at once instead of at their next lease check,
//! which would leave partitions without an owner for up to a third of the
//! lease time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_shared::backplane::{Backplane, BackplaneError, Lease, SubscriptionEvent};
use chat_shared::names::Names;
use chat_shared::store::Store;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::StateCache;
use crate::config::WorkerConfig;
use crate::lanes::Lanes;
use crate::metrics::WorkerMetrics;
use crate::processor::Processor;
use crate::router::{run_sweeps, Router};
use crate::stats::{run_stats_loop, StatsTracker};

/// Presence "pool" under which live workers announce themselves; `~` cannot
/// appear in a real pool name.
const WORKER_REGISTRY: &str = "~workers";
/// How often owned streams drop their processed entries and their backlog
/// is measured for the metrics.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// What a worker publishes on the workers channel; the content does not
/// matter, only that the set of workers changed.
const REBALANCE_NOTICE: &[u8] = b"rebalance";
/// Pause after a backplane failure before trying again.
const FAILURE_BACKOFF: Duration = Duration::from_millis(500);

pub struct Worker {
    id: String,
    config: WorkerConfig,
    store: Arc<dyn Store>,
    backplane: Arc<dyn Backplane>,
    names: Names,
    lanes: Lanes,
    /// The processor's memory of sessions, valid only for partitions held
    /// without a break: cleared whenever a partition is taken (entries of
    /// partitions given up are merely unused, and bounded).
    cache: Arc<StateCache>,
    stats: Arc<StatsTracker>,
    router: Arc<Router>,
    leases: BTreeMap<u32, Lease>,
    /// The partitions in `leases`, published for `owned_partitions`.
    owned: watch::Sender<Vec<u32>>,
    metrics: Arc<WorkerMetrics>,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        store: Arc<dyn Store>,
        backplane: Arc<dyn Backplane>,
        names: Names,
    ) -> Self {
        let stats = Arc::new(StatsTracker::default());
        let metrics = Arc::new(WorkerMetrics::new(config.partitions));
        let router = Arc::new(Router::new(
            store.clone(),
            backplane.clone(),
            names.clone(),
            config.routing.clone(),
            config.partitions,
        ));
        let processor = Processor::new(
            store.clone(),
            backplane.clone(),
            names.clone(),
            stats.clone(),
            config.max_deliveries,
        )
        .with_metrics(metrics.clone())
        .with_router(router.clone());
        // Room for a few batches per lane keeps every lane busy without
        // reading far ahead of what the store can take.
        let cache = processor.cache();
        let lanes = Lanes::new(
            Arc::new(processor),
            config.lanes,
            config.batch_max,
            config.batch_max * 4,
        );
        Worker {
            id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            config,
            store,
            backplane,
            names,
            lanes,
            cache,
            stats,
            router,
            leases: BTreeMap::new(),
            owned: watch::Sender::new(Vec::new()),
            metrics,
        }
    }

    /// The worker's metrics registry, for its `/metrics` endpoint.
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.metrics.clone()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Watches which partitions this worker holds, in ascending order: the
    /// value changes after each lease check that changed the set, and is
    /// empty once `run` has handed the leases back. Read-only; it lets
    /// operators and tests see how partitions are shared out.
    pub fn owned_partitions(&self) -> watch::Receiver<Vec<u32>> {
        self.owned.subscribe()
    }

    /// Runs until `shutdown` is cancelled, then releases its partitions.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        tasks.spawn(run_stats_loop(
            self.stats.clone(),
            self.store.clone(),
            self.backplane.clone(),
            self.names.clone(),
            self.router.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(run_sweeps(
            self.router.clone(),
            self.backplane.clone(),
            self.names.clone(),
            shutdown.clone(),
        ));
        let renew_every = self.config.lease_ttl / 3;
        let mut rebalance = self.listen_for_rebalance().await;
        let mut announced = false;
        let mut next_lease_check = Instant::now();
        let mut next_retry = Instant::now() + self.config.retry_idle;
        // Trimmed and measured on the first round, so the backlog metrics
        // exist from the start.
        let mut next_trim = Instant::now();
        tracing::info!(worker = %self.id, partitions = self.config.partitions, "worker started");
        while !shutdown.is_cancelled() {
            if rebalance_requested(&mut rebalance) {
                next_lease_check = Instant::now();
            }
            if Instant::now() >= next_lease_check {
                match self.maintain_leases().await {
                    Ok(released) => {
                        // A worker that just started asks the others to
                        // make room; one that gave partitions up says so,
                        // so that the worker they are meant for takes them.
                        if released || !announced {
                            self.announce_rebalance().await;
                            announced = true;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "lease maintenance failed"),
                }
                self.publish_owned();
                next_lease_check = Instant::now() + renew_every;
            }
            if Instant::now() >= next_retry {
                self.retry_stuck().await;
                next_retry = Instant::now() + self.config.retry_idle;
            }
            if Instant::now() >= next_trim {
                self.trim_owned().await;
                self.measure_backlog().await;
                next_trim = Instant::now() + TRIM_EVERY;
            }
            if self.leases.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(next_lease_check) => continue,
                    notice = next_notice(&mut rebalance) => {
                        if !notice {
                            rebalance = None;
                        }
                        next_lease_check = Instant::now();
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.lanes.wait_for_room() => {}
            }
            let owned: Vec<u32> = self.leases.keys().copied().collect();
            let block = self.config.read_block.min(
                next_lease_check
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                read = self.backplane.read_new(&owned, &self.id, self.config.batch_max, block) => read,
            };
            match read {
                Ok(entries) => self.lanes.dispatch(entries),
                Err(error) => {
                    tracing::warn!(%error, "reading commands failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(FAILURE_BACKOFF) => {}
                    }
                }
            }
        }
        // Everything read is applied and acknowledged before the leases go.
        self.lanes.close().await;
        let held = self.leases.len();
        self.release_all().await;
        self.publish_owned();
        if held > 0 {
            self.announce_rebalance().await;
        }
        tasks.close();
        tasks.wait().await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// Re-applies commands that were read but never acknowledged (a failed
    /// batch, or a previous owner that died mid-batch).
    async fn retry_stuck(&mut self) {
        let owned: Vec<u32> = self.leases.keys().copied().collect();
        for partition in owned {
            self.claim_and_process(partition, self.config.retry_idle)
                .await;
        }
    }

    /// Reads the backlog of every owned partition into the metrics.
    async fn measure_backlog(&self) {
        for partition in self.leases.keys().copied() {
            match self.backplane.stream_info(partition).await {
                Ok(info) => self.metrics.stream(partition, info),
                Err(error) => tracing::debug!(%error, partition, "backlog not measured"),
            }
        }
    }

    /// Subscribes to the workers channel. Without it (the backplane
    /// refused), rebalancing still happens at every lease check.
    async fn listen_for_rebalance(&self) -> Rebalance {
        let (subscriber, events) = match self.backplane.subscriber().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "no rebalance notices; relying on lease checks");
                return None;
            }
        };
        match subscriber.subscribe(&self.names.workers_channel()).await {
            Ok(()) => Some((subscriber, events)),
            Err(error) => {
                tracing::warn!(%error, "no rebalance notices; relying on lease checks");
                None
            }
        }
    }

    async fn announce_rebalance(&self) {
        let published = self
            .backplane
            .publish(
                &self.names.workers_channel(),
                Bytes::from_static(REBALANCE_NOTICE),
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, "rebalance notice not published");
        }
    }

    /// Drops processed entries from the owned streams so they do not grow
    /// without bound; unprocessed ones are kept by the backplane.
    async fn trim_owned(&self) {
        for partition in self.leases.keys().copied() {
            if let Err(error) = self.backplane.trim(partition).await {
                tracing::warn!(%error, partition, "trimming the command stream failed");
            }
        }
    }

    async fn claim_and_process(&mut self, partition: u32, min_idle: Duration) {
        match self
            .backplane
            .claim_pending(partition, &self.id, min_idle, self.config.batch_max)
            .await
        {
            Ok(entries) => self.lanes.dispatch(entries),
            Err(error) => tracing::warn!(%error, partition, "claiming pending commands failed"),
        }
    }

    /// Renews owned leases, then grows or shrinks the owned set towards an
    /// even share of the partitions among live workers. True when it gave
    /// partitions up.
    async fn maintain_leases(&mut self) -> Result<bool, BackplaneError> {
        let ttl = self.config.lease_ttl;
        self.backplane
            .presence_heartbeat(WORKER_REGISTRY, &self.id, &self.id, ttl)
            .await?;
        let live_workers = self.backplane.presence_count(WORKER_REGISTRY).await?.max(1);
        let partitions = self.config.partitions;
        let share =
            usize::try_from(u64::from(partitions).div_ceil(live_workers)).unwrap_or(usize::MAX);

        let mut lost = Vec::new();
        for (partition, lease) in &self.leases {
            if !self.backplane.renew_lease(*lease, &self.id, ttl).await? {
                lost.push(*partition);
            }
        }
        for partition in lost {
            tracing::warn!(partition, "lease lost");
            self.metrics.leases_lost.inc();
            self.leases.remove(&partition);
        }
        let mut released = false;
        while self.leases.len() > share {
            let Some((&partition, &lease)) = self.leases.iter().next_back() else {
                break;
            };
            self.backplane.release_lease(lease, &self.id).await?;
            self.leases.remove(&partition);
            released = true;
            tracing::info!(partition, "partition handed over");
        }
        for partition in 0..partitions {
            if self.leases.len() >= share {
                break;
            }
            if self.leases.contains_key(&partition) {
                continue;
            }
            if let Some(lease) = self
                .backplane
                .acquire_lease(partition, &self.id, ttl)
                .await?
            {
                tracing::info!(partition, token = lease.token, "partition taken");
                self.metrics.lease_takeovers.inc();
                self.leases.insert(partition, lease);
                // Others wrote its sessions while it was not ours.
                self.cache.clear();
                // The previous owner's unfinished entries come first.
                self.claim_and_process(partition, Duration::ZERO).await;
            }
        }
        Ok(released)
    }

    fn publish_owned(&self) {
        let held: Vec<u32> = self.leases.keys().copied().collect();
        self.metrics.owned(&held);
        self.owned.send_if_modified(|published| {
            let changed = *published != held;
            *published = held;
            changed
        });
    }

    async fn release_all(&mut self) {
        for (partition, lease) in std::mem::take(&mut self.leases) {
            if let Err(error) = self.backplane.release_lease(lease, &self.id).await {
                tracing::warn!(%error, partition, "lease not released");
            }
        }
        if let Err(error) = self
            .backplane
            .presence_remove(WORKER_REGISTRY, &self.id, &self.id)
            .await
        {
            tracing::warn!(%error, "worker registration not removed");
        }
    }
}

type Rebalance = Option<(
    Box<dyn chat_shared::backplane::Subscriber>,
    mpsc::UnboundedReceiver<SubscriptionEvent>,
)>;

/// Whether a rebalance notice (or a resubscription, after which one may
/// have been missed) arrived since the last look; takes them all.
fn rebalance_requested(rebalance: &mut Rebalance) -> bool {
    let Some((_, events)) = rebalance else {
        return false;
    };
    let mut requested = false;
    while let Ok(_event) = events.try_recv() {
        requested = true;
    }
    requested
}

/// Waits for the next notice; false when the subscription ended (then the
/// caller stops listening). Never resolves without a subscription.
async fn next_notice(rebalance: &mut Rebalance) -> bool {
    match rebalance {
        Some((_, events)) => events.recv().await.is_some(),
        None => std::future::pending().await,
    }
}
