//! Partition leases: which worker owns a partition, proven by a fencing
//! token.
//!
//! A concern of its own because ownership is what keeps two workers from
//! processing one partition at once; it shares nothing with the streams
//! except the partition number.

use std::time::Duration;

use async_trait::async_trait;

use super::BackplaneError;

/// Proof of owning a partition. The token grows every time the lease
/// changes hands, so a stale owner can be told apart from the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    pub token: u64,
}

#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes the partition's lease if it is free or expired.
    async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError>;

    /// Extends a lease still held with this token; false if it was lost.
    async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError>;

    /// Gives a lease up at once so another holder can take it.
    async fn release_lease(&self, lease: Lease, holder: &str) -> Result<(), BackplaneError>;
}
