//! In-process presence: per pool, the expiry of each (user, instance).
//!
//! One record per (user, gateway) lets a user stay present through one
//! gateway while another removes its own record. Expired records of a pool
//! go whenever it is read; the periodic sweep takes those of pools nobody
//! reads any more.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{lock, sweep_due, MemoryBackplane};
use crate::backplane::{BackplaneError, Presence};

#[derive(Default)]
pub(super) struct Pools {
    /// pool → (user id, instance) → expiry.
    pub(super) pools: HashMap<String, HashMap<(String, String), Instant>>,
    next_sweep: Option<Instant>,
}

#[async_trait]
impl Presence for MemoryBackplane {
    async fn presence_heartbeat(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        let mut presence = lock(&self.inner.presence);
        let now = Instant::now();
        if sweep_due(&mut presence.next_sweep, now) {
            presence.pools.retain(|_, members| {
                members.retain(|_, expires_at| now < *expires_at);
                !members.is_empty()
            });
        }
        presence
            .pools
            .entry(pool.to_owned())
            .or_default()
            .insert((user_id.to_owned(), instance.to_owned()), now + ttl);
        Ok(())
    }

    async fn presence_remove(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
    ) -> Result<(), BackplaneError> {
        let mut presence = lock(&self.inner.presence);
        if let Some(members) = presence.pools.get_mut(pool) {
            members.remove(&(user_id.to_owned(), instance.to_owned()));
            if members.is_empty() {
                presence.pools.remove(pool);
            }
        }
        Ok(())
    }

    async fn presence_count(&self, pool: &str) -> Result<u64, BackplaneError> {
        let mut presence = lock(&self.inner.presence);
        let now = Instant::now();
        let Some(members) = presence.pools.get_mut(pool) else {
            return Ok(0);
        };
        members.retain(|_, expires_at| now < *expires_at);
        let users: HashSet<&str> = members.keys().map(|(user, _)| user.as_str()).collect();
        let count = users.len() as u64;
        if members.is_empty() {
            presence.pools.remove(pool);
        }
        Ok(count)
    }

    async fn presence_users(&self, pool: &str) -> Result<Vec<String>, BackplaneError> {
        let mut presence = lock(&self.inner.presence);
        let now = Instant::now();
        let Some(members) = presence.pools.get_mut(pool) else {
            return Ok(Vec::new());
        };
        members.retain(|_, expires_at| now < *expires_at);
        let users: BTreeSet<String> = members.keys().map(|(user, _)| user.clone()).collect();
        if members.is_empty() {
            presence.pools.remove(pool);
        }
        Ok(users.into_iter().collect())
    }
}
