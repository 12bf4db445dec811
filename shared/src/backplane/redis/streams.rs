//! Command streams: one Redis stream per partition (`{prefix}:cmd:{p}`),
//! read by the workers' consumer group.
//!
//! Reading is two steps. Taking entries is a script that runs
//! XREADGROUP `>` over every given stream with one budget (`max`) for all
//! of them; it never waits. When it finds nothing, the reader waits with a
//! plain XREAD BLOCK on the streams' tails, on a connection of its own, and
//! takes again once something arrived. Waiting outside the group has two
//! merits over XREADGROUP BLOCK: the budget holds across streams (XREADGROUP
//! COUNT is per stream), and dropping the future while it waits (a shutdown
//! racing the read) loses nothing, because nothing was delivered yet.
//!
//! The blocking connections never carry anything else; they are opened on
//! first use, reused, and closed whenever their state is in doubt (the
//! wait was cancelled or failed), so a stale blocked command never delays
//! the next reader.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::{ClientLike, StreamsInterface};
use fred::types::config::Options;
use fred::types::streams::XID;
use fred::types::{Builder, Key, Value};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::{
    into_array, into_bytes, into_string, into_u64, map_error, millis, scripts, spawn_detached,
    unexpected, Inner,
};
use crate::backplane::memory::DeadLetter;
use crate::backplane::{BackplaneError, StreamEntry, StreamInfo};
use crate::names::COMMAND_GROUP;

/// The one field of a command entry.
const PAYLOAD_FIELD: Key = Key::from_static_str("payload");

/// Dead letters kept per partition (approximately: Redis trims whole
/// nodes), so that a poison command arriving in a loop cannot fill memory.
const DEAD_LETTERS_KEPT: i64 = 10_000;

/// A consumer that holds nothing and has not been seen for this long is
/// removed from the group when the stream is trimmed.
const IDLE_CONSUMER_REMOVAL: Duration = Duration::from_secs(3_600);

/// Where counting undelivered entries stops when the server cannot say
/// (Redis before 7): enough to tell "far behind" without a huge reply.
const LAG_COUNT_CAP: i64 = 10_000;

impl Inner {
    /// One XADD: the payload is handed over without a copy and the command
    /// joins whatever else is being pipelined on the connection.
    pub(super) async fn append_command(
        &self,
        partition: u32,
        payload: Bytes,
    ) -> Result<(), BackplaneError> {
        self.pool
            .next()
            .xadd::<(), _, _, _, _>(
                self.names.command_stream(partition),
                false,
                None::<()>,
                XID::Auto,
                (PAYLOAD_FIELD, payload),
            )
            .await
            .map_err(map_error)
    }

