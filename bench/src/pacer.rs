//! The clock of one load step. Tokio's timer has millisecond resolution and
//! rounds up, so a pair task waking itself with `sleep_until` writes every
//! message about a millisecond late, and that lag counts in the open-loop
//! latency. One OS thread instead walks the merged schedule of all pairs in
//! due order, sleeping with the operating system's sub-millisecond timer
//! until each due time, and tells the pair whose message came due; the pair
//! task writes it at once. One thread sleeping between dues costs little
//! CPU, unlike spinning, and keeps the pair tasks free of any timing role
//! beyond booking the lag they actually achieved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::schedule::Schedule;

/// The longest single sleep, so a stop request is seen promptly even
/// while the next due time is far off.
const MAX_NAP: Duration = Duration::from_millis(50);

/// The running clock thread of one step.
pub struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Starts the clock; `pairs[p]` is told `k` when message `k` of pair
    /// `p` is due. A pair whose receiver is gone is simply skipped.
    pub fn start(
        schedule: Schedule,
        pairs: Vec<mpsc::UnboundedSender<usize>>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pace(&schedule, &pairs, &stopping))?;
        Ok(Pacer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the clock (if the schedule has not ended already) and waits
    /// for its thread off the runtime's workers.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        // A step abandoned without `stop` must not leave the clock running.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pace(schedule: &Schedule, pairs: &[mpsc::UnboundedSender<usize>], stop: &AtomicBool) {
    for (pair, k, due) in schedule.in_due_order() {
        let due = due.into_std();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = std::time::Instant::now();
            if now >= due {
                break;
            }
            thread::sleep((due - now).min(MAX_NAP));
        }
        let Some(sender) = pairs.get(pair) else {
            continue;
        };
        // Once every pair has finished, the rest of the schedule has no one
        // to tell.
        if sender.send(k).is_err() && pairs.iter().all(mpsc::UnboundedSender::is_closed) {
            return;
        }
    }
}
