//! Agent presence and the cluster-wide throttle.
//!
//! Presence of a pool is one sorted set, `{prefix}:presence:{pool}`, whose
//! members are `user\x1finstance` scored by their expiry in milliseconds of
//! the server's clock. One member per (user, gateway) lets a user stay
//! present through one gateway while another one removes its own entry;
//! counting collapses members to distinct users. Expired members are
//! removed whenever the set is touched, and the set itself expires with its
//! longest-lived member.
//!
//! The throttle is `SET key 1 NX PX period`: the first caller creates the
//! key and is let through, everyone else finds it until it expires.

use std::time::Duration;

use fred::interfaces::{KeysInterface, SortedSetsInterface};
use fred::types::{Expiration, SetOptions, Value};

use super::{into_array, into_string, into_u64, map_error, millis, scripts, Inner};
use crate::backplane::BackplaneError;

/// Separates the user from the instance in a presence member; it cannot
/// appear in the gateway ids that make up the instance part.
const MEMBER_SEPARATOR: char = '\u{1f}';

fn member(user_id: &str, instance: &str) -> String {
    let mut member = String::with_capacity(user_id.len() + 1 + instance.len());
    member.push_str(user_id);
    member.push(MEMBER_SEPARATOR);
    member.push_str(instance);
    member
}

impl Inner {
    pub(super) async fn presence_heartbeat(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        let args = vec![
            Value::from(member(user_id, instance)),
            Value::Integer(millis(ttl)),
        ];
        let key = self.names.presence(pool);
        scripts::run(&self.pool, &self.scripts.presence_heartbeat, key, args).await?;
        Ok(())
    }

    pub(super) async fn presence_remove(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
    ) -> Result<(), BackplaneError> {
        self.pool
            .next()
            .zrem::<(), _, _>(self.names.presence(pool), member(user_id, instance))
            .await
            .map_err(map_error)
    }

    pub(super) async fn presence_count(&self, pool: &str) -> Result<u64, BackplaneError> {
        let key = self.names.presence(pool);
        let reply = scripts::run(&self.pool, &self.scripts.presence_count, key, ()).await?;
        into_u64("presence_count", &reply)
    }

    /// Unexpired members (the script reads Redis's own clock, on which
    /// the scores are expiries) collapsed to their users.
    pub(super) async fn presence_users(&self, pool: &str) -> Result<Vec<String>, BackplaneError> {
        let key = self.names.presence(pool);
        let reply = scripts::run(&self.pool, &self.scripts.presence_members, key, ()).await?;
        let members = into_array("presence_users", reply)?
            .into_iter()
            .map(|member| into_string("presence_users", member))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(users_of(&members))
    }

    /// `key` is a full key name (see `Names::rate_window`).
    pub(super) async fn count_in_window(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<u64, BackplaneError> {
        let reply = scripts::run(
            &self.pool,
            &self.scripts.count_in_window,
            key.to_owned(),
            vec![millis(window).to_string()],
        )
        .await?;
        into_u64("count_in_window", &reply)
    }

    /// `key` is a full key name (see `Names::stats_throttle`).
    pub(super) async fn throttle(
        &self,
        key: &str,
        period: Duration,
    ) -> Result<bool, BackplaneError> {
        let reply: Value = self
            .pool
            .next()
            .set(
                key,
                Value::from_static_str("1"),
                Some(Expiration::PX(millis(period))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(map_error)?;
        // OK when the key was created, nil when it already existed.
        Ok(!reply.is_null())
    }
}

/// The distinct users of presence members, sorted. The user is everything
/// before the last separator, as in the count script.
fn users_of(members: &[String]) -> Vec<String> {
    let users: std::collections::BTreeSet<&str> = members
        .iter()
        .map(|m| {
            m.rsplit_once(MEMBER_SEPARATOR)
                .map_or(m.as_str(), |(user, _)| user)
        })
        .collect();
    users.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::{member, users_of};

    #[test]
    fn users_of_collapses_instances() {
        let members = [
            member("a", "gw-1"),
            member("b", "gw-1"),
            member("a", "gw-2"),
        ];
        assert_eq!(users_of(&members), vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn member_joins_user_and_instance() {
        assert_eq!(member("agent-1", "gw-2"), "agent-1\u{1f}gw-2");
    }
}
