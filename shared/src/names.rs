//! Every backplane name in one place: command streams, pub/sub channels and
//! lease, presence and throttle keys. Each name carries the deployment's key
//! prefix so that several deployments (or test runs) can share one Redis.
//!
//! Names are laid out for Redis Cluster, which runs a script or a
//! multi-key command only on keys of one hash slot, and hashes a key by the
//! part between its first `{` and the next `}` when there is one:
//! - every key of one partition (command stream, dead letters, lease and
//!   its fencing counter) carries the partition's hash tag, so the
//!   scripts that touch several of them stay on one slot;
//! - the keys of one pool (presence, stats throttle) carry `{pool:NAME}`;
//! - the partitions' tags are chosen to spread over the slot space (see
//!   [`partition_tag`]), so that any even split of the slots among shards
//!   gives each shard an even share of the partitions.
//!
//! On a single server the tags are just part of the names.

use std::sync::OnceLock;

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

    /// `chat:cmd:{TAG}`: the command stream of partition `p` (TAG is
    /// [`partition_tag`]).
    pub fn command_stream(&self, partition: u32) -> String {
        format!("{}:cmd:{{{}}}", self.prefix, partition_tag(partition))
    }

    /// `chat:dead:{TAG}`: entries of partition `p` that kept failing.
    pub fn dead_letter_stream(&self, partition: u32) -> String {
        format!("{}:dead:{{{}}}", self.prefix, partition_tag(partition))
    }

    /// `chat:session:{id}`: live events of one session.
    pub fn session_channel(&self, session_id: &str) -> String {
        format!("{}:session:{session_id}", self.prefix)
    }

    /// `chat:session-staff:{id}`: a session's internal notes. Only the
    /// sockets of agents and admins joined to the session subscribe to it,
    /// so a customer's socket, on any gateway, is never where one goes.
    pub fn session_staff_channel(&self, session_id: &str) -> String {
        format!("{}:session-staff:{session_id}", self.prefix)
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

    /// `chat:lease:{TAG}`: who owns partition `p`.
    pub fn partition_lease(&self, partition: u32) -> String {
        format!("{}:lease:{{{}}}", self.prefix, partition_tag(partition))
    }

    /// `chat:lease-token:{TAG}`: the counter that issues partition `p`'s
    /// fencing tokens, so that a later holder of `p` always has a larger
    /// token than every earlier one. On the lease's slot: both are
    /// touched by one script.
    pub fn lease_token_counter(&self, partition: u32) -> String {
        format!(
            "{}:lease-token:{{{}}}",
            self.prefix,
            partition_tag(partition)
        )
    }

    /// `chat:presence:{pool:NAME}`: agents of a pool with a live connection.
    pub fn presence(&self, pool: &str) -> String {
        format!("{}:presence:{{pool:{pool}}}", self.prefix)
    }

    /// `chat:throttle:stats:{pool:NAME}`: at most one stats push per
    /// period; on the slot of the pool's presence.
    pub fn stats_throttle(&self, pool: &str) -> String {
        format!("{}:throttle:stats:{{pool:{pool}}}", self.prefix)
    }

    /// `chat:throttle:routing-sweep`: one routing sweep per period,
    /// cluster-wide.
    pub fn routing_sweep_throttle(&self) -> String {
        format!("{}:throttle:routing-sweep", self.prefix)
    }

    /// The counter of one user's REST writes in the current window.
    pub fn rest_write_window(&self, user_id: &str) -> String {
        format!("{}:rate:rest:{user_id}", self.prefix)
    }
}

/// Redis Cluster's number of hash slots.
pub const HASH_SLOTS: u16 = 16_384;

/// The slot Redis Cluster gives a key whose hash tag is `tag`.
pub fn hash_slot_of_tag(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % HASH_SLOTS
}

/// The slot space is cut into this many windows; partition `p` lands in
/// the window whose index is `p`'s low bits reversed, so that the first
/// 2, 4, 8, … partitions halve and halve again the space between them,
/// whatever the number of partitions.
const SLOT_WINDOWS: u32 = 256;
const SLOTS_PER_WINDOW: u16 = HASH_SLOTS / 256;

/// Partitions whose tags are computed once and kept.
const TAGS_KEPT: u32 = 1_024;

