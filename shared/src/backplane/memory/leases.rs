//! In-process partition leases: one table of holders with their expiry.
//!
//! Fencing tokens come from one counter for all partitions, so a token is
//! never reused, whichever partition it was issued for.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{lock, MemoryBackplane};
use crate::backplane::{BackplaneError, Lease, Leases};

#[derive(Default)]
pub(super) struct LeaseTable {
    held: HashMap<u32, HeldLease>,
    last_token: u64,
}

struct HeldLease {
    holder: String,
    token: u64,
    expires_at: Instant,
}

#[async_trait]
impl Leases for MemoryBackplane {
    async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError> {
        let mut leases = lock(&self.inner.leases);
        let now = Instant::now();
        // Like SET NX, a live lease refuses everyone, its own holder too:
        // holders extend with `renew_lease`.
        if leases
            .held
            .get(&partition)
            .is_some_and(|l| now < l.expires_at)
        {
            return Ok(None);
        }
        leases.last_token += 1;
        let token = leases.last_token;
        leases.held.insert(
            partition,
            HeldLease {
                holder: holder.to_owned(),
                token,
                expires_at: now + ttl,
            },
        );
        Ok(Some(Lease { partition, token }))
    }

    /// A lease past its expiry that nobody has taken yet is still renewed:
    /// no one else can have acted under it, so fencing is not at stake.
    async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError> {
        let mut leases = lock(&self.inner.leases);
        match leases.held.get_mut(&lease.partition) {
            Some(held) if held.token == lease.token && held.holder == holder => {
                held.expires_at = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, lease: Lease, holder: &str) -> Result<(), BackplaneError> {
        let mut leases = lock(&self.inner.leases);
        let ours = leases
            .held
            .get(&lease.partition)
            .is_some_and(|held| held.token == lease.token && held.holder == holder);
        if ours {
            leases.held.remove(&lease.partition);
        }
        Ok(())
    }
}
