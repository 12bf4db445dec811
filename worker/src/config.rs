//! The worker's settings, read from the environment and checked at start.

use std::time::Duration;

use chat_shared::config::{ConfigError, Env};
use chat_shared::routing::RoutingConfig;

/// How the worker reads, leases and retries. Defaults suit both a single
/// standalone process and a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Number of command partitions; every gateway and worker must agree.
    pub partitions: u32,
    /// How long a partition lease lasts without renewal: also how long a
    /// crashed worker's partitions wait for another (renewed every third).
    pub lease_ttl: Duration,
    /// Most commands applied in one transaction.
    pub batch_max: usize,
    /// Transactions a worker runs at once; its partitions are shared among
    /// them (`WORKER_LANES`).
    pub lanes: u32,
    /// How long one blocking read waits for new commands.
    pub read_block: Duration,
    /// Deliveries after which a failing command goes to the dead letters.
    pub max_deliveries: u32,
    /// How long an unacknowledged command waits before it is retried.
    pub retry_idle: Duration,
    /// Assignment modes, capacities and reassignment (`ASSIGNMENT`,
    /// `POOL_CAPACITY`, `REASSIGN_AFTER_SECS`).
    pub routing: RoutingConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            partitions: 16,
            lease_ttl: Duration::from_millis(1500),
            batch_max: 256,
            lanes: 1,
            read_block: Duration::from_millis(500),
            max_deliveries: 5,
            retry_idle: Duration::from_secs(15),
            routing: RoutingConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// Reads `PARTITIONS`, `LEASE_TTL_MS`, `BATCH_MAX`, `MAX_DELIVERIES` and
    /// `RETRY_IDLE_MS` over the defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = WorkerConfig::default();
        let config = WorkerConfig {
            partitions: env.parse("PARTITIONS", defaults.partitions)?,
            lease_ttl: env.millis("LEASE_TTL_MS", defaults.lease_ttl)?,
            batch_max: env.parse("BATCH_MAX", defaults.batch_max)?,
            lanes: env.parse("WORKER_LANES", defaults.lanes)?,
            read_block: defaults.read_block,
            max_deliveries: env.parse("MAX_DELIVERIES", defaults.max_deliveries)?,
            retry_idle: env.millis("RETRY_IDLE_MS", defaults.retry_idle)?,
            routing: RoutingConfig::from_env(env)?,
        };
        if config.partitions == 0 || config.partitions > 1024 {
            return Err(ConfigError("PARTITIONS must be between 1 and 1024".into()));
        }
        if config.lanes == 0 || config.lanes > 64 {
            return Err(ConfigError("WORKER_LANES must be between 1 and 64".into()));
        }
        if config.batch_max == 0 {
            return Err(ConfigError("BATCH_MAX must be at least 1".into()));
        }
        if config.max_deliveries == 0 {
            return Err(ConfigError("MAX_DELIVERIES must be at least 1".into()));
        }
        if config.lease_ttl < Duration::from_millis(300) {
            return Err(ConfigError("LEASE_TTL_MS must be at least 300".into()));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        assert_eq!(
            WorkerConfig::from_env(&Env::default()).unwrap(),
            WorkerConfig::default()
        );
        for (name, value) in [
            ("PARTITIONS", "0"),
            ("BATCH_MAX", "0"),
            ("LEASE_TTL_MS", "10"),
            ("MAX_DELIVERIES", "x"),
        ] {
            let err = WorkerConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.0.contains(name), "{err}");
        }
    }
}