/// The hash tag of partition `p`'s keys: `p<p>.<n>` with the smallest `n`
/// whose slot falls in `p`'s window. Every process computes the same tags;
/// the first [`TAGS_KEPT`] are computed once per process.
pub fn partition_tag(partition: u32) -> &'static str {
    static KEPT: OnceLock<Vec<String>> = OnceLock::new();
    match KEPT
        .get_or_init(|| (0..TAGS_KEPT).map(searched_tag).collect())
        .get(partition as usize)
    {
        Some(tag) => tag,
        // Past the kept ones (a configuration with more partitions than
        // anyone runs): leaked once per call would grow without bound, so
        // these are interned.
        None => interned_tag(partition),
    }
}

fn interned_tag(partition: u32) -> &'static str {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static MORE: OnceLock<Mutex<HashMap<u32, &'static str>>> = OnceLock::new();
    let mut more = MORE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    more.entry(partition)
        .or_insert_with(|| Box::leak(searched_tag(partition).into_boxed_str()))
}

/// The window of the slot space partition `p` is placed in.
fn window_of(partition: u32) -> u16 {
    let low_bits = (partition % SLOT_WINDOWS) as u8;
    u16::from(low_bits.reverse_bits())
}

fn searched_tag(partition: u32) -> String {
    let window = window_of(partition);
    // One slot in SLOTS_PER_WINDOW falls in the window: a few hundred
    // tries at most in practice; the bound only guards a broken hash.
    (0u32..1_000_000)
        .map(|n| format!("p{partition}.{n}"))
        .find(|tag| hash_slot_of_tag(tag) / SLOTS_PER_WINDOW == window)
        .unwrap_or_else(|| format!("p{partition}"))
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
        assert_eq!(
            names.command_stream(3),
            format!("t1:cmd:{{{}}}", partition_tag(3))
        );
        assert_eq!(names.session_channel("s"), "t1:session:s");
        assert_eq!(names.pool_channel("p"), "t1:pool:p");
        assert_eq!(names.user_channel("u"), "t1:user:u");
        assert_eq!(names.gateway_channel("g"), "t1:gateway:g");
        assert_eq!(names.workers_channel(), "t1:workers");
    }

    /// The slot Redis Cluster hashes a whole key to: its tag's when it has
    /// a non-empty `{…}`, else the key's.
    fn key_slot(key: &str) -> u16 {
        let tagged = key.find('{').and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        });
        hash_slot_of_tag(tagged.unwrap_or(key))
    }

    #[test]
    fn the_slot_hash_is_redis_clusters() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(hash_slot_of_tag("foo"), 12_182);
        assert_eq!(hash_slot_of_tag("bar"), 5_061);
        assert_eq!(hash_slot_of_tag("123456789"), 0x31c3 % HASH_SLOTS);
    }

    #[test]
    fn keys_of_a_partition_share_one_slot() {
        let names = Names::new("chat");
        for partition in [0, 1, 7, 15, 255, 1_023, 1_024, 5_000] {
            let slot = key_slot(&names.command_stream(partition));
            assert_eq!(key_slot(&names.dead_letter_stream(partition)), slot);
            assert_eq!(key_slot(&names.partition_lease(partition)), slot);
            assert_eq!(key_slot(&names.lease_token_counter(partition)), slot);
            assert_eq!(partition_tag(partition), partition_tag(partition));
        }
        assert_eq!(
            key_slot(&names.presence("support")),
            key_slot(&names.stats_throttle("support"))
        );
    }

    #[test]
    fn partitions_spread_evenly_over_any_even_split_of_the_slots() {
        let names = Names::new("chat");
        for (partitions, shards) in [(16u32, 3u32), (16, 2), (16, 4), (8, 3), (64, 6), (256, 5)] {
            let mut per_shard = vec![0u32; shards as usize];
            for partition in 0..partitions {
                let slot = u32::from(key_slot(&names.command_stream(partition)));
                // How redis-cli cuts the slots among masters.
                let shard = (slot * shards / u32::from(HASH_SLOTS)) as usize;
                per_shard[shard] += 1;
            }
            let (least, most) = (
                per_shard.iter().min().copied().unwrap_or(0),
                per_shard.iter().max().copied().unwrap_or(0),
            );
            assert!(
                most - least <= 1,
                "{partitions} partitions over {shards} shards: {per_shard:?}"
            );
        }
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
