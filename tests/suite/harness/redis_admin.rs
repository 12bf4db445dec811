//! Redis administration for the tests, through `fred` (the client the
//! backplane uses): reading a key, deleting a prefix, cutting connections.
//! One connection per use, closed afterwards, with no reconnection: an
//! administrative command against a Redis that is down fails at once.

use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::config::Config;
use fred::types::{Builder, ClusterHash, CustomCommand, Value};

/// How long connecting, and each command, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to Redis for administration.
pub struct RedisAdmin {
    client: Client,
}

impl RedisAdmin {
    /// Connects to `url` (`redis://[[user]:password@]host[:port][/db]`).
    pub async fn connect(url: &str) -> Result<RedisAdmin, String> {
        let config = Config::from_url(url).map_err(|e| format!("{url}: {e}"))?;
        let client = Builder::from_config(config)
            .with_connection_config(|connection| connection.connection_timeout = TIMEOUT)
            .with_performance_config(|performance| {
                performance.default_command_timeout = TIMEOUT;
            })
            .build()
            .map_err(|e| format!("{url}: {e}"))?;
        // The returned handle only reports the end of the connection task.
        let _connection = client
            .init()
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
        Ok(RedisAdmin { client })
    }

    /// Sends one command as given and returns its reply.
    pub async fn call(&self, args: &[&str]) -> Result<Value, String> {
        let (name, rest) = args.split_first().expect("a command");
        let command = CustomCommand::new(name.to_string(), ClusterHash::FirstKey, false);
        let rest: Vec<String> = rest.iter().map(|a| (*a).to_owned()).collect();
        self.client
            .custom(command, rest)
            .await
            .map_err(|e| format!("{}: {e}", args.join(" ")))
    }

    /// The value of `key`, if it has one.
    pub async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.client
            .get(key)
            .await
            .map_err(|e| format!("GET {key}: {e}"))
    }

    /// Deletes every key that starts with `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, String> {
        chat_shared::testing::delete_matching(&self.client, &format!("{prefix}*"))
            .await
            .map_err(|e| format!("deleting {prefix}*: {e}"))
    }

    /// Closes the connection.
    pub async fn quit(self) {
        let _ = self.client.quit().await;
    }
}

/// Who holds each of `partitions` partitions' lease under `prefix` right
/// now (the worker id, without the fencing token).
pub async fn lease_holders(url: &str, prefix: &str, partitions: u32) -> Vec<Option<String>> {
    let admin = RedisAdmin::connect(url)
        .await
        .unwrap_or_else(|e| panic!("reading the leases: {e}"));
    let names = chat_shared::names::Names::new(prefix);
    let mut holders = Vec::new();
    for p in 0..partitions {
        let value = admin
            .get(&names.partition_lease(p))
            .await
            .unwrap_or_else(|e| panic!("reading the leases: {e}"));
        holders.push(value.and_then(|v| v.rsplit_once(':').map(|(holder, _)| holder.to_owned())));
    }
    admin.quit().await;
    holders
}
