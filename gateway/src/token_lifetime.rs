//! A socket's rights last as long as its token (§1): it is told
//! `token-expiring` a minute before `exp` (at once when the token has less
//! left), may send `refresh-token` to go on, and is closed at `exp`
//! otherwise. This module only keeps the clock; the connection acts on it.

use std::time::Duration;

use chat_shared::Timestamp;

/// How long before `exp` the client is warned.
pub const WARN_AHEAD: Duration = Duration::from_secs(60);
/// The furthest deadline `next` sets.
const FURTHEST: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeStep {
    /// Time to send `token-expiring`.
    Warn,
    /// The token has expired: close the socket.
    Expire,
}

#[derive(Debug, Clone, Copy)]
pub struct TokenLifetime {
    expires_at: Timestamp,
    warned: bool,
}

impl TokenLifetime {
    pub fn new(expires_at: Timestamp) -> Self {
        TokenLifetime {
            expires_at,
            warned: false,
        }
    }

    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// A refreshed token: a new expiry, and a new warning before it.
    pub fn renew(&mut self, expires_at: Timestamp) {
        self.expires_at = expires_at;
        self.warned = false;
    }

    pub fn warned(&mut self) {
        self.warned = true;
    }

    /// What comes next and how long until then, seen at `now`; nothing
    /// when that is more than a day away (a deadline is never set further
    /// out, so that a token valid for centuries cannot overflow a clock).
    pub fn next(&self, now: Timestamp) -> (Duration, Option<LifetimeStep>) {
        let (at, step) = if self.warned {
            (self.expires_at.millis(), LifetimeStep::Expire)
        } else {
            let ahead = i64::try_from(WARN_AHEAD.as_millis()).unwrap_or(i64::MAX);
            (
                self.expires_at.millis().saturating_sub(ahead),
                LifetimeStep::Warn,
            )
        };
        let until =
            Duration::from_millis(u64::try_from(at.saturating_sub(now.millis())).unwrap_or(0));
        if until > FURTHEST {
            (FURTHEST, None)
        } else {
            (until, Some(step))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_a_minute_ahead_then_expires() {
        let now = Timestamp::from_millis(1_000_000);
        let mut lifetime = TokenLifetime::new(Timestamp::from_millis(1_000_000 + 90_000));
        assert_eq!(
            lifetime.next(now),
            (Duration::from_secs(30), Some(LifetimeStep::Warn))
        );
        lifetime.warned();
        assert_eq!(
            lifetime.next(now),
            (Duration::from_secs(90), Some(LifetimeStep::Expire))
        );
    }

    #[test]
    fn a_short_token_is_warned_at_once_and_a_renewal_warns_again() {
        let now = Timestamp::from_millis(1_000_000);
        let mut lifetime = TokenLifetime::new(Timestamp::from_millis(1_000_000 + 10_000));
        assert_eq!(
            lifetime.next(now),
            (Duration::ZERO, Some(LifetimeStep::Warn))
        );
        lifetime.warned();
        lifetime.renew(Timestamp::from_millis(1_000_000 + 3_600_000));
        assert_eq!(lifetime.next(now).1, Some(LifetimeStep::Warn));
        let past = Timestamp::from_millis(2_000_000);
        lifetime.warned();
        assert_eq!(
            TokenLifetime::new(Timestamp::from_millis(1_500_000))
                .next(past)
                .0,
            Duration::ZERO
        );
    }

    #[test]
    fn a_token_valid_for_centuries_sets_no_deadline_beyond_a_day() {
        let now = Timestamp::from_millis(0);
        let lifetime = TokenLifetime::new(Timestamp::from_millis(i64::MAX));
        assert_eq!(lifetime.next(now), (FURTHEST, None));
    }
}
