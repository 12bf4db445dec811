//! In-process throttles: per key, when the next caller is let through, and
//! the count of the current window.
//!
//! Both kinds of record expire; the periodic sweep drops the expired ones
//! so that keys nobody uses again do not stay around.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{lock, sweep_due, MemoryBackplane};
use crate::backplane::{BackplaneError, Throttle};

#[derive(Default)]
pub(super) struct Keys {
    /// key → the instant from which the next caller is let through.
    pub(super) next_allowed: HashMap<String, Instant>,
    /// key → calls counted in its window, and when the window ends.
    windows: HashMap<String, (u64, Instant)>,
    next_sweep: Option<Instant>,
}

#[async_trait]
impl Throttle for MemoryBackplane {
    async fn throttle(&self, key: &str, period: Duration) -> Result<bool, BackplaneError> {
        let mut throttle = lock(&self.inner.throttle);
        let now = Instant::now();
        if sweep_due(&mut throttle.next_sweep, now) {
            throttle.next_allowed.retain(|_, at| now < *at);
        }
        if throttle.next_allowed.get(key).is_some_and(|at| now < *at) {
            return Ok(false);
        }
        throttle.next_allowed.insert(key.to_owned(), now + period);
        Ok(true)
    }

    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, BackplaneError> {
        let mut throttle = lock(&self.inner.throttle);
        let now = Instant::now();
        if sweep_due(&mut throttle.next_sweep, now) {
            throttle.next_allowed.retain(|_, at| now < *at);
            throttle.windows.retain(|_, (_, ends)| now < *ends);
        }
        let entry = throttle
            .windows
            .entry(key.to_owned())
            .or_insert((0, now + window));
        if now >= entry.1 {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(entry.0)
    }
}
