//! The bounded queue between the rest of the gateway and one connection's
//! writer. Anyone may push to a socket without waiting; a socket whose
//! queue is full, in items or in bytes, is cut off instead of buffered
//! without limit. The connection reserves here too for the frames it
//! writes itself, so the byte budget bounds everything a socket holds.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What the queue carries: anything that knows what it costs to write.
pub trait QueueItem: Send + 'static {
    /// Bytes it will write, counted against the socket's byte budget.
    fn bytes(&self) -> usize;
}

/// How much one socket may have queued and not yet written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Items (`OUTBOUND_QUEUE`).
    pub frames: usize,
    /// Bytes of frames (`OUTBOUND_QUEUE_BYTES`).
    pub bytes: usize,
}

/// The sending side of one socket's queue.
pub struct OutboundQueue<T> {
    /// Unique within the gateway, for maps keyed by socket.
    pub key: u64,
    /// The socket id the client was given.
    pub sid: String,
    sender: mpsc::Sender<T>,
    /// Bytes of frames queued and not yet written, against `byte_budget`.
    queued_bytes: AtomicUsize,
    byte_budget: usize,
    /// Cancelled when the socket must go: it fell behind, or the gateway
    /// is shutting down.
    pub kick: CancellationToken,
}

/// Creates a socket's queue: the side others push to and the receiver its
/// connection drains.
pub fn channel<T: QueueItem>(
    key: u64,
    sid: String,
    limits: QueueLimits,
) -> (OutboundQueue<T>, mpsc::Receiver<T>) {
    let (sender, receiver) = mpsc::channel(limits.frames);
    let queue = OutboundQueue {
        key,
        sid,
        sender,
        queued_bytes: AtomicUsize::new(0),
        byte_budget: limits.bytes,
        kick: CancellationToken::new(),
    };
    (queue, receiver)
}

impl<T: QueueItem> OutboundQueue<T> {
    /// Queues an item; a socket that has no room for it is cut off (it
    /// recovers by reconnecting and rejoining with `lastSeq`).
    pub fn push(&self, item: T, metrics: &Metrics) {
        if self.kick.is_cancelled() {
            return;
        }
        let bytes = item.bytes();
        if !self.reserve(bytes) {
            self.cut_off(metrics);
            return;
        }
        if let Err(error) = self.sender.try_send(item) {
            self.release(bytes);
            if matches!(error, mpsc::error::TrySendError::Full(_)) {
                self.cut_off(metrics);
            }
        }
    }
}

impl<T> OutboundQueue<T> {
    /// Counts `bytes` against the budget; false (and nothing counted) when
    /// they do not fit.
    pub fn reserve(&self, bytes: usize) -> bool {
        self.queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued
                    .checked_add(bytes)
                    .filter(|total| *total <= self.byte_budget)
            })
            .is_ok()
    }

    /// Gives back what a written (or dropped) frame reserved.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued.saturating_sub(bytes))
            });
    }

    /// Ends a socket that does not keep up with what it is sent.
    pub fn cut_off(&self, metrics: &Metrics) {
        if !self.kick.is_cancelled() {
            metrics.slow_consumer_drops.inc();
            tracing::info!(sid = %self.sid, "socket fell behind; disconnecting it");
            self.kick.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sized(usize);
    impl QueueItem for Sized {
        fn bytes(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn a_push_past_the_byte_budget_cuts_the_socket_off() {
        let metrics = Metrics::default();
        let limits = QueueLimits {
            frames: 8,
            bytes: 100,
        };
        let (queue, mut receiver) = channel::<Sized>(1, "s".into(), limits);
        queue.push(Sized(60), &metrics);
        assert!(!queue.kick.is_cancelled());
        queue.push(Sized(60), &metrics);
        assert!(queue.kick.is_cancelled());
        assert_eq!(receiver.try_recv().map(|item| item.0).ok(), Some(60));
        assert!(receiver.try_recv().is_err());
    }

    #[test]
    fn a_push_past_the_item_limit_cuts_the_socket_off() {
        let metrics = Metrics::default();
        let limits = QueueLimits {
            frames: 2,
            bytes: 1000,
        };
        let (queue, _receiver) = channel::<Sized>(1, "s".into(), limits);
        queue.push(Sized(1), &metrics);
        queue.push(Sized(1), &metrics);
        assert!(!queue.kick.is_cancelled());
        queue.push(Sized(1), &metrics);
        assert!(queue.kick.is_cancelled());
    }
}
