//! The command streams: durable, partitioned queues with consumer-group
//! delivery, the work that gateways hand to workers.
//!
//! Kept apart from the other concerns because it is the only one whose
//! data must survive a crashed consumer: entries stay pending until acked,
//! can be claimed by another worker, and end in a dead-letter list when
//! they keep failing, which is read back here too so that operators and
//! tests see the same thing whichever backplane runs.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::BackplaneError;

/// A stream entry as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub partition: u32,
    /// Stream-assigned id, increasing within a partition (`<ms>-<n>` in Redis).
    pub id: String,
    pub payload: Bytes,
    /// How many times this entry has been handed to a consumer, this time
    /// included (1 on first delivery).
    pub deliveries: u32,
}

/// How much work a partition's command stream holds, for monitoring. The
/// three numbers are read together but may be a moment old by the time
/// they are looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// Entries the stream holds: undelivered, pending, and (in Redis)
    /// processed ones not yet trimmed.
    pub length: u64,
    /// Entries delivered to a worker and not yet acknowledged.
    pub pending: u64,
    /// Entries appended and not yet delivered to any worker: how far the
    /// workers are behind.
    pub lag: u64,
}

/// An entry that kept failing, set aside with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: u32,
    pub id: String,
    pub payload: Bytes,
    pub deliveries: u32,
    pub reason: String,
}

#[async_trait]
pub trait CommandLog: Send + Sync {
    /// Appends a command to partition `partition`; durable once this returns.
    async fn append_command(&self, partition: u32, payload: Bytes) -> Result<(), BackplaneError>;

    /// Reads entries never delivered to any consumer from the given
    /// partitions, waiting up to `block` when there are none: at most `max`
    /// from each partition, every partition with entries getting some.
    /// Entries read stay pending until acked. A read dropped before it
    /// returns loses nothing: what it took reaches the consumer's next read
    /// or stays pending.
    async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError>;

    /// Takes over entries of `partition` delivered earlier (to any consumer)
    /// and not acked for at least `min_idle`, oldest first.
    async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError>;

    /// Marks entries processed; they are never delivered again.
    async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError>;

    /// Moves an entry that keeps failing to the partition's dead-letter
    /// stream and acks it.
    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), BackplaneError>;

    /// The dead letters of a partition, oldest first (for operators and
    /// tests). Each backplane keeps a bounded number of them, dropping the
    /// oldest.
    async fn dead_letters(&self, partition: u32) -> Result<Vec<DeadLetter>, BackplaneError>;

    /// Drops acked entries beyond what is needed; never drops unprocessed ones.
    async fn trim(&self, partition: u32) -> Result<(), BackplaneError>;

    /// The partition's backlog: length, pending and undelivered entries.
    async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError>;
}
