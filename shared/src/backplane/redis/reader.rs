//! Reads of new commands that a caller may give up on without losing
//! anything.
//!
//! A worker drops its read when it shuts down. The XREADGROUP behind the
//! read may already have taken entries (Redis counts them delivered to the
//! consumer at once), so the read runs in a task of its own: a caller that
//! goes away only tells the task to end the wait, and whatever the read
//! took is kept for the consumer's next read, which waits for an abandoned
//! one to finish before it starts. Entries kept for partitions the next
//! read does not ask for are left to the stream, where they stay pending
//! and are claimed like any unacknowledged entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::Inner;
use crate::backplane::{BackplaneError, StreamEntry};

/// Per consumer, what an abandoned read took; its lock is held while a
/// read of that consumer is under way.
#[derive(Default)]
pub(super) struct Readers {
    by_consumer: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Vec<StreamEntry>>>>>,
}

impl Readers {
    fn of(&self, consumer: &str) -> Arc<tokio::sync::Mutex<Vec<StreamEntry>>> {
        self.by_consumer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(consumer.to_owned())
            .or_default()
            .clone()
    }
}

pub(super) async fn read_new(
    inner: &Arc<Inner>,
    partitions: &[u32],
    consumer: &str,
    max: usize,
    block: Duration,
) -> Result<Vec<StreamEntry>, BackplaneError> {
    if max == 0 || partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut kept = inner.readers.of(consumer).lock_owned().await;
    let earlier: Vec<StreamEntry> = std::mem::take(&mut *kept)
        .into_iter()
        .filter(|entry| partitions.contains(&entry.partition))
        .collect();
    if !earlier.is_empty() {
        return Ok(earlier);
    }
    let (reply, answer) = oneshot::channel();
    // Dropped with this future: the task's receiver then sees it closed.
    let (_still_waiting, gave_up) = watch::channel(());
    let task_inner = inner.clone();
    let partitions = partitions.to_vec();
    let consumer = consumer.to_owned();
    tokio::spawn(async move {
        let read = task_inner
            .read_entries(&partitions, &consumer, max, block, gave_up)
            .await;
        if let Err(Ok(entries)) = reply.send(read) {
            kept.extend(entries);
        }
    });
    answer.await.unwrap_or_else(|_| {
        Err(BackplaneError::Unavailable(
            "the read was interrupted".into(),
        ))
    })
}
