//! The clock a pair's sends are paced by. The runtime's timer wheel ticks
//! in whole milliseconds and rounds every deadline up to the next tick, so
//! a send due between ticks left up to a millisecond late: at low rates
//! that was most of the latency measured from the due time. A `timerfd`
//! per pair is armed for the exact due instant and wakes the runtime's
//! reactor through epoll, within the kernel's timer slack (50 µs by
//! default).

use std::io;

use tokio::time::Instant;
use tokio_timerfd::Delay;

/// A one-shot timer on the monotonic clock (the one `Instant` reads).
pub struct Pacer {
    delay: Delay,
    /// The instant the timer is armed for: waiting again for the same
    /// instant, after another event woke the pair, re-arms nothing.
    armed_for: Option<Instant>,
}

impl Pacer {
    pub fn new() -> io::Result<Self> {
        Ok(Pacer {
            delay: Delay::new(std::time::Instant::now())?,
            armed_for: None,
        })
    }

    /// Returns at `due` or, when it has passed, at once. Cancel-safe: a
    /// wait dropped before its instant leaves the timer armed for it.
    pub async fn wait_until(&mut self, due: Instant) -> io::Result<()> {
        if self.armed_for != Some(due) {
            self.delay.reset(due.into_std());
            self.armed_for = Some(due);
        }
        let fired = (&mut self.delay).await;
        self.armed_for = None;
        fired
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn it_wakes_no_earlier_than_the_due_instant() {
        let mut pacer = Pacer::new().expect("a timerfd");
        for _ in 0..3 {
            let due = Instant::now() + Duration::from_millis(3);
            pacer.wait_until(due).await.expect("the timer fires");
            assert!(Instant::now() >= due);
        }
    }

    #[tokio::test]
    async fn a_past_instant_returns_at_once_and_a_cancelled_wait_can_be_resumed() {
        let mut pacer = Pacer::new().expect("a timerfd");
        let past = Instant::now() - Duration::from_millis(1);
        tokio::time::timeout(Duration::from_secs(5), pacer.wait_until(past))
            .await
            .expect("nothing to wait for")
            .expect("no timer error");
        let due = Instant::now() + Duration::from_millis(20);
        let cancelled = tokio::time::timeout(Duration::ZERO, pacer.wait_until(due)).await;
        assert!(cancelled.is_err(), "the wait was still pending");
        pacer.wait_until(due).await.expect("the armed timer fires");
        assert!(Instant::now() >= due);
    }
}
