//! The in-process command streams: a queue of undelivered entries and a
//! pending list per partition, and the dead letters set aside.
//!
//! Acked entries are dropped at once, so a stream only ever holds work not
//! yet done. Stream ids are a per-partition counter printed as 20
//! zero-padded digits, so they increase and also sort correctly as strings.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::{lock, MemoryBackplane};
use crate::backplane::{BackplaneError, CommandLog, DeadLetter, StreamEntry, StreamInfo};

/// Dead letters kept per partition; older ones are dropped (and logged) so
/// that a poison command arriving in a loop cannot exhaust memory.
pub(super) const MAX_DEAD_LETTERS_PER_PARTITION: usize = 1_000;

/// One command stream.
#[derive(Default)]
pub(super) struct Partition {
    /// Last id handed out; ids start at 1.
    last_seq: u64,
    /// Appended, never delivered, oldest first.
    undelivered: VecDeque<(u64, Bytes)>,
    /// Delivered and not acked, by id (so "oldest first" is iteration order).
    pending: BTreeMap<u64, Pending>,
    dead: VecDeque<DeadLetter>,
}

struct Pending {
    payload: Bytes,
    consumer: String,
    delivered_at: Instant,
    deliveries: u32,
}

pub(super) fn format_id(seq: u64) -> String {
    format!("{seq:020}")
}

/// Ids this backplane never issued (unparsable) match nothing.
fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

impl MemoryBackplane {
    /// Takes up to `max` undelivered entries, one partition at a time in
    /// turn so that a busy partition cannot starve the others.
    fn take_new(&self, partitions: &[u32], consumer: &str, max: usize) -> Vec<StreamEntry> {
        let mut streams = lock(&self.inner.streams);
        let now = Instant::now();
        let mut out = Vec::new();
        loop {
            let before = out.len();
            for &partition in partitions {
                if out.len() >= max {
                    return out;
                }
                let Some(stream) = streams.get_mut(&partition) else {
                    continue;
                };
                let Some((seq, payload)) = stream.undelivered.pop_front() else {
                    continue;
                };
                stream.pending.insert(
                    seq,
                    Pending {
                        payload: payload.clone(),
                        consumer: consumer.to_owned(),
                        delivered_at: now,
                        deliveries: 1,
                    },
                );
                out.push(StreamEntry {
                    partition,
                    id: format_id(seq),
                    payload,
                    deliveries: 1,
                });
            }
            if out.len() == before {
                return out;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn retained_entries(&self, partition: u32) -> usize {
        lock(&self.inner.streams)
            .get(&partition)
            .map_or(0, |p| p.undelivered.len() + p.pending.len())
    }
}

#[async_trait]
impl CommandLog for MemoryBackplane {
    async fn append_command(&self, partition: u32, payload: Bytes) -> Result<(), BackplaneError> {
        {
            let mut streams = lock(&self.inner.streams);
            let stream = streams.entry(partition).or_default();
            stream.last_seq += 1;
            let seq = stream.last_seq;
            stream.undelivered.push_back((seq, payload));
        }
        self.inner.appended.notify_waiters();
        Ok(())
    }

    /// Cancel-safe: entries are taken only in a synchronous step that is
    /// immediately followed by the return, so dropping the future while it
    /// waits loses nothing. A zero `block` means "do not wait" and a zero
    /// `max` returns nothing at once.
    async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        if max == 0 || partitions.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + block;
        loop {
            // Registered before looking, so an append between the look and
            // the wait still wakes us.
            let appended = self.inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();

            let entries = self.take_new(partitions, consumer, max);
            if !entries.is_empty() {
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        let Some(stream) = streams.get_mut(&partition) else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let mut out = Vec::new();
        for (&seq, pending) in stream.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if now.saturating_duration_since(pending.delivered_at) < min_idle {
                continue;
            }
            pending.consumer = consumer.to_owned();
            pending.delivered_at = now;
            pending.deliveries = pending.deliveries.saturating_add(1);
            out.push(StreamEntry {
                partition,
                id: format_id(seq),
                payload: pending.payload.clone(),
                deliveries: pending.deliveries,
            });
        }
        Ok(out)
    }

    async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        if let Some(stream) = streams.get_mut(&partition) {
            // Like XACK, only delivered entries can be acked; acking an
            // unknown or undelivered id does nothing.
            for seq in ids.iter().filter_map(|id| parse_id(id)) {
                stream.pending.remove(&seq);
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        let stream = streams.entry(entry.partition).or_default();
        if let Some(seq) = parse_id(&entry.id) {
            stream.pending.remove(&seq);
        }
        if stream.dead.len() >= MAX_DEAD_LETTERS_PER_PARTITION {
            if let Some(dropped) = stream.dead.pop_front() {
                tracing::warn!(
                    partition = entry.partition,
                    id = %dropped.id,
                    "dead-letter list full, oldest dead letter dropped"
                );
            }
        }
        stream.dead.push_back(DeadLetter {
            partition: entry.partition,
            id: entry.id.clone(),
            payload: entry.payload.clone(),
            deliveries: entry.deliveries,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    async fn dead_letters(&self, partition: u32) -> Result<Vec<DeadLetter>, BackplaneError> {
        Ok(lock(&self.inner.streams)
            .get(&partition)
            .map(|p| p.dead.iter().cloned().collect())
            .unwrap_or_default())
    }

    /// Acked entries are already gone; this only hands back memory the
    /// queue grew into during a burst.
    async fn trim(&self, partition: u32) -> Result<(), BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        if let Some(stream) = streams.get_mut(&partition) {
            if stream.undelivered.capacity() > 64
                && stream.undelivered.capacity() > 4 * stream.undelivered.len()
            {
                stream.undelivered.shrink_to_fit();
            }
        }
        Ok(())
    }

    /// Acked entries are dropped at once, so the length is exactly the
    /// undelivered plus the pending ones.
    async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError> {
        let streams = lock(&self.inner.streams);
        Ok(streams
            .get(&partition)
            .map_or_else(StreamInfo::default, |stream| {
                let lag = stream.undelivered.len() as u64;
                let pending = stream.pending.len() as u64;
                StreamInfo {
                    length: lag + pending,
                    pending,
                    lag,
                }
            }))
    }
}