    pub(super) async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        if max == 0 || partitions.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Key> = partitions
            .iter()
            .map(|&p| Key::from(self.names.command_stream(p)))
            .collect();
        let deadline = Instant::now() + block;
        loop {
            let (entries, tails) = self.take_new(&keys, partitions, consumer, max).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                return Ok(entries);
            }
            // Woken up means "something arrived", not "it is ours": another
            // consumer may take it first, so take again and maybe wait more.
            self.blocking
                .wait_for_append(&keys, tails, left, self.options.command_timeout)
                .await?;
        }
    }

    /// Runs the taking script; returns the entries, or the streams' tails
    /// to wait from when there were none.
    async fn take_new(
        &self,
        keys: &[Key],
        partitions: &[u32],
        consumer: &str,
        max: usize,
    ) -> Result<(Vec<StreamEntry>, Vec<String>), BackplaneError> {
        const WHAT: &str = "read_new";
        let args = vec![
            Value::from_static_str(COMMAND_GROUP),
            Value::from(consumer),
            Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)),
        ];
        let reply = scripts::run(&self.pool, &self.scripts.read_new, keys.to_vec(), args).await?;
        let mut parts = into_array(WHAT, reply)?.into_iter();
        let (Some(flat), Some(tails)) = (parts.next(), parts.next()) else {
            return Err(BackplaneError::Protocol(format!(
                "{WHAT}: reply is not {{entries, tails}}"
            )));
        };

        let flat = into_array(WHAT, flat)?;
        if flat.len() % 3 != 0 {
            return Err(BackplaneError::Protocol(format!(
                "{WHAT}: entry list of length {}",
                flat.len()
            )));
        }
        let mut entries = Vec::with_capacity(flat.len() / 3);
        let mut values = flat.into_iter();
        while let (Some(index), Some(id), Some(payload)) =
            (values.next(), values.next(), values.next())
        {
            let partition = into_u64(WHAT, &index)
                .ok()
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| partitions.get(i).copied())
                .ok_or_else(|| unexpected(WHAT, &index))?;
            entries.push(StreamEntry {
                partition,
                id: into_string(WHAT, id)?,
                payload: into_bytes(WHAT, payload)?,
                deliveries: 1,
            });
        }

        let tails = into_array(WHAT, tails)?
            .into_iter()
            .map(|tail| into_string(WHAT, tail))
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() && tails.len() != keys.len() {
            return Err(BackplaneError::Protocol(format!(
                "{WHAT}: {} tails for {} streams",
                tails.len(),
                keys.len()
            )));
        }
        Ok((entries, tails))
    }

    pub(super) async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        const WHAT: &str = "claim_pending";
        if max == 0 {
            return Ok(Vec::new());
        }
        let args = vec![
            Value::from_static_str(COMMAND_GROUP),
            Value::from(consumer),
            // Zero is meaningful here: take over at once.
            Value::Integer(i64::try_from(min_idle.as_millis()).unwrap_or(i64::MAX)),
            Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)),
        ];
        let key = self.names.command_stream(partition);
        let reply = scripts::run(&self.pool, &self.scripts.claim, key, args).await?;
        let flat = into_array(WHAT, reply)?;
        if flat.len() % 3 != 0 {
            return Err(BackplaneError::Protocol(format!(
                "{WHAT}: entry list of length {}",
                flat.len()
            )));
        }
        let mut entries = Vec::with_capacity(flat.len() / 3);
        let mut values = flat.into_iter();
        while let (Some(id), Some(payload), Some(deliveries)) =
            (values.next(), values.next(), values.next())
        {
            entries.push(StreamEntry {
                partition,
                id: into_string(WHAT, id)?,
                payload: into_bytes(WHAT, payload)?,
                deliveries: u32::try_from(into_u64(WHAT, &deliveries)?).unwrap_or(u32::MAX),
            });
        }
        Ok(entries)
    }

    pub(super) async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError> {
        // Like the memory backplane, an id this backplane cannot have issued
        // matches nothing; Redis would reject the whole XACK for it.
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| is_stream_id(id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.pool
            .next()
            .xack::<(), _, _, _>(self.names.command_stream(partition), COMMAND_GROUP, ids)
            .await
            .map_err(map_error)
    }

    pub(super) async fn dead_letter(
        &self,
        entry: &StreamEntry,
        reason: &str,
    ) -> Result<(), BackplaneError> {
        let keys = vec![
            self.names.command_stream(entry.partition),
            self.names.dead_letter_stream(entry.partition),
        ];
        let ackable = is_stream_id(&entry.id);
        let args = vec![
            Value::from_static_str(COMMAND_GROUP),
            Value::from(entry.id.as_str()),
            Value::Bytes(entry.payload.clone()),
            Value::Integer(i64::from(entry.deliveries)),
            Value::from(reason),
            Value::Integer(DEAD_LETTERS_KEPT),
            Value::from_static_str(if ackable { "1" } else { "0" }),
        ];
        scripts::run(&self.pool, &self.scripts.dead_letter, keys, args).await?;
        tracing::warn!(
            partition = entry.partition,
            id = %entry.id,
            deliveries = entry.deliveries,
            reason,
            "command moved to the dead letters"
        );
        Ok(())
    }

    /// The dead letters of a partition, oldest first.
    pub(super) async fn dead_letters(
        &self,
        partition: u32,
    ) -> Result<Vec<DeadLetter>, BackplaneError> {
        const WHAT: &str = "dead_letters";
        let reply: Value = self
            .pool
            .next()
            .xrange(self.names.dead_letter_stream(partition), "-", "+", None)
            .await
            .map_err(map_error)?;
        let mut letters = Vec::new();
        for entry in into_array(WHAT, reply)? {
            let mut parts = into_array(WHAT, entry)?.into_iter();
            let fields = parts.nth(1).map(|f| into_array(WHAT, f)).transpose()?;
            let mut letter = DeadLetter {
                partition,
                id: String::new(),
                payload: Bytes::new(),
                deliveries: 0,
                reason: String::new(),
            };
            let mut fields = fields.unwrap_or_default().into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                match into_string(WHAT, name)?.as_str() {
                    "id" => letter.id = into_string(WHAT, value)?,
                    "payload" => letter.payload = into_bytes(WHAT, value)?,
                    "deliveries" => {
                        letter.deliveries = into_string(WHAT, value)?.parse().unwrap_or(0)
                    }
                    "reason" => letter.reason = into_string(WHAT, value)?,
                    _ => {}
                }
            }
            letters.push(letter);
        }
        Ok(letters)
    }

    pub(super) async fn trim(&self, partition: u32) -> Result<(), BackplaneError> {
        let args = vec![Value::Integer(millis(IDLE_CONSUMER_REMOVAL))];
        let key = self.names.command_stream(partition);
        let dropped = scripts::run(&self.pool, &self.scripts.trim, key, args).await?;
        tracing::debug!(partition, dropped = ?dropped, "command stream trimmed");
        Ok(())
    }
}

