//! In-process backplane for standalone mode, where the gateway and the worker
//! share one tokio runtime and nothing has to cross a process boundary.
//!
//! It keeps the semantics of the Redis backplane that the rest of the code
//! relies on (consumer-group delivery with a pending list, fenced leases,
//! per-channel pub/sub, expiring presence, a throttle) so that the same
//! gateway and worker code runs unchanged in both modes. "Durable" here
//! means "held until acked": a standalone process that dies loses its
//! unprocessed commands together with the clients that sent them, which
//! is acceptable because their acks were never sent either.
//!
//! Each concern has its own `std::sync::Mutex`; every critical section is
//! short and never spans an `.await`. Deadlines use `tokio::time::Instant`
//! so that tests can run on paused time.
//!
//! Stream ids are a per-partition counter printed as 20 zero-padded digits,
//! so they increase and also sort correctly as strings.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::{
    Backplane, BackplaneError, ChannelMessage, Lease, StreamEntry, StreamInfo, Subscriber,
    SubscriptionEvent,
};

/// Dead letters kept per partition; older ones are dropped (and logged) so
/// that a poison command arriving in a loop cannot exhaust memory.
const MAX_DEAD_LETTERS_PER_PARTITION: usize = 1_000;

/// How often expired presence and throttle records are swept out, so that
/// keys nobody asks about again do not stay around forever.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The in-process backplane. Clones share the same state.
#[derive(Clone, Default)]
pub struct MemoryBackplane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackplane").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    streams: Mutex<HashMap<u32, Partition>>,
    /// Woken on every append; readers re-check their partitions.
    appended: Notify,
    leases: Mutex<Leases>,
    pubsub: Mutex<PubSub>,
    next_subscriber_id: AtomicU64,
    presence: Mutex<Presence>,
    throttle: Mutex<Throttle>,
}

/// An entry that kept failing, set aside with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: u32,
    pub id: String,
    pub payload: Bytes,
    pub deliveries: u32,
    pub reason: String,
}

/// One command stream. Acked entries are dropped at once, so the stream
/// only ever holds work not yet done.
#[derive(Default)]
struct Partition {
    /// Last id handed out; ids start at 1.
    last_seq: u64,
    /// Appended, never delivered, oldest first.
    undelivered: VecDeque<(u64, Bytes)>,
    /// Delivered and not acked, by id (so "oldest first" is iteration order).
    pending: BTreeMap<u64, Pending>,
    dead: VecDeque<DeadLetter>,
}

struct Pending {
    payload: Bytes,
    consumer: String,
    delivered_at: Instant,
    deliveries: u32,
}

#[derive(Default)]
struct Leases {
    held: HashMap<u32, HeldLease>,
    /// Fencing tokens come from one counter for all partitions, so a token
    /// is never reused, whichever partition it was issued for.
    last_token: u64,
}

struct HeldLease {
    holder: String,
    token: u64,
    expires_at: Instant,
}

#[derive(Default)]
struct PubSub {
    /// channel → subscriber id → that subscriber's event queue.
    channels: HashMap<String, HashMap<u64, mpsc::UnboundedSender<SubscriptionEvent>>>,
}

#[derive(Default)]
struct Presence {
    /// pool → (user id, instance) → expiry.
    pools: HashMap<String, HashMap<(String, String), Instant>>,
    next_sweep: Option<Instant>,
}

#[derive(Default)]
struct Throttle {
    /// key → the instant from which the next caller is let through.
    next_allowed: HashMap<String, Instant>,
    /// key → calls counted in its window, and when the window ends.
    windows: HashMap<String, (u64, Instant)>,
    next_sweep: Option<Instant>,
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// the state consistent at each step, so a panic elsewhere while holding
/// the lock does not make the data unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn format_id(seq: u64) -> String {
    format!("{seq:020}")
}

/// Ids this backplane never issued (unparsable) match nothing.
fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

/// True when `next_sweep` has passed; schedules the following one.
fn sweep_due(next_sweep: &mut Option<Instant>, now: Instant) -> bool {
    match next_sweep {
        Some(at) if now < *at => false,
        _ => {
            *next_sweep = Some(now + SWEEP_INTERVAL);
            true
        }
    }
}

impl MemoryBackplane {
    pub fn new() -> Self {
        Self::default()
    }

