//! Cluster-wide throttles: "once per period" and "how many in this window",
//! shared by every process.
//!
//! Beside presence in spirit (small expiring records, nothing durable) but
//! a trait of its own, since its callers (stats broadcasts, REST rate
//! limits) have nothing to do with who is online.

use std::time::Duration;

use async_trait::async_trait;

use super::BackplaneError;

#[async_trait]
pub trait Throttle: Send + Sync {
    /// True for the first caller per `period` for this key, cluster-wide.
    async fn throttle(&self, key: &str, period: Duration) -> Result<bool, BackplaneError>;

    /// Counts one more call under `key` in a window of `window` that starts
    /// with the first call and returns the count so far, cluster-wide: a
    /// rate limit shared by every gateway (REST writes per user).
    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, BackplaneError>;
}