impl Inner {
    pub(super) async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError> {
        const WHAT: &str = "stream_info";
        let args = vec![
            Value::from_static_str(COMMAND_GROUP),
            Value::Integer(LAG_COUNT_CAP),
        ];
        let key = self.names.command_stream(partition);
        let reply = scripts::run(&self.pool, &self.scripts.stream_info, key, args).await?;
        let values = into_array(WHAT, reply)?;
        let [length, pending, lag] = values.as_slice() else {
            return Err(BackplaneError::Protocol(format!(
                "{WHAT}: {} values instead of 3",
                values.len()
            )));
        };
        Ok(StreamInfo {
            length: into_u64(WHAT, length)?,
            pending: into_u64(WHAT, pending)?,
            lag: into_u64(WHAT, lag)?,
        })
    }
}

/// `<ms>-<seq>` or `<ms>`, both numbers: what Redis accepts as an entry id.
fn is_stream_id(id: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 20 && s.parse::<u64>().is_ok();
    match id.split_once('-') {
        Some((ms, seq)) => number(ms) && number(seq),
        None => number(id),
    }
}

/// The connections reserved for blocking reads.
pub(super) struct BlockingClients {
    builder: Builder,
    /// Connected and free.
    idle: Mutex<Vec<Client>>,
    /// One permit per connection that may exist at once.
    slots: Semaphore,
}

impl BlockingClients {
    pub fn new(builder: Builder, max: usize) -> Self {
        BlockingClients {
            builder,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(max.max(1)),
        }
    }

    /// Waits up to `block` for an entry after `tails` in any of `keys`.
    /// Returns without error also when the time ran out, or when every
    /// blocking connection stayed busy for all of it.
    pub async fn wait_for_append(
        &self,
        keys: &[Key],
        tails: Vec<String>,
        block: Duration,
        command_timeout: Duration,
    ) -> Result<(), BackplaneError> {
        let deadline = Instant::now() + block;
        let permit = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Err(_) => return Ok(()),
            Ok(Err(_)) => {
                return Err(BackplaneError::Unavailable(
                    "backplane is shutting down".into(),
                ))
            }
            Ok(Ok(permit)) => permit,
        };
        let mut lent = Lent {
            owner: self,
            client: Some(self.checkout().await?),
            _permit: permit,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            lent.give_back();
            return Ok(());
        }
        let Some(client) = lent.client.as_ref() else {
            return Ok(());
        };
        let options = Options {
            timeout: Some(left + command_timeout),
            ..Options::default()
        };
        let block_ms = u64::try_from(millis(left)).unwrap_or(u64::MAX);
        let result = client
            .with_options(&options)
            .xread::<Value, _, _>(Some(1), Some(block_ms), keys.to_vec(), tails)
            .await;
        match result {
            Ok(_) => {
                lent.give_back();
                Ok(())
            }
            // The connection may still be blocked: `lent` closes it.
            Err(error) => Err(map_error(error)),
        }
    }

    async fn checkout(&self) -> Result<Client, BackplaneError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(client) = idle {
            return Ok(client);
        }
        let client = self.builder.build().map_err(map_error)?;
        // The returned handle only reports the end of the connection task.
        let _connection = client.init().await.map_err(map_error)?;
        Ok(client)
    }

    /// Refuses new waits and closes the free connections.
    pub fn close(&self) {
        self.slots.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for client in idle {
            spawn_detached(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// A blocking connection on loan. Given back only after a wait that ended
/// normally; otherwise (cancelled, failed) it is closed, since a command may
/// still be blocked on it.
struct Lent<'a> {
    owner: &'a BlockingClients,
    client: Option<Client>,
    _permit: SemaphorePermit<'a>,
}

impl Lent<'_> {
    fn give_back(&mut self) {
        if let Some(client) = self.client.take() {
            self.owner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(client);
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            spawn_detached(async move {
                let _ = client.quit().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_stream_id;

    #[test]
    fn stream_ids_are_recognised() {
        assert!(is_stream_id("1700000000000-0"));
        assert!(is_stream_id("42"));
        assert!(!is_stream_id(""));
        assert!(!is_stream_id("-1"));
        assert!(!is_stream_id("1-"));
        assert!(!is_stream_id("abc-1"));
        assert!(!is_stream_id("1-2-3"));
    }
}
