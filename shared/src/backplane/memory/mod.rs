//! In-process backplane for standalone mode, where the gateway and the worker
//! share one tokio runtime and nothing has to cross a process boundary.
//!
//! It keeps the semantics of the Redis backplane that the rest of the code
//! relies on (consumer-group delivery with a pending list, fenced leases,
//! per-channel pub/sub, expiring presence, a throttle) so that the same
//! gateway and worker code runs unchanged in both modes. "Durable" here
//! means "held until acked": a standalone process that dies loses its
//! unprocessed commands together with the clients that sent them, which
//! is acceptable because their acks were never sent either.
//!
//! One file per concern, like the traits and the Redis backplane:
//! `command_log`, `leases`, `pubsub`, `presence` and `throttle` each hold
//! their state and their trait's implementation; this file only ties the
//! states together. Each concern has its own `std::sync::Mutex`; every
//! critical section is short and never spans an `.await`. Deadlines use
//! `tokio::time::Instant` so that tests can run on paused time.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Backplane, BackplaneError};

mod command_log;
mod leases;
mod presence;
mod pubsub;
mod throttle;

#[cfg(test)]
mod tests;

/// How often expired presence and throttle records are swept out, so that
/// keys nobody asks about again do not stay around forever.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The in-process backplane. Clones share the same state.
#[derive(Clone, Default)]
pub struct MemoryBackplane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackplane").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    streams: Mutex<HashMap<u32, command_log::Partition>>,
    /// Woken on every append; readers re-check their partitions.
    appended: Notify,
    leases: Mutex<leases::LeaseTable>,
    pubsub: Mutex<pubsub::Channels>,
    next_subscriber_id: AtomicU64,
    presence: Mutex<presence::Pools>,
    throttle: Mutex<throttle::Keys>,
}

impl MemoryBackplane {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Backplane for MemoryBackplane {
    async fn ping(&self) -> Result<(), BackplaneError> {
        Ok(())
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// the state consistent at each step, so a panic elsewhere while holding
/// the lock does not make the data unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True when `next_sweep` has passed; schedules the following one.
fn sweep_due(next_sweep: &mut Option<Instant>, now: Instant) -> bool {
    match next_sweep {
        Some(at) if now < *at => false,
        _ => {
            *next_sweep = Some(now + SWEEP_INTERVAL);
            true
        }
    }
}
