//! Agent presence: who is online in a pool, through which gateways.
//!
//! Every record expires unless refreshed, so a gateway that dies takes its
//! users offline by itself; nothing here is durable.

use std::time::Duration;

use async_trait::async_trait;

use super::BackplaneError;

#[async_trait]
pub trait Presence: Send + Sync {
    /// Records that `user_id` is present in `pool` through `instance` (a
    /// gateway) for `ttl` from now.
    async fn presence_heartbeat(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError>;

    /// Removes `user_id`'s presence through `instance` from `pool` now; the
    /// user stays present through other instances.
    async fn presence_remove(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
    ) -> Result<(), BackplaneError>;

    /// Counts distinct users of `pool` present through at least one
    /// instance whose presence has not expired.
    async fn presence_count(&self, pool: &str) -> Result<u64, BackplaneError>;

    /// The distinct users of `pool` present through at least one instance
    /// whose presence has not expired, sorted: who is online now, for the
    /// agent directory (one call per list, however long the list).
    async fn presence_users(&self, pool: &str) -> Result<Vec<String>, BackplaneError>;
}
