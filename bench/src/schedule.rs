//! The open-loop schedule of one load step and each pair's ledger against
//! it. A message's latency counts from when it was due, not from when the
//! bench got round to writing it: a generator that falls behind would
//! otherwise hide exactly the waits it caused (coordinated omission). The
//! ledger therefore keeps both instants per message, books the send lag
//! (written minus due) of every measured message, and counts the scheduled
//! messages that were never written, so a step cannot claim a rate it did
//! not offer. It does no I/O, which keeps the bookkeeping testable.

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::AckOutcome;
use crate::report::{micros, LoadTotals};

/// When each pair sends during one step. Message `k` of pair `i` is due
/// at `start + (i / pairs + k) * period`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub start: Instant,
    /// Seconds between two messages of one pair.
    period: f64,
    pairs: usize,
    pub warmup_end: Instant,
    pub send_end: Instant,
    pub deadline: Instant,
}

impl Schedule {
    /// `rate` messages per second over `pairs` pairs, starting at `start`.
    pub fn new(
        start: Instant,
        rate: f64,
        pairs: usize,
        warmup: Duration,
        duration: Duration,
        grace: Duration,
    ) -> Self {
        let warmup_end = start + warmup;
        let send_end = warmup_end + duration;
        Schedule {
            start,
            period: pairs as f64 / rate,
            pairs,
            warmup_end,
            send_end,
            deadline: send_end + grace,
        }
    }

    pub fn due(&self, pair: usize, k: usize) -> Instant {
        let slots = pair as f64 / self.pairs as f64 + k as f64;
        self.start + Duration::from_secs_f64(slots * self.period)
    }

    /// Whether a message due at `due` is sent at all.
    pub fn is_scheduled(&self, due: Instant) -> bool {
        due < self.send_end
    }

    /// Whether a message due at `due` counts towards the figures (it is
    /// due after the warm-up).
    pub fn is_measured(&self, due: Instant) -> bool {
        due >= self.warmup_end && self.is_scheduled(due)
    }

    /// Messages one pair sends in total (an upper bound for capacity).
    pub fn messages_per_pair(&self) -> usize {
        let seconds = (self.send_end - self.start).as_secs_f64();
        ((seconds / self.period).ceil() as usize + 1).min(50_000_000)
    }
}

/// One sent message: when it was due, when it was written, and what has
/// happened to it since.
#[derive(Debug, Clone, Copy)]
struct Sent {
    due: Instant,
    written: Instant,
    flags: u8,
}

const MEASURED: u8 = 1;
const ANSWERED: u8 = 2;
const ACKED: u8 = 4;
const DELIVERED: u8 = 8;
const ECHOED: u8 = 16;

/// What one pair sent during one step and what came back for it.
#[derive(Debug)]
pub struct Ledger {
    schedule: Schedule,
    pair: usize,
    /// Message `k` of this step carries ack id `ack_base + k + 1`; steps
    /// reusing a socket start above the previous step's ids, so a late ack
    /// of an earlier step is never taken for one of this step.
    ack_base: u64,
    sent: Vec<Sent>,
    totals: LoadTotals,
    answered: usize,
    delivered: usize,
    echoed: usize,
}

