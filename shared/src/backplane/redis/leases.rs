//! Partition leases: `{prefix}:lease:{p}` holds `holder:token` with an
//! expiry, so that exactly one worker owns a partition at a time and a
//! crashed owner's partition frees itself.
//!
//! Tokens come from the partition's counter (`{prefix}:lease-token:{tag}`,
//! on the lease's hash slot) incremented inside the acquiring script, so a
//! token of a partition is never issued twice and a later holder always
//! has a larger one. Renewing and releasing compare the whole
//! stored value: a holder whose lease expired and was taken by another can
//! neither extend nor free the new one. A lease whose key has expired counts
//! as lost even if nobody took it yet; the holder simply acquires again,
//! with a new token.

use std::time::Duration;

use fred::types::Value;

use super::{into_u64, millis, scripts, unexpected, Inner};
use crate::backplane::{BackplaneError, Lease};

impl Inner {
    pub(super) async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError> {
        let keys = vec![
            self.names.partition_lease(partition),
            self.names.lease_token_counter(partition),
        ];
        let args = vec![Value::from(holder), Value::Integer(millis(ttl))];
        let reply = scripts::run(&self.pool, &self.scripts.acquire_lease, keys, args).await?;
        if reply.is_null() {
            return Ok(None);
        }
        let token = into_u64("acquire_lease", &reply)?;
        Ok(Some(Lease { partition, token }))
    }

    pub(super) async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError> {
        let args = vec![
            Value::from(stored_value(holder, lease.token)),
            Value::Integer(millis(ttl)),
        ];
        let key = self.names.partition_lease(lease.partition);
        let reply = scripts::run(&self.pool, &self.scripts.renew_lease, key, args).await?;
        flag("renew_lease", &reply)
    }

    pub(super) async fn release_lease(
        &self,
        lease: Lease,
        holder: &str,
    ) -> Result<(), BackplaneError> {
        let args = vec![Value::from(stored_value(holder, lease.token))];
        let key = self.names.partition_lease(lease.partition);
        let reply = scripts::run(&self.pool, &self.scripts.release_lease, key, args).await?;
        flag("release_lease", &reply).map(|_| ())
    }
}

/// What the lease key holds. The token is digits only, so the last `:`
/// separates it and no two (holder, token) pairs give the same value.
fn stored_value(holder: &str, token: u64) -> String {
    format!("{holder}:{token}")
}

fn flag(what: &str, reply: &Value) -> Result<bool, BackplaneError> {
    match into_u64(what, reply)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(unexpected(what, reply)),
    }
}
