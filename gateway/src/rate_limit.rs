//! Per-socket event budgets: a token bucket per kind of client event, a
//! steady rate with room for short bursts. `send-message` follows
//! `RATE_LIMIT_PER_SEC`/`RATE_LIMIT_BURST`; the other kinds have fixed
//! budgets generous for any real client (a console rejoining its sessions
//! after a reconnect, a typist toggling on every key) and small against a
//! flood. A `RATE_LIMIT_PER_SEC` of zero turns every budget off.

use std::time::Instant;

use chat_shared::protocol::client_events;

/// `typing` toggles per second, and their burst.
pub const TYPING_BUDGET: (u32, u32) = (10, 20);
/// `mark-read` per second, and burst.
pub const MARK_READ_BUDGET: (u32, u32) = (10, 20);
/// `mark-delivered` per second, and burst (its own bucket: a client
/// confirms deliveries by itself, and must not eat its reads' budget).
pub const MARK_DELIVERED_BUDGET: (u32, u32) = (10, 20);
/// `react` per second, and burst.
pub const REACT_BUDGET: (u32, u32) = (10, 20);
/// `join-session` and `leave-session` together per second, and burst.
pub const MEMBERSHIP_BUDGET: (u32, u32) = (10, 50);
/// `refresh-token` per second, and burst: a token lives minutes at least.
pub const REFRESH_BUDGET: (u32, u32) = (1, 3);
/// Any other event (unknown names, bad packets) per second, and burst.
pub const OTHER_BUDGET: (u32, u32) = (20, 40);

/// One socket's buckets.
#[derive(Debug, Clone)]
pub struct EventBudgets {
    send: TokenBucket,
    typing: TokenBucket,
    mark_read: TokenBucket,
    mark_delivered: TokenBucket,
    react: TokenBucket,
    membership: TokenBucket,
    refresh: TokenBucket,
    other: TokenBucket,
}

impl EventBudgets {
    /// `send_per_second` 0 turns every budget off.
    pub fn new(send_per_second: u32, send_burst: u32) -> Self {
        let off = send_per_second == 0;
        let bucket =
            |(rate, burst): (u32, u32)| TokenBucket::new(if off { 0 } else { rate }, burst);
        EventBudgets {
            send: TokenBucket::new(send_per_second, send_burst),
            typing: bucket(TYPING_BUDGET),
            mark_read: bucket(MARK_READ_BUDGET),
            mark_delivered: bucket(MARK_DELIVERED_BUDGET),
            react: bucket(REACT_BUDGET),
            membership: bucket(MEMBERSHIP_BUDGET),
            refresh: bucket(REFRESH_BUDGET),
            other: bucket(OTHER_BUDGET),
        }
    }

    /// Takes a token from the bucket of `event`; false when over budget.
    pub fn try_take(&mut self, event: &str, now: Instant) -> bool {
        let bucket = match event {
            client_events::SEND_MESSAGE => &mut self.send,
            client_events::TYPING => &mut self.typing,
            client_events::MARK_READ => &mut self.mark_read,
            client_events::MARK_DELIVERED => &mut self.mark_delivered,
            client_events::REACT => &mut self.react,
            client_events::JOIN_SESSION | client_events::LEAVE_SESSION => &mut self.membership,
            client_events::REFRESH_TOKEN => &mut self.refresh,
            _ => &mut self.other,
        };
        bucket.try_take(now)
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_second: f64::from(per_second),
            burst,
            tokens: burst,
            refilled_at: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, 3);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(500)));
        assert!(!bucket.try_take(start + Duration::from_millis(500)));
    }

    #[test]
    fn each_kind_has_its_own_bucket() {
        let now = Instant::now();
        let mut budgets = EventBudgets::new(1, 1);
        assert!(budgets.try_take(client_events::SEND_MESSAGE, now));
        assert!(!budgets.try_take(client_events::SEND_MESSAGE, now));
        let typed = (0..100)
            .filter(|_| budgets.try_take(client_events::TYPING, now))
            .count();
        assert_eq!(typed, TYPING_BUDGET.1 as usize);
        assert!(budgets.try_take(client_events::JOIN_SESSION, now));
        let mut off = EventBudgets::new(0, 1);
        assert!((0..1000).all(|_| off.try_take(client_events::TYPING, now)));
    }

    #[test]
    fn reactions_and_deliveries_have_buckets_of_their_own() {
        let now = Instant::now();
        let mut budgets = EventBudgets::new(20, 40);
        let taken = |budgets: &mut EventBudgets, event: &str| {
            (0..100).filter(|_| budgets.try_take(event, now)).count()
        };
        assert_eq!(
            taken(&mut budgets, client_events::MARK_DELIVERED),
            MARK_DELIVERED_BUDGET.1 as usize
        );
        assert_eq!(
            taken(&mut budgets, client_events::REACT),
            REACT_BUDGET.1 as usize
        );
        // Neither spent the other's, nor mark-read's.
        assert_eq!(
            taken(&mut budgets, client_events::MARK_READ),
            MARK_READ_BUDGET.1 as usize
        );
        assert!(!budgets.try_take(client_events::REACT, now));
        assert!(budgets.try_take(
            client_events::REACT,
            now + std::time::Duration::from_millis(100)
        ));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0, 1);
        assert!((0..1000).all(|_| bucket.try_take(now)));
    }
}