    /// The dead letters of a partition, oldest first (for operators and
    /// tests; the Redis equivalent is the `dead` stream).
    pub fn dead_letters(&self, partition: u32) -> Vec<DeadLetter> {
        lock(&self.inner.streams)
            .get(&partition)
            .map(|p| p.dead.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes up to `max` undelivered entries, one partition at a time in
    /// turn so that a busy partition cannot starve the others.
    fn take_new(&self, partitions: &[u32], consumer: &str, max: usize) -> Vec<StreamEntry> {
        let mut streams = lock(&self.inner.streams);
        let now = Instant::now();
        let mut out = Vec::new();
        loop {
            let before = out.len();
            for &partition in partitions {
                if out.len() >= max {
                    return out;
                }
                let Some(stream) = streams.get_mut(&partition) else {
                    continue;
                };
                let Some((seq, payload)) = stream.undelivered.pop_front() else {
                    continue;
                };
                stream.pending.insert(
                    seq,
                    Pending {
                        payload: payload.clone(),
                        consumer: consumer.to_owned(),
                        delivered_at: now,
                        deliveries: 1,
                    },
                );
                out.push(StreamEntry {
                    partition,
                    id: format_id(seq),
                    payload,
                    deliveries: 1,
                });
            }
            if out.len() == before {
                return out;
            }
        }
    }

    #[cfg(test)]
    fn retained_entries(&self, partition: u32) -> usize {
        lock(&self.inner.streams)
            .get(&partition)
            .map_or(0, |p| p.undelivered.len() + p.pending.len())
    }

    #[cfg(test)]
    fn subscription_count(&self) -> usize {
        lock(&self.inner.pubsub)
            .channels
            .values()
            .map(HashMap::len)
            .sum()
    }
}

#[async_trait]
impl Backplane for MemoryBackplane {
    async fn append_command(&self, partition: u32, payload: Bytes) -> Result<(), BackplaneError> {
        {
            let mut streams = lock(&self.inner.streams);
            let stream = streams.entry(partition).or_default();
            stream.last_seq += 1;
            let seq = stream.last_seq;
            stream.undelivered.push_back((seq, payload));
        }
        self.inner.appended.notify_waiters();
        Ok(())
    }

    /// Cancel-safe: entries are taken only in a synchronous step that is
    /// immediately followed by the return, so dropping the future while it
    /// waits loses nothing. A zero `block` means "do not wait" and a zero
    /// `max` returns nothing at once.
    async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        if max == 0 || partitions.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + block;
        loop {
            // Registered before looking, so an append between the look and
            // the wait still wakes us.
            let appended = self.inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();

            let entries = self.take_new(partitions, consumer, max);
            if !entries.is_empty() {
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        let Some(stream) = streams.get_mut(&partition) else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let mut out = Vec::new();
        for (&seq, pending) in stream.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if now.saturating_duration_since(pending.delivered_at) < min_idle {
                continue;
            }
            pending.consumer = consumer.to_owned();
            pending.delivered_at = now;
            pending.deliveries = pending.deliveries.saturating_add(1);
            out.push(StreamEntry {
                partition,
                id: format_id(seq),
                payload: pending.payload.clone(),
                deliveries: pending.deliveries,
            });
        }
        Ok(out)
    }

    async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        if let Some(stream) = streams.get_mut(&partition) {
            // Like XACK, only delivered entries can be acked; acking an
            // unknown or undelivered id does nothing.
            for seq in ids.iter().filter_map(|id| parse_id(id)) {
                stream.pending.remove(&seq);
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        let stream = streams.entry(entry.partition).or_default();
        if let Some(seq) = parse_id(&entry.id) {
            stream.pending.remove(&seq);
        }
        if stream.dead.len() >= MAX_DEAD_LETTERS_PER_PARTITION {
            if let Some(dropped) = stream.dead.pop_front() {
                tracing::warn!(
                    partition = entry.partition,
                    id = %dropped.id,
                    "dead-letter list full, oldest dead letter dropped"
                );
            }
        }
        stream.dead.push_back(DeadLetter {
            partition: entry.partition,
            id: entry.id.clone(),
            payload: entry.payload.clone(),
            deliveries: entry.deliveries,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Acked entries are already gone; this only hands back memory the
    /// queue grew into during a burst.
    async fn trim(&self, partition: u32) -> Result<(), BackplaneError> {
        let mut streams = lock(&self.inner.streams);
        if let Some(stream) = streams.get_mut(&partition) {
            if stream.undelivered.capacity() > 64
                && stream.undelivered.capacity() > 4 * stream.undelivered.len()
            {
                stream.undelivered.shrink_to_fit();
            }
        }
        Ok(())
    }

    /// Acked entries are dropped at once, so the length is exactly the
    /// undelivered plus the pending ones.
    async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError> {
        let streams = lock(&self.inner.streams);
        Ok(streams
            .get(&partition)
            .map_or_else(StreamInfo::default, |stream| {
                let lag = stream.undelivered.len() as u64;
                let pending = stream.pending.len() as u64;
                StreamInfo {
                    length: lag + pending,
                    pending,
                    lag,
                }
            }))
    }

    async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError> {
        let mut leases = lock(&self.inner.leases);
        let now = Instant::now();
        // Like SET NX, a live lease refuses everyone, its own holder too:
        // holders extend with `renew_lease`.
        if leases
            .held
            .get(&partition)
            .is_some_and(|l| now < l.expires_at)
        {
            return Ok(None);
        }
        leases.last_token += 1;
        let token = leases.last_token;
        leases.held.insert(
            partition,
            HeldLease {
                holder: holder.to_owned(),
                token,
                expires_at: now + ttl,
            },
        );
        Ok(Some(Lease { partition, token }))
    }

    /// A lease past its expiry that nobody has taken yet is still renewed:
    /// no one else can have acted under it, so fencing is not at stake.
    async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError> {
        let mut leases = lock(&self.inner.leases);
        match leases.held.get_mut(&lease.partition) {
            Some(held) if held.token == lease.token && held.holder == holder => {
                held.expires_at = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, lease: Lease, holder: &str) -> Result<(), BackplaneError> {
        let mut leases = lock(&self.inner.leases);
        let ours = leases
            .held
            .get(&lease.partition)
            .is_some_and(|held| held.token == lease.token && held.holder == holder);
        if ours {
            leases.held.remove(&lease.partition);
        }
        Ok(())
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BackplaneError> {
        // Sending under the lock gives every subscriber the same order of
        // messages, whichever tasks published them.
        let mut pubsub = lock(&self.inner.pubsub);
        let Some(subscribers) = pubsub.channels.get_mut(channel) else {
            return Ok(());
        };
        subscribers.retain(|_, sender| {
            let event = SubscriptionEvent::Message(ChannelMessage {
                channel: channel.to_owned(),
                payload: payload.clone(),
            });
            // A failed send means the receiver was dropped: forget it.
            sender.send(event).is_ok()
        });
        if subscribers.is_empty() {
            pubsub.channels.remove(channel);
        }
        Ok(())
    }

    async fn subscriber(
        &self,
    ) -> Result<
        (
            Box<dyn Subscriber>,
            mpsc::UnboundedReceiver<SubscriptionEvent>,
        ),
        BackplaneError,
    > {
        let (sender, receiver) = mpsc::unbounded_channel();
        let subscriber = MemorySubscriber {
            id: self
                .inner
                .next_subscriber_id
                .fetch_add(1, Ordering::Relaxed),
            inner: Arc::clone(&self.inner),
            sender,
            channels: Mutex::new(HashSet::new()),
        };
        Ok((Box::new(subscriber), receiver))
    }

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
        let users: std::collections::BTreeSet<String> =
            members.keys().map(|(user, _)| user.clone()).collect();
        if members.is_empty() {
            presence.pools.remove(pool);
        }
        Ok(users.into_iter().collect())
    }

    async fn throttle(&self, key: &str, period: Duration) -> Result<bool, BackplaneError> {
        let mut throttle = lock(&self.inner.throttle);
        let now = Instant::now();
        if sweep_due(&mut throttle.next_sweep, now) {
            throttle.next_allowed.retain(|_, at| now < *at);
        }
        if throttle.next_allowed.get(key).is_some_and(|at| now < *at) {
            return Ok(false);
        }
        throttle.next_allowed.insert(key.to_owned(), now + period);
        Ok(true)
    }

    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, BackplaneError> {
        let mut throttle = lock(&self.inner.throttle);
        let now = Instant::now();
        if sweep_due(&mut throttle.next_sweep, now) {
            throttle.next_allowed.retain(|_, at| now < *at);
            throttle.windows.retain(|_, (_, ends)| now < *ends);
        }
        let entry = throttle
            .windows
            .entry(key.to_owned())
            .or_insert((0, now + window));
        if now >= entry.1 {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    async fn ping(&self) -> Result<(), BackplaneError> {
        Ok(())
    }
}

/// A pub/sub connection of the memory backplane: a registration of one
/// event queue under each subscribed channel.
struct MemorySubscriber {
    id: u64,
    inner: Arc<Inner>,
    sender: mpsc::UnboundedSender<SubscriptionEvent>,
    /// What to unregister on drop. Locked before `pubsub` whenever both are
    /// needed, so concurrent calls on one subscriber apply in order.
    channels: Mutex<HashSet<String>>,
}

#[async_trait]
impl Subscriber for MemorySubscriber {
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let mut channels = lock(&self.channels);
        channels.insert(channel.to_owned());
        // Inserted even if already listed: a publish may have dropped the
        // registration after the receiver closed. Keyed by subscriber id, so
        // subscribing twice still delivers once.
        lock(&self.inner.pubsub)
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(self.id, self.sender.clone());
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let mut channels = lock(&self.channels);
        channels.remove(channel);
        let mut pubsub = lock(&self.inner.pubsub);
        if let Some(subscribers) = pubsub.channels.get_mut(channel) {
            subscribers.remove(&self.id);
            if subscribers.is_empty() {
                pubsub.channels.remove(channel);
            }
        }
        Ok(())
    }
}

impl Drop for MemorySubscriber {
    fn drop(&mut self) {
        let channels = std::mem::take(&mut *lock(&self.channels));
        let mut pubsub = lock(&self.inner.pubsub);
        for channel in channels {
            if let Some(subscribers) = pubsub.channels.get_mut(&channel) {
                subscribers.remove(&self.id);
                if subscribers.is_empty() {
                    pubsub.channels.remove(&channel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        conformance::run_all(&MemoryBackplane::new()).await;
    }

    #[tokio::test]
    async fn clones_share_state() {
        let a = MemoryBackplane::new();
        let b = a.clone();
        a.append_command(1, Bytes::from_static(b"x")).await.unwrap();
        let read = b.read_new(&[1], "c", 10, Duration::ZERO).await.unwrap();
        assert_eq!(read.len(), 1);
    }

    #[tokio::test]
    async fn ids_sort_as_strings() {
        let backplane = MemoryBackplane::new();
        for _ in 0..12 {
            backplane.append_command(0, Bytes::new()).await.unwrap();
        }
        let ids: Vec<String> = backplane
            .read_new(&[0], "c", 100, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(ids.len(), 12);
    }

    #[tokio::test]
    async fn acked_entries_are_freed() {
        let backplane = MemoryBackplane::new();
        for _ in 0..100 {
            backplane.append_command(3, Bytes::new()).await.unwrap();
        }
        assert_eq!(backplane.retained_entries(3), 100);
        let read = backplane
            .read_new(&[3], "c", 1_000, Duration::ZERO)
            .await
            .unwrap();
        let ids: Vec<String> = read.into_iter().map(|e| e.id).collect();
        assert_eq!(backplane.retained_entries(3), 100);
        backplane.ack(3, &ids).await.unwrap();
        backplane.trim(3).await.unwrap();
        assert_eq!(backplane.retained_entries(3), 0);
    }

    #[tokio::test]
    async fn read_new_is_fair_across_partitions() {
        let backplane = MemoryBackplane::new();
        for _ in 0..10 {
            backplane.append_command(1, Bytes::new()).await.unwrap();
        }
        backplane.append_command(2, Bytes::new()).await.unwrap();
        let read = backplane
            .read_new(&[1, 2], "c", 4, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(read.len(), 4);
        assert!(read.iter().any(|e| e.partition == 2));
    }

    #[tokio::test]
    async fn concurrent_readers_never_share_an_entry() {
        let backplane = MemoryBackplane::new();
        let block = Duration::from_secs(5);
        let (a, b, ()) = tokio::join!(
            backplane.read_new(&[7], "a", 1, block),
            backplane.read_new(&[7], "b", 1, block),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                backplane
                    .append_command(7, Bytes::from_static(b"1"))
                    .await
                    .unwrap();
                backplane
                    .append_command(7, Bytes::from_static(b"2"))
                    .await
                    .unwrap();
            }
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 1);
        assert_ne!(a[0].id, b[0].id);
    }

    #[tokio::test(start_paused = true)]
    async fn read_new_times_out_on_paused_clock() {
        let backplane = MemoryBackplane::new();
        let start = Instant::now();
        let read = backplane
            .read_new(&[1], "c", 10, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(read.is_empty());
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn lease_expiry_on_paused_clock() {
        let backplane = MemoryBackplane::new();
        let ttl = Duration::from_secs(10);
        let first = backplane.acquire_lease(4, "a", ttl).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(backplane
            .acquire_lease(4, "b", ttl)
            .await
            .unwrap()
            .is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        // Expired but not taken: the holder may still renew.
        assert!(backplane.renew_lease(first, "a", ttl).await.unwrap());
        tokio::time::advance(Duration::from_secs(11)).await;
        let second = backplane.acquire_lease(4, "b", ttl).await.unwrap().unwrap();
        assert!(second.token > first.token);
        assert!(!backplane.renew_lease(first, "a", ttl).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn presence_and_throttle_on_paused_clock() {
        let backplane = MemoryBackplane::new();
        backplane
            .presence_heartbeat("p", "u", "i", Duration::from_secs(30))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(backplane.presence_count("p").await.unwrap(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(backplane.presence_count("p").await.unwrap(), 0);

        let second = Duration::from_secs(1);
        assert!(backplane.throttle("k", second).await.unwrap());
        assert!(!backplane.throttle("k", second).await.unwrap());
        tokio::time::advance(second).await;
        assert!(backplane.throttle("k", second).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_records_are_swept() {
        let backplane = MemoryBackplane::new();
        let short = Duration::from_secs(1);
        backplane
            .presence_heartbeat("gone", "u", "i", short)
            .await
            .unwrap();
        backplane.throttle("gone", short).await.unwrap();
        tokio::time::advance(SWEEP_INTERVAL + short).await;
        backplane
            .presence_heartbeat("other", "u", "i", short)
            .await
            .unwrap();
        backplane.throttle("other", short).await.unwrap();
        assert!(!lock(&backplane.inner.presence).pools.contains_key("gone"));
        assert!(!lock(&backplane.inner.throttle)
            .next_allowed
            .contains_key("gone"));
    }

    #[tokio::test]
    async fn dead_letters_are_kept_with_reason() {
        let backplane = MemoryBackplane::new();
        backplane
            .append_command(5, Bytes::from_static(b"poison"))
            .await
            .unwrap();
        let entry = backplane
            .read_new(&[5], "c", 1, Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        backplane.dead_letter(&entry, "undecodable").await.unwrap();
        let dead = backplane.dead_letters(5);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, entry.id);
        assert_eq!(dead[0].payload, Bytes::from_static(b"poison"));
        assert_eq!(dead[0].reason, "undecodable");
        assert_eq!(backplane.retained_entries(5), 0);
    }

    #[tokio::test]
    async fn dead_letters_are_bounded() {
        let backplane = MemoryBackplane::new();
        for n in 0..MAX_DEAD_LETTERS_PER_PARTITION + 5 {
            let entry = StreamEntry {
                partition: 6,
                id: format_id(n as u64 + 1),
                payload: Bytes::new(),
                deliveries: 1,
            };
            backplane.dead_letter(&entry, "x").await.unwrap();
        }
        let dead = backplane.dead_letters(6);
        assert_eq!(dead.len(), MAX_DEAD_LETTERS_PER_PARTITION);
        assert_eq!(dead[0].id, format_id(6));
    }

    #[tokio::test]
    async fn dropped_subscriber_is_unregistered() {
        let backplane = MemoryBackplane::new();
        let (subscriber, _receiver) = backplane.subscriber().await.unwrap();
        subscriber.subscribe("a").await.unwrap();
        subscriber.subscribe("b").await.unwrap();
        assert_eq!(backplane.subscription_count(), 2);
        drop(subscriber);
        assert_eq!(backplane.subscription_count(), 0);
    }

    #[tokio::test]
    async fn dropped_receiver_is_unregistered_on_publish() {
        let backplane = MemoryBackplane::new();
        let (subscriber, receiver) = backplane.subscriber().await.unwrap();
        subscriber.subscribe("a").await.unwrap();
        drop(receiver);
        backplane.publish("a", Bytes::new()).await.unwrap();
        assert_eq!(backplane.subscription_count(), 0);
        // The handle still works, and dropping it is harmless.
        subscriber.subscribe("a").await.unwrap();
        drop(subscriber);
        assert_eq!(backplane.subscription_count(), 0);
    }
}
