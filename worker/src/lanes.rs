//! Lanes between reading commands and applying them. Each partition maps to
//! one lane (partition mod lane count). The reader hands what it read to
//! the lanes and goes back to reading at once; each lane applies its
//! entries in order, one batch (one transaction) at a time, and whatever
//! arrives while a batch commits becomes the next batch: group commit. Few
//! lanes mean few, larger transactions (the store's fixed cost per
//! transaction dominates small ones); more than one lets a commit overlap
//! the next batch's reads.
//!
//! A bound on entries read but not yet applied keeps a slow store from
//! letting the reader pull the whole stream into memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chat_shared::backplane::StreamEntry;
use tokio::sync::{mpsc, Notify};
use tokio_util::task::TaskTracker;

use crate::processor::Processor;

pub struct Lanes {
    processor: Arc<Processor>,
    senders: HashMap<u32, mpsc::UnboundedSender<Vec<StreamEntry>>>,
    lane_count: u32,
    tasks: TaskTracker,
    in_flight: Arc<AtomicUsize>,
    applied: Arc<Notify>,
    batch_max: usize,
    limit: usize,
}

impl Lanes {
    /// `limit` bounds entries read but not yet applied.
    pub fn new(processor: Arc<Processor>, lane_count: u32, batch_max: usize, limit: usize) -> Self {
        Lanes {
            processor,
            senders: HashMap::new(),
            lane_count: lane_count.max(1),
            tasks: TaskTracker::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            applied: Arc::new(Notify::new()),
            batch_max: batch_max.max(1),
            limit: limit.max(1),
        }
    }

    /// Queues entries on their partitions' lanes, in the order given.
    pub fn dispatch(&mut self, entries: Vec<StreamEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut by_lane: HashMap<u32, Vec<StreamEntry>> = HashMap::new();
        for entry in entries {
            by_lane
                .entry(entry.partition % self.lane_count)
                .or_default()
                .push(entry);
        }
        for (lane, batch) in by_lane {
            self.in_flight.fetch_add(batch.len(), Ordering::AcqRel);
            let sender = self.senders.entry(lane).or_insert_with(|| {
                spawn_lane(
                    &self.tasks,
                    self.processor.clone(),
                    self.in_flight.clone(),
                    self.applied.clone(),
                    self.batch_max,
                )
            });
            if let Err(mpsc::error::SendError(batch)) = sender.send(batch) {
                // Lanes live as long as their sender; this cannot happen,
                // and if it did the entries stay pending and are retried.
                self.in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
            }
        }
    }

    /// Resolves once fewer than `limit` entries wait to be applied.
    pub async fn wait_for_room(&self) {
        loop {
            let applied = self.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) < self.limit {
                return;
            }
            applied.await;
        }
    }

    /// Lets every lane finish what it holds, then stops them.
    pub async fn close(&mut self) {
        self.senders.clear();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn spawn_lane(
    tasks: &TaskTracker,
    processor: Arc<Processor>,
    in_flight: Arc<AtomicUsize>,
    applied: Arc<Notify>,
    batch_max: usize,
) -> mpsc::UnboundedSender<Vec<StreamEntry>> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Vec<StreamEntry>>();
    tasks.spawn(async move {
        while let Some(mut batch) = receiver.recv().await {
            while batch.len() < batch_max {
                match receiver.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            let size = batch.len();
            if let Err(error) = processor.process(batch).await {
                tracing::warn!(%error, "batch left pending for retry");
            }
            in_flight.fetch_sub(size, Ordering::AcqRel);
            applied.notify_waiters();
        }
    });
    sender
}
