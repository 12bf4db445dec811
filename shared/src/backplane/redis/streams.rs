//! Command streams: one Redis stream per partition (`{prefix}:cmd:{p}`),
//! read by the workers' consumer group.
//!
//! Reading is one XREADGROUP `>` over all of a worker's streams (one per
//! hash slot in a Redis Cluster), blocking on a connection of its own
//! (`reader` makes giving up on a read safe).
//!
//! The blocking connections never carry anything else; they are opened on
//! first use, reused, and closed whenever their state is in doubt (the
//! read was cancelled or failed), so a stale blocked command never delays
//! the next reader.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::error::{Error as RedisError, ErrorKind as RedisErrorKind};
use fred::interfaces::{ClientInterface, ClientLike, StreamsInterface};
use fred::types::config::Options;
use fred::types::streams::XID;
use fred::types::{Builder, ClientUnblockFlag, Key, Value};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::{
    into_array, into_bytes, into_string, into_u64, map_error, millis, scripts, spawn_detached,
    Inner,
};
use crate::backplane::{BackplaneError, DeadLetter, StreamEntry, StreamInfo};
use crate::names::{partition_tag, COMMAND_GROUP};

/// Pause between attempts to end a blocking read that was not blocked on
/// the server yet when its reader gave up.
const UNBLOCK_RETRY: Duration = Duration::from_millis(5);

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

    /// New entries of `partitions` for `consumer`: up to `max` from each
    /// stream (COUNT is per stream, so a busy partition cannot starve the
    /// others), blocking up to `block` or until `gave_up` closes.
    ///
    /// On one server that is one XREADGROUP over every stream. A Redis
    /// Cluster refuses a read of streams on different slots, and every
    /// partition has a slot of its own, so there each slot is read at once
    /// on a connection of its own; the first read that brings entries (or
    /// fails) ends the others' waits, and what they took too is returned.
    pub(super) async fn read_entries(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
        gave_up: watch::Receiver<()>,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        let deadline = Instant::now() + block;
        let groups = self.read_groups(partitions);
        if let [only] = groups.as_slice() {
            return self
                .read_streams(only, consumer, max, deadline, gave_up)
                .await;
        }
        let (end_waits, waits_ended) = watch::channel(());
        let mut reads: FuturesUnordered<_> = groups
            .iter()
            .map(|group| self.read_streams(group, consumer, max, deadline, waits_ended.clone()))
            .collect();
        let mut caller = gave_up;
        let mut ending = false;
        let mut entries = Vec::new();
        let mut failure = None;
        loop {
            tokio::select! {
                read = reads.next() => match read {
                    None => break,
                    Some(Ok(mut taken)) => {
                        if !taken.is_empty() && !ending {
                            ending = true;
                            let _ = end_waits.send(());
                        }
                        entries.append(&mut taken);
                    }
                    Some(Err(error)) => {
                        failure.get_or_insert(error);
                        if !ending {
                            ending = true;
                            let _ = end_waits.send(());
                        }
                    }
                },
                _ = caller.changed(), if !ending => {
                    ending = true;
                    let _ = end_waits.send(());
                }
            }
        }
        // Entries taken are the consumer's now: they go to the caller even
        // when another slot's read failed.
        match failure {
            Some(error) if entries.is_empty() => Err(error),
            _ => Ok(entries),
        }
    }

    /// The partitions that one XREADGROUP may read together: all of them
    /// on one server, those of one hash slot in a Redis Cluster.
    fn read_groups(&self, partitions: &[u32]) -> Vec<Vec<u32>> {
        if !self.clustered {
            return vec![partitions.to_vec()];
        }
        let mut by_slot: std::collections::BTreeMap<u16, Vec<u32>> = Default::default();
        for &partition in partitions {
            by_slot
                .entry(crate::names::hash_slot_of_tag(partition_tag(partition)))
                .or_default()
                .push(partition);
        }
        by_slot.into_values().collect()
    }

    /// One XREADGROUP over the streams of `partitions`, blocking until
    /// `deadline` on a connection of its own, or until `gave_up` changes
    /// or closes. A missing group (a stream never read, or lost with a
    /// server that kept no data) is created at `0`, so nothing appended
    /// before it is skipped, and the read is made again.
    async fn read_streams(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        deadline: Instant,
        gave_up: watch::Receiver<()>,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        let keys: Vec<Key> = partitions
            .iter()
            .map(|&p| Key::from(self.names.command_stream(p)))
            .collect();
        let count = u64::try_from(max).unwrap_or(u64::MAX);
        let read = || {
            self.blocking.read_group(
                &keys,
                consumer,
                count,
                deadline.saturating_duration_since(Instant::now()),
                self.options.command_timeout,
                gave_up.clone(),
            )
        };
        let reply = match read().await {
            Err(error) if error.details().starts_with("NOGROUP") => {
                self.create_groups(&keys).await?;
                read().await.map_err(map_error)?
            }
            other => other.map_err(map_error)?,
        };
        parse_group_read(reply, &keys, partitions)
    }

    /// Creates the consumer group of each stream that has none.
    async fn create_groups(&self, keys: &[Key]) -> Result<(), BackplaneError> {
        for key in keys {
            let created = self
                .pool
                .next()
                .xgroup_create::<(), _, _, _>(key.clone(), COMMAND_GROUP, "0", true)
                .await;
            match created {
                Err(error) if !error.details().starts_with("BUSYGROUP") => {
                    return Err(map_error(error))
                }
                _ => {}
            }
        }
        Ok(())
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

/// Turns an XREADGROUP reply (per stream: its name and its entries, each
/// an id and field/value pairs; nil when nothing came) into entries.
fn parse_group_read(
    reply: Value,
    keys: &[Key],
    partitions: &[u32],
) -> Result<Vec<StreamEntry>, BackplaneError> {
    const WHAT: &str = "read_new";
    let mut entries = Vec::new();
    for stream in into_array(WHAT, reply)? {
        let mut parts = into_array(WHAT, stream)?.into_iter();
        let (Some(name), Some(items)) = (parts.next(), parts.next()) else {
            return Err(BackplaneError::Protocol(format!(
                "{WHAT}: stream reply is not {{name, entries}}"
            )));
        };
        let name = into_bytes(WHAT, name)?;
        let partition = keys
            .iter()
            .position(|key| key.as_bytes() == name.as_ref())
            .and_then(|i| partitions.get(i).copied())
            .ok_or_else(|| {
                BackplaneError::Protocol(format!("{WHAT}: reply names a stream not asked for"))
            })?;
        for item in into_array(WHAT, items)? {
            let mut item = into_array(WHAT, item)?.into_iter();
            let (Some(id), Some(fields)) = (item.next(), item.next()) else {
                return Err(BackplaneError::Protocol(format!(
                    "{WHAT}: entry is not {{id, fields}}"
                )));
            };
            let mut payload = Bytes::new();
            let mut fields = into_array(WHAT, fields)?.into_iter();
            while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
                if into_bytes(WHAT, field)?.as_ref() == PAYLOAD_FIELD.as_bytes() {
                    payload = into_bytes(WHAT, value)?;
                }
            }
            entries.push(StreamEntry {
                partition,
                id: into_string(WHAT, id)?,
                payload,
                deliveries: 1,
            });
        }
    }
    Ok(entries)
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

    /// XREADGROUP `>` on `keys` for `consumer`, blocking up to `block`
    /// (not at all when zero). Answers nil also when every blocking
    /// connection stayed busy for all of `block`.
    pub async fn read_group(
        &self,
        keys: &[Key],
        consumer: &str,
        count: u64,
        block: Duration,
        command_timeout: Duration,
        mut gave_up: watch::Receiver<()>,
    ) -> Result<Value, RedisError> {
        let deadline = Instant::now() + block;
        let permit = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Err(_) => return Ok(Value::Null),
            Ok(Err(_)) => {
                return Err(RedisError::new(
                    RedisErrorKind::Canceled,
                    "backplane is shutting down",
                ))
            }
            Ok(Ok(permit)) => permit,
        };
        let mut lent = Lent {
            owner: self,
            client: Some(self.checkout().await?),
            _permit: permit,
        };
        let Some(client) = lent.client.as_ref() else {
            return Ok(Value::Null);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let options = Options {
            timeout: Some(left + command_timeout),
            ..Options::default()
        };
        // BLOCK 0 would wait forever: a read with no time left does not block.
        let block_ms =
            (!left.is_zero()).then(|| u64::try_from(millis(left).max(1)).unwrap_or(u64::MAX));
        let ids: Vec<&str> = keys.iter().map(|_| ">").collect();
        let with_options = client.with_options(&options);
        let read = with_options.xreadgroup::<Value, _, _, _, _>(
            COMMAND_GROUP,
            consumer,
            Some(count),
            block_ms,
            false,
            keys.to_vec(),
            ids,
        );
        tokio::pin!(read);
        let result = tokio::select! {
            result = &mut read => result,
            // Whoever waited went away: end the wait as a timeout, and
            // still take the reply, which may carry entries. The read may
            // not be blocked on the server yet (then there is nothing to
            // unblock), so ask again until it ends.
            _ = gave_up.changed() => loop {
                let _ = client.unblock_self(Some(ClientUnblockFlag::Timeout)).await;
                tokio::select! {
                    result = &mut read => break result,
                    _ = tokio::time::sleep(UNBLOCK_RETRY) => {}
                }
            }
        };
        match result {
            Ok(reply) => {
                lent.give_back();
                Ok(reply)
            }
            // A server error leaves the connection sound; anything else
            // may leave it blocked, and `lent` closes it.
            Err(error) if error.kind() == &RedisErrorKind::Unknown => {
                lent.give_back();
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    async fn checkout(&self) -> Result<Client, RedisError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(client) = idle {
            return Ok(client);
        }
        let client = self.builder.build()?;
        // The returned handle only reports the end of the connection task.
        let _connection = client.init().await?;
        Ok(client)
    }

    /// Opens every connection there may be and answers their ids on the
    /// server (CLIENT ID), so that a test can see in CLIENT LIST when a
    /// read blocks on one of them. Called before any read is under way;
    /// the connections are then free, and reads take only these.
    #[cfg(test)]
    pub async fn open_all(&self) -> Result<Vec<i64>, RedisError> {
        let mut lent = Vec::new();
        while let Ok(permit) = self.slots.try_acquire() {
            lent.push(Lent {
                owner: self,
                client: Some(self.checkout().await?),
                _permit: permit,
            });
        }
        let mut ids = Vec::new();
        for connection in &mut lent {
            if let Some(client) = &connection.client {
                ids.push(client.client_id().await?);
            }
            connection.give_back();
        }
        Ok(ids)
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
                // A read dropped while it waits is still blocked on the
                // server, where it would take entries appended next; ended
                // as a timeout, it takes nothing. (QUIT alone would queue
                // behind it.)
                let _ = client.unblock_self(Some(ClientUnblockFlag::Timeout)).await;
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