impl Ledger {
    pub fn new(schedule: Schedule, pair: usize, ack_base: u64) -> Self {
        let capacity = schedule.messages_per_pair();
        Ledger {
            schedule,
            pair,
            ack_base,
            sent: Vec::with_capacity(capacity),
            totals: LoadTotals::default(),
            answered: 0,
            delivered: 0,
            echoed: 0,
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// When the next message is due, or None when every scheduled one has
    /// been written.
    pub fn next_due(&self) -> Option<Instant> {
        let due = self.schedule.due(self.pair, self.sent.len());
        self.schedule.is_scheduled(due).then_some(due)
    }

    /// The messages due by `now` and not written yet, in order: after a late
    /// wake-up that is every one that came due meanwhile, so none is
    /// skipped, and their lateness shows in the lag each is booked with.
    pub fn due_by(&self, now: Instant) -> Range<usize> {
        let first = self.sent.len();
        let mut end = first;
        loop {
            let due = self.schedule.due(self.pair, end);
            if due > now || !self.schedule.is_scheduled(due) {
                break;
            }
            end += 1;
        }
        first..end
    }

    pub fn ack_id(&self, k: usize) -> u64 {
        self.ack_base + k as u64 + 1
    }

    /// Where the next step's ack ids on this socket start.
    pub fn next_ack_base(&self) -> u64 {
        self.ack_base + self.sent.len() as u64
    }

    /// Books the messages `range` (the next ones in order) as written at
    /// `written`, the moment they were flushed to the socket.
    pub fn written(&mut self, range: Range<usize>, written: Instant) {
        debug_assert_eq!(range.start, self.sent.len());
        for k in range {
            let due = self.schedule.due(self.pair, k);
            let mut flags = 0;
            if self.schedule.is_measured(due) {
                flags |= MEASURED;
                self.totals.sent_measured += 1;
                self.totals
                    .lag_us
                    .push(micros(written.saturating_duration_since(due)));
            }
            self.sent.push(Sent {
                due,
                written,
                flags,
            });
        }
    }

    /// Books an ack of the customer's socket; true when it newly
    /// acknowledged a message of this step as stored.
    pub fn ack(&mut self, id: u64, outcome: AckOutcome, at: Instant) -> bool {
        let Some(sent) = id
            .checked_sub(self.ack_base + 1)
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| self.sent.get_mut(k))
        else {
            // The join's ack, an earlier step's, or an id never used.
            return false;
        };
        if sent.flags & ANSWERED != 0 {
            return false;
        }
        sent.flags |= ANSWERED;
        self.answered += 1;
        match outcome {
            AckOutcome::Ok { .. } => {
                sent.flags |= ACKED;
                self.totals.acked_ok += 1;
                if sent.flags & MEASURED != 0 {
                    self.totals
                        .ack_us
                        .push(micros(at.saturating_duration_since(sent.due)));
                    self.totals
                        .ack_written_us
                        .push(micros(at.saturating_duration_since(sent.written)));
                }
                true
            }
            AckOutcome::Failed { code } => {
                *self.totals.failed.entry(code).or_default() += 1;
                false
            }
        }
    }

    /// Books a `new-message` of this step's message `k`, to the agent or
    /// back to the sender: `Some(true)` when it newly reached the agent,
    /// None for a `k` this step has not written (the caller counts it
    /// foreign).
    pub fn delivery(&mut self, k: usize, to_agent: bool, at: Instant) -> Option<bool> {
        let sent = self.sent.get_mut(k)?;
        if !to_agent {
            if sent.flags & ECHOED == 0 {
                sent.flags |= ECHOED;
                self.echoed += 1;
                if sent.flags & MEASURED != 0 {
                    self.totals
                        .echo_us
                        .push(micros(at.saturating_duration_since(sent.due)));
                }
            }
            return Some(false);
        }
        if sent.flags & DELIVERED != 0 {
            return Some(false);
        }
        sent.flags |= DELIVERED;
        self.delivered += 1;
        self.totals.delivered_total += 1;
        if sent.flags & MEASURED != 0 {
            self.totals
                .delivery_us
                .push(micros(at.saturating_duration_since(sent.due)));
            self.totals
                .delivery_written_us
                .push(micros(at.saturating_duration_since(sent.written)));
        }
        if at >= self.schedule.warmup_end && at < self.schedule.send_end {
            self.totals.delivered_in_window += 1;
        }
        Some(true)
    }

    /// The figures the caller counts outside the ledger (correctness of
    /// the sockets, disconnects).
    pub fn totals_mut(&mut self) -> &mut LoadTotals {
        &mut self.totals
    }

    /// Everything written has been answered, and every acked message has
    /// reached the agent and come back to the sender.
    pub fn settled(&self) -> bool {
        let acked = usize::try_from(self.totals.acked_ok).unwrap_or(usize::MAX);
        self.answered == self.sent.len() && self.delivered >= acked && self.echoed >= acked
    }

    /// Closes the books: what was never answered, delivered or echoed, and
    /// what the schedule asked for but was never written (the sender
    /// stopped early).
    pub fn finish(mut self) -> LoadTotals {
        for sent in &self.sent {
            if sent.flags & ANSWERED == 0 {
                self.totals.unanswered += 1;
            }
            if sent.flags & ACKED != 0 && sent.flags & DELIVERED == 0 {
                self.totals.lost += 1;
            }
            if sent.flags & ACKED != 0 && sent.flags & ECHOED == 0 {
                self.totals.missing_echo += 1;
            }
        }
        let mut k = self.sent.len();
        while self.schedule.is_scheduled(self.schedule.due(self.pair, k)) {
            self.totals.unsent += 1;
            k += 1;
        }
        self.totals.sent_total = self.sent.len() as u64;
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(pairs: usize, rate: f64) -> Schedule {
        Schedule::new(
            Instant::now(),
            rate,
            pairs,
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(1),
        )
    }

    fn ok() -> AckOutcome {
        AckOutcome::Ok { seq: None }
    }

    #[test]
    fn pairs_are_staggered_across_one_period() {
        let s = schedule(4, 100.0);
        // 25 msg/s per pair: 40 ms apart, pairs 10 ms apart.
        assert_eq!(s.due(0, 0), s.start);
        assert_eq!(s.due(1, 0) - s.start, Duration::from_millis(10));
        assert_eq!(s.due(0, 1) - s.start, Duration::from_millis(40));
        assert_eq!(s.due(3, 2) - s.start, Duration::from_millis(110));
        assert!(s.messages_per_pair() >= 75);
        assert!(!s.is_measured(s.start));
        assert!(s.is_measured(s.warmup_end));
        assert!(!s.is_scheduled(s.send_end));
    }

    #[test]
    fn a_late_wake_writes_every_overdue_message_and_books_its_lag() {
        // One pair at 64 msg/s: due every 15.625 ms from the start (exact
        // in binary). The warm-up of 1 s holds messages 0..64.
        let s = schedule(1, 64.0);
        let mut ledger = Ledger::new(s.clone(), 0, 0);
        let range = ledger.due_by(s.start + Duration::from_millis(999));
        assert_eq!(range, 0..64);
        ledger.written(range, s.start + Duration::from_millis(999));
        assert!(ledger.totals.lag_us.is_empty(), "warm-up is not measured");

        // The sender wakes 35 ms after message 64 was due: 64, 65 and 66
        // are all overdue and written together, each booked with its own
        // lag rather than skipped or booked as on time.
        let late = s.due(0, 64) + Duration::from_millis(35);
        let range = ledger.due_by(late);
        assert_eq!(range, 64..67);
        ledger.written(range, late);
        assert_eq!(ledger.totals.lag_us, vec![35_000, 19_375, 3_750]);
        assert_eq!(ledger.totals.sent_measured, 3);
        assert_eq!(ledger.next_due(), Some(s.due(0, 67)));

        // Latency counts from the due time; beside it, from the write.
        let acked_at = late + Duration::from_millis(2);
        assert!(ledger.ack(ledger.ack_id(64), ok(), acked_at));
        assert_eq!(ledger.totals.ack_us, vec![37_000]);
        assert_eq!(ledger.totals.ack_written_us, vec![2_000]);
        assert_eq!(ledger.delivery(64, true, acked_at), Some(true));
        assert_eq!(ledger.totals.delivery_us, vec![37_000]);
        assert_eq!(ledger.totals.delivery_written_us, vec![2_000]);
        assert_eq!(ledger.delivery(64, true, acked_at), Some(false));
        assert_eq!(ledger.delivery(67, true, acked_at), None);
    }

    #[test]
    fn nothing_due_after_the_end_of_sending() {
        let s = schedule(2, 8.0);
        let ledger = Ledger::new(s.clone(), 1, 0);
        // Pair 1 of 2 at 4 msg/s each: due at 0.125 s, 0.375 s, ... 2.875 s.
        let range = ledger.due_by(s.deadline + Duration::from_secs(10));
        assert_eq!(range, 0..12);
        assert!(s.due(1, 11) < s.send_end && s.due(1, 12) >= s.send_end);
    }

    #[test]
    fn a_sender_that_stops_early_leaves_unsent_messages() {
        let s = schedule(1, 8.0);
        let mut ledger = Ledger::new(s.clone(), 0, 0);
        // 24 messages are scheduled; only the first 12 are written.
        ledger.written(0..12, s.due(0, 11));
        assert!(!ledger.settled(), "nothing answered yet");
        for k in 0..12 {
            ledger.ack(ledger.ack_id(k), ok(), s.due(0, 12));
            ledger.delivery(k, true, s.due(0, 12));
            ledger.delivery(k, false, s.due(0, 12));
        }
        assert!(ledger.settled());
        assert_eq!(ledger.next_due(), Some(s.due(0, 12)));
        let totals = ledger.finish();
        assert_eq!(totals.unsent, 12);
        assert_eq!(totals.sent_total, 12);
        assert_eq!(
            (totals.lost, totals.unanswered, totals.missing_echo),
            (0, 0, 0)
        );
    }

    #[test]
    fn acks_of_another_step_are_ignored_and_gaps_are_counted() {
        let s = schedule(1, 8.0);
        let mut ledger = Ledger::new(s.clone(), 0, 50);
        let range = ledger.due_by(s.send_end);
        assert_eq!(range, 0..24);
        ledger.written(range, s.send_end);
        assert_eq!(ledger.ack_id(0), 51);
        assert_eq!(ledger.next_ack_base(), 74);
        // The join's ack and an earlier step's ack match nothing.
        assert!(!ledger.ack(0, ok(), s.send_end));
        assert!(!ledger.ack(50, ok(), s.send_end));
        assert!(ledger.ack(51, ok(), s.send_end));
        assert!(!ledger.ack(51, ok(), s.send_end), "answered once");
        assert!(!ledger.ack(
            52,
            AckOutcome::Failed {
                code: "internal".into()
            },
            s.send_end
        ));
        ledger.delivery(0, false, s.send_end);
        assert!(!ledger.settled());
        let totals = ledger.finish();
        assert_eq!(totals.acked_ok, 1);
        assert_eq!(totals.failed.get("internal"), Some(&1));
        assert_eq!(totals.unanswered, 22);
        assert_eq!(totals.lost, 1, "acked, never reached the agent");
        assert_eq!(totals.missing_echo, 0);
        assert_eq!(totals.unsent, 0);
    }
}
