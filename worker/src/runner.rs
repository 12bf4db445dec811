//! The worker's main loop: keep a fair share of the partition leases, read
//! new commands from the owned partitions, apply them partition by partition
//! (partitions in parallel, each in order), retry what was left pending, and
//! on shutdown finish the batch at hand and hand the leases back at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chat_shared::backplane::{Backplane, BackplaneError, Lease, StreamEntry};
use chat_shared::names::Names;
use chat_shared::store::Store;
use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;
use crate::processor::Processor;
use crate::stats::{run_stats_loop, StatsTracker};

/// Presence "pool" under which live workers announce themselves; `~` cannot
/// appear in a real pool name.
const WORKER_REGISTRY: &str = "~workers";
/// How often owned streams drop their processed entries.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// Pause after a backplane failure before trying again.
const FAILURE_BACKOFF: Duration = Duration::from_millis(500);

pub struct Worker {
    id: String,
    config: WorkerConfig,
    store: Arc<dyn Store>,
    backplane: Arc<dyn Backplane>,
    names: Names,
    processor: Processor,
    stats: Arc<StatsTracker>,
    leases: BTreeMap<u32, Lease>,
    /// The partitions in `leases`, published for `owned_partitions`.
    owned: watch::Sender<Vec<u32>>,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        store: Arc<dyn Store>,
        backplane: Arc<dyn Backplane>,
        names: Names,
    ) -> Self {
        let stats = Arc::new(StatsTracker::default());
        let processor = Processor::new(
            store.clone(),
            backplane.clone(),
            names.clone(),
            stats.clone(),
            config.max_deliveries,
        );
        Worker {
            id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            config,
            store,
            backplane,
            names,
            processor,
            stats,
            leases: BTreeMap::new(),
            owned: watch::Sender::new(Vec::new()),
        }
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
            shutdown.clone(),
        ));
        let renew_every = self.config.lease_ttl / 3;
        let mut next_lease_check = Instant::now();
        let mut next_retry = Instant::now() + self.config.retry_idle;
        let mut next_trim = Instant::now() + TRIM_EVERY;
        tracing::info!(worker = %self.id, partitions = self.config.partitions, "worker started");
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_lease_check {
                if let Err(error) = self.maintain_leases().await {
                    tracing::warn!(%error, "lease maintenance failed");
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
                next_trim = Instant::now() + TRIM_EVERY;
            }
            if self.leases.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(next_lease_check) => continue,
                }
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
                Ok(entries) => self.process(entries).await,
                Err(error) => {
                    tracing::warn!(%error, "reading commands failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(FAILURE_BACKOFF) => {}
                    }
                }
            }
        }
        self.release_all().await;
        self.publish_owned();
        tasks.close();
        tasks.wait().await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// Applies entries grouped by partition: in order within a partition,
    /// partitions concurrently.
    async fn process(&self, entries: Vec<StreamEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut by_partition: BTreeMap<u32, Vec<StreamEntry>> = BTreeMap::new();
        for entry in entries {
            by_partition.entry(entry.partition).or_default().push(entry);
        }
        let runs = by_partition
            .into_values()
            .map(|batch| self.processor.process(batch));
        for result in join_all(runs).await {
            if let Err(error) = result {
                tracing::warn!(%error, "batch left pending for retry");
            }
        }
    }

    /// Re-applies commands that were read but never acknowledged (a failed
    /// batch, or a previous owner that died mid-batch).
    async fn retry_stuck(&self) {
        let owned: Vec<u32> = self.leases.keys().copied().collect();
        for partition in owned {
            self.claim_and_process(partition, self.config.retry_idle)
                .await;
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

    async fn claim_and_process(&self, partition: u32, min_idle: Duration) {
        match self
            .backplane
            .claim_pending(partition, &self.id, min_idle, self.config.batch_max)
            .await
        {
            Ok(entries) => self.process(entries).await,
            Err(error) => tracing::warn!(%error, partition, "claiming pending commands failed"),
        }
    }

    /// Renews owned leases, then grows or shrinks the owned set towards an
    /// even share of the partitions among live workers.
    async fn maintain_leases(&mut self) -> Result<(), BackplaneError> {
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
            self.leases.remove(&partition);
        }
        while self.leases.len() > share {
            let Some((&partition, &lease)) = self.leases.iter().next_back() else {
                break;
            };
            self.backplane.release_lease(lease, &self.id).await?;
            self.leases.remove(&partition);
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
                self.leases.insert(partition, lease);
                // The previous owner's unfinished entries come first.
                self.claim_and_process(partition, Duration::ZERO).await;
            }
        }
        Ok(())
    }

    fn publish_owned(&self) {
        let held: Vec<u32> = self.leases.keys().copied().collect();
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
