//! Every backplane name in one place: command streams, pub/sub channels and
//! lease, presence and throttle keys. Each name carries the deployment's key
//! prefix so that several deployments (or test runs) can share one Redis.

/// The consumer group of the workers on every command stream. It lives
/// inside the (prefixed) stream, so it needs no prefix of its own.
pub const COMMAND_GROUP: &str = "workers";

/// Builds backplane names under one prefix (default `chat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names::new("chat")
    }
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `chat:cmd:{p}`: the command stream of partition `p`.
    pub fn command_stream(&self, partition: u32) -> String {
        format!("{}:cmd:{partition}", self.prefix)
    }

    /// `chat:dead:{p}`: entries of partition `p` that kept failing.
    pub fn dead_letter_stream(&self, partition: u32) -> String {
        format!("{}:dead:{partition}", self.prefix)
    }

    /// `chat:session:{id}`: live events of one session.
    pub fn session_channel(&self, session_id: &str) -> String {
        format!("{}:session:{session_id}", self.prefix)
    }

    /// `chat:pool:{pool}`: events for the agents of one pool.
    pub fn pool_channel(&self, pool: &str) -> String {
        format!("{}:pool:{pool}", self.prefix)
    }

    /// `chat:admins`: events every admin receives, whatever the pool.
    pub fn admin_channel(&self) -> String {
        format!("{}:admins", self.prefix)
    }

    /// `chat:user:{id}`: events for every socket of one user.
    pub fn user_channel(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}", self.prefix)
    }

    /// `chat:gateway:{id}`: replies to one gateway's requests.
    pub fn gateway_channel(&self, gateway_id: &str) -> String {
        format!("{}:gateway:{gateway_id}", self.prefix)
    }

    /// `chat:workers`: workers say here that the set of workers changed
    /// (one stopped and released its partitions, or one started), so that
    /// the others rebalance at once rather than at their next lease check.
    pub fn workers_channel(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// `chat:lease:{p}`: who owns partition `p`.
    pub fn partition_lease(&self, partition: u32) -> String {
        format!("{}:lease:{partition}", self.prefix)
    }

    /// `chat:lease-token`: the counter that issues fencing tokens, one for
    /// all partitions so that a token is never issued twice.
    pub fn lease_token_counter(&self) -> String {
        format!("{}:lease-token", self.prefix)
    }

    /// `chat:presence:{pool}`: agents of a pool with a live connection.
    pub fn presence(&self, pool: &str) -> String {
        format!("{}:presence:{pool}", self.prefix)
    }

    /// `chat:throttle:stats:{pool}`: at most one stats push per period.
    pub fn stats_throttle(&self, pool: &str) -> String {
        format!("{}:throttle:stats:{pool}", self.prefix)
    }

    /// The counter of one user's REST writes in the current window.
    pub fn rest_write_window(&self, user_id: &str) -> String {
        format!("{}:rate:rest:{user_id}", self.prefix)
    }
}

/// The partition that carries every command of `session_id`: a stable hash
/// (FNV-1a), so that every gateway and worker agrees without coordination.
pub fn partition_of(session_id: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in session_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let names = Names::new("t1");
        assert_eq!(names.command_stream(3), "t1:cmd:3");
        assert_eq!(names.session_channel("s"), "t1:session:s");
        assert_eq!(names.pool_channel("p"), "t1:pool:p");
        assert_eq!(names.user_channel("u"), "t1:user:u");
        assert_eq!(names.gateway_channel("g"), "t1:gateway:g");
        assert_eq!(names.workers_channel(), "t1:workers");
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        assert_eq!(partition_of("abc", 16), partition_of("abc", 16));
        for i in 0..100 {
            assert!(partition_of(&format!("s{i}"), 16) < 16);
        }
        assert_eq!(partition_of("anything", 0), 0);
        let spread: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_of(&format!("session-{i}"), 16))
            .collect();
        assert_eq!(spread.len(), 16);
    }
}
