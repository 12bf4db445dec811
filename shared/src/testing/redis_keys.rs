//! Cleaning up after a test run in a shared Redis: every key matching the
//! run's own pattern, and nothing else.

use fred::clients::Client;
use fred::error::Error;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

/// Deletes the keys matching `pattern` (SCAN MATCH, then DEL of each page);
/// returns how many there were.
pub async fn delete_matching(client: &Client, pattern: &str) -> Result<usize, Error> {
    let mut cursor = "0".to_owned();
    let mut deleted = 0;
    loop {
        let reply: Value = client
            .custom(
                command("SCAN"),
                vec![cursor.as_str(), "MATCH", pattern, "COUNT", "1000"],
            )
            .await?;
        let mut parts = reply.into_array().into_iter();
        cursor = parts
            .next()
            .and_then(Value::into_string)
            .ok_or_else(|| Error::new(fred::error::ErrorKind::Protocol, "SCAN: no cursor"))?;
        let keys: Vec<String> = parts
            .next()
            .map(Value::into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Value::into_string)
            .collect();
        if !keys.is_empty() {
            deleted += keys.len();
            let _: Value = client.custom(command("DEL"), keys).await?;
        }
        if cursor == "0" {
            return Ok(deleted);
        }
    }
}

fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}
