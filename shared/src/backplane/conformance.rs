//! Conformance suite every backplane implementation must pass.
//!
//! Written once against `&dyn Backplane`, so the in-process and the Redis
//! backplanes are held to exactly the same behaviour. Every check works on
//! partitions, channels, pools and keys of its own, derived from a fresh
//! random value, so runs sharing one Redis server (or one backplane) do not
//! see each other's data.
//!
//! Durations are real and short (tens to hundreds of milliseconds). Where an
//! event can be awaited it is, under a timeout; sleeping is used only when
//! the passage of time is itself what is checked (expiry, idleness) or to
//! show that something does *not* arrive. What the seam does not show, that
//! a read is waiting for an append, each implementation's tests tell
//! through [`ReadWaits`].
//!
//! The checks panic on failure, like assertions in a test. `run_all` runs
//! every check; each is also public, and `tests_per_check!` declares one
//! test per check for an implementation, so a failure names the check.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep, timeout, Instant};

use super::{
    Backplane, BackplaneError, ChannelMessage, StreamEntry, StreamInfo, SubscriptionEvent,
};
use crate::testing::wait_until;

/// Upper bound for anything that should happen "promptly"; generous so a
/// loaded CI machine does not cause false failures.
const PROMPTLY: Duration = Duration::from_secs(5);

/// How long to wait before concluding that a message will not arrive.
const QUIET: Duration = Duration::from_millis(100);

/// Added to a duration that must have passed on the server before a check
/// looks: a server keeps times in whole milliseconds of its own clock.
pub(crate) const CLOCK_SLACK: Duration = Duration::from_millis(5);

/// Whether a read of the backplane under test is blocked, waiting for an
/// entry: the seam cannot say, and a check that must append only once a
/// read waits asks this (Redis: CLIENT LIST).
#[async_trait]
pub trait ReadWaits: Sync {
    async fn read_waits(&self) -> bool;
}

/// Runs every check in turn.
pub async fn run_all(backplane: &dyn Backplane, waits: &dyn ReadWaits) {
    run_checks(backplane, waits, BatchOrder::AcrossChannels).await;
}

/// Runs every check in turn on a backplane whose channels live on
/// different servers (a Redis Cluster): a batch keeps its order per
/// channel only.
pub async fn run_all_sharded(backplane: &dyn Backplane, waits: &dyn ReadWaits) {
    run_checks(backplane, waits, BatchOrder::PerChannel).await;
}

/// What order a published batch keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchOrder {
    /// As published, across all its channels (one server).
    AcrossChannels,
    /// As published within each channel.
    PerChannel,
}

async fn run_checks(backplane: &dyn Backplane, waits: &dyn ReadWaits, order: BatchOrder) {
    ping(backplane).await;
    append_read_ack(backplane).await;
    read_new_only_reads_given_partitions(backplane).await;
    read_new_times_out_when_empty(backplane).await;
    read_new_wakes_up_on_append(backplane, waits).await;
    claim_pending_after_min_idle(backplane).await;
    dead_letter_acks(backplane).await;
    dead_letters_read_back_oldest_first(backplane).await;
    trim_keeps_unprocessed_entries(backplane).await;
    stream_info_counts_the_backlog(backplane).await;
    lease_exclusive_and_renewable(backplane).await;
    lease_expiry_hands_over_with_larger_token(backplane).await;
    lease_release_frees_at_once(backplane).await;
    pubsub_subscribe_then_publish(backplane).await;
    pubsub_preserves_order(backplane).await;
    publish_batch_preserves_order_per_channel(backplane).await;
    if order == BatchOrder::AcrossChannels {
        publish_batch_preserves_order_across_channels(backplane).await;
    }
    pubsub_reaches_every_subscriber(backplane).await;
    pubsub_channels_are_isolated(backplane).await;
    pubsub_unsubscribe_stops_delivery(backplane).await;
    presence_counts_distinct_users(backplane).await;
    presence_expires(backplane).await;
    presence_lists_distinct_users(backplane).await;
    window_counts_restart_after_the_window(backplane).await;
    throttle_once_per_period(backplane).await;
}

/// Declares, in the calling module, one `#[tokio::test]` per check, each
/// on a backplane of its own. `$open` is an async fn giving a guard and
/// the backplane; the guard keeps what the backplane lives in (the keys of
/// a Redis prefix) until the check is done with it, and is the
/// [`ReadWaits`] of the checks that take one (listed first, between the
/// semicolons). Every check is listed, as in `run_all`, so a new check is
/// a test in every implementation.
#[cfg(test)]
macro_rules! tests_per_check {
    ($open:path) => {
        $crate::backplane::conformance::tests_per_check!(
            $open;
            read_new_wakes_up_on_append;
            ping,
            append_read_ack,
            read_new_only_reads_given_partitions,
            read_new_times_out_when_empty,
            claim_pending_after_min_idle,
            dead_letter_acks,
            dead_letters_read_back_oldest_first,
            trim_keeps_unprocessed_entries,
            stream_info_counts_the_backlog,
            lease_exclusive_and_renewable,
            lease_expiry_hands_over_with_larger_token,
            lease_release_frees_at_once,
            pubsub_subscribe_then_publish,
            pubsub_preserves_order,
            publish_batch_preserves_order_per_channel,
            publish_batch_preserves_order_across_channels,
            pubsub_reaches_every_subscriber,
            pubsub_channels_are_isolated,
            pubsub_unsubscribe_stops_delivery,
            presence_counts_distinct_users,
            presence_expires,
            presence_lists_distinct_users,
            window_counts_restart_after_the_window,
            throttle_once_per_period,
        );
    };
    ($open:path; $($observed:ident),*; $($check:ident),* $(,)?) => {
        mod conformance_checks {
            use super::*;
            $(
                #[tokio::test]
                async fn $observed() {
                    let (guard, backplane) = $open().await;
                    $crate::backplane::conformance::$observed(&backplane, &guard).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $check() {
                    let (_guard, backplane) = $open().await;
                    $crate::backplane::conformance::$check(&backplane).await;
                }
            )*
        }
    };
}

#[cfg(test)]
pub(crate) use tests_per_check;

/// A namespace of names and partitions no other check or run uses.
struct Scope {
    tag: String,
    partition_base: u32,
}

impl Scope {
    fn new() -> Self {
        let random = uuid::Uuid::new_v4();
        // Partition numbers are spread over most of the u32 range, leaving
        // room for a handful of consecutive ones per check.
        let partition_base = (random.as_u128() % 4_000_000_000) as u32;
        Scope {
            tag: random.simple().to_string(),
            partition_base,
        }
    }

    fn partition(&self, n: u32) -> u32 {
        self.partition_base + n
    }

    fn name(&self, label: &str) -> String {
        format!("conformance:{}:{label}", self.tag)
    }
}

/// Stream ids compared as the numbers they stand for: `<ms>-<n>` (Redis)
/// or a plain counter.
fn id_order(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("stream id {id:?} is not a number or <ms>-<n>"),
    }
}

fn ids(entries: &[StreamEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

fn payloads(entries: &[StreamEntry]) -> Vec<Bytes> {
    entries.iter().map(|e| e.payload.clone()).collect()
}

async fn append(backplane: &dyn Backplane, partition: u32, payload: &str) {
    backplane
        .append_command(partition, Bytes::from(payload.to_owned()))
        .await
        .expect("append_command");
}

async fn read_now(
    backplane: &dyn Backplane,
    partitions: &[u32],
    consumer: &str,
) -> Vec<StreamEntry> {
    backplane
        .read_new(partitions, consumer, 100, Duration::from_millis(10))
        .await
        .expect("read_new")
}

async fn claim(
    backplane: &dyn Backplane,
    partition: u32,
    consumer: &str,
    min_idle: Duration,
) -> Vec<StreamEntry> {
    backplane
        .claim_pending(partition, consumer, min_idle, 100)
        .await
        .expect("claim_pending")
}

async fn next_message(receiver: &mut UnboundedReceiver<SubscriptionEvent>) -> ChannelMessage {
    loop {
        match timeout(PROMPTLY, receiver.recv()).await {
            Ok(Some(SubscriptionEvent::Message(message))) => return message,
            // A reconnect notice is not a message; keep waiting.
            Ok(Some(SubscriptionEvent::Resubscribed)) => continue,
            Ok(None) => panic!("subscription closed while a message was expected"),
            Err(_) => panic!("no message within {PROMPTLY:?}"),
        }
    }
}

/// Polls `future` once: its output if it is done already, `None` if it
/// waits.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Asserts nothing but reconnect notices arrives within `QUIET`.
async fn assert_quiet(receiver: &mut UnboundedReceiver<SubscriptionEvent>) {
    let deadline = Instant::now() + QUIET;
    loop {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Err(_) => return,
            Ok(Some(SubscriptionEvent::Resubscribed)) => continue,
            Ok(Some(SubscriptionEvent::Message(message))) => {
                panic!("unexpected message {message:?}")
            }
            Ok(None) => return,
        }
    }
}

pub async fn ping(backplane: &dyn Backplane) {
    backplane.ping().await.expect("ping");
}

/// Entries come back in append order with increasing ids, once, and are
/// never delivered again after an ack.
pub async fn append_read_ack(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    for n in 0..5 {
        append(backplane, p, &format!("cmd-{n}")).await;
    }

    let first = backplane
        .read_new(&[p], "consumer-a", 3, Duration::from_millis(10))
        .await
        .expect("read_new");
    assert_eq!(first.len(), 3, "read_new must honour max");
    let rest = read_now(backplane, &[p], "consumer-a").await;
    assert_eq!(rest.len(), 2);

    let all: Vec<StreamEntry> = first.into_iter().chain(rest).collect();
    let expected: Vec<Bytes> = (0..5).map(|n| Bytes::from(format!("cmd-{n}"))).collect();
    assert_eq!(
        payloads(&all),
        expected,
        "entries must come in append order"
    );
    for entry in &all {
        assert_eq!(entry.partition, p);
        assert_eq!(entry.deliveries, 1, "first delivery counts as 1");
    }
    for pair in all.windows(2) {
        assert!(
            id_order(&pair[0].id) < id_order(&pair[1].id),
            "ids must increase: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }

    // Delivered entries are pending, not new: another reader gets nothing.
    assert!(read_now(backplane, &[p], "consumer-b").await.is_empty());

    backplane.ack(p, &ids(&all)).await.expect("ack");
    assert!(read_now(backplane, &[p], "consumer-a").await.is_empty());
    assert!(
        claim(backplane, p, "consumer-b", Duration::ZERO)
            .await
            .is_empty(),
        "acked entries must not be claimable"
    );

    // Acking again, or acking ids never issued, is harmless.
    backplane.ack(p, &ids(&all)).await.expect("repeated ack");
}

pub async fn read_new_only_reads_given_partitions(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (p1, p2, p3) = (scope.partition(0), scope.partition(1), scope.partition(2));
    append(backplane, p1, "one").await;
    append(backplane, p2, "two").await;

    let read = read_now(backplane, &[p1, p3], "c").await;
    assert_eq!(payloads(&read), vec![Bytes::from("one")]);
    assert_eq!(read[0].partition, p1);

    let read = read_now(backplane, &[p2], "c").await;
    assert_eq!(payloads(&read), vec![Bytes::from("two")]);
    assert_eq!(read[0].partition, p2);

    backplane.ack(p1, &[]).await.expect("empty ack");
}

pub async fn read_new_times_out_when_empty(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let block = Duration::from_millis(100);
    let start = Instant::now();
    let read = backplane
        .read_new(&[scope.partition(0)], "c", 10, block)
        .await
        .expect("read_new");
    let waited = start.elapsed();
    assert!(read.is_empty());
    assert!(
        waited >= block - Duration::from_millis(10),
        "read_new returned after {waited:?}, before its block of {block:?}"
    );
    assert!(waited < PROMPTLY, "read_new blocked for {waited:?}");
}

/// A reader blocked on several partitions wakes up as soon as one of them
/// gets an entry, well before its block time.
pub async fn read_new_wakes_up_on_append(backplane: &dyn Backplane, waits: &dyn ReadWaits) {
    let scope = Scope::new();
    let (p1, p2) = (scope.partition(0), scope.partition(1));
    let block = PROMPTLY * 2;

    let partitions = [p1, p2];
    let mut read = backplane.read_new(&partitions, "c", 10, block);
    assert!(
        poll_once(&mut read).await.is_none(),
        "read_new returned before anything was appended"
    );
    let (read, appended) = tokio::join!(async { (read.await, Instant::now()) }, async {
        wait_until(PROMPTLY, "a read waits for entries", || waits.read_waits()).await;
        append(backplane, p2, "late").await;
        Instant::now()
    });
    let (read, returned) = read;
    let read = read.expect("read_new");
    assert_eq!(payloads(&read), vec![Bytes::from("late")]);
    assert_eq!(read[0].partition, p2);
    let waited = returned.saturating_duration_since(appended);
    assert!(
        waited < PROMPTLY,
        "read_new took {waited:?} to notice an append"
    );
}

/// An entry nobody acks can be taken over by another consumer once it has
/// been idle long enough, not before; each takeover counts a delivery.
pub async fn claim_pending_after_min_idle(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    let min_idle = Duration::from_millis(200);
    append(backplane, p, "first").await;
    append(backplane, p, "second").await;

    let read = read_now(backplane, &[p], "crashed").await;
    assert_eq!(read.len(), 2);

    assert!(
        claim(backplane, p, "rescuer", min_idle).await.is_empty(),
        "entries must not be claimable before min_idle"
    );
    assert!(
        claim(backplane, scope.partition(1), "rescuer", Duration::ZERO)
            .await
            .is_empty(),
        "claiming an unused partition yields nothing"
    );

    // Time passing is what is checked: the entries become claimable.
    sleep(min_idle + CLOCK_SLACK).await;
    let claimed = claim(backplane, p, "rescuer", min_idle).await;
    assert_eq!(ids(&claimed), ids(&read), "oldest first, same ids");
    assert_eq!(payloads(&claimed), payloads(&read));
    for entry in &claimed {
        assert_eq!(entry.deliveries, 2);
        assert_eq!(entry.partition, p);
    }

    // A claim restarts the idle time.
    assert!(claim(backplane, p, "third", min_idle).await.is_empty());

    // `max` is honoured, and a zero min_idle takes over at once.
    let one = backplane
        .claim_pending(p, "third", Duration::ZERO, 1)
        .await
        .expect("claim_pending");
    assert_eq!(ids(&one), vec![read[0].id.clone()]);
    assert_eq!(one[0].deliveries, 3);

    // Claimed entries are still not "new".
    assert!(read_now(backplane, &[p], "other").await.is_empty());

    backplane.ack(p, &ids(&read)).await.expect("ack");
    assert!(claim(backplane, p, "rescuer", Duration::ZERO)
        .await
        .is_empty());
}

pub async fn dead_letter_acks(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    append(backplane, p, "poison").await;
    append(backplane, p, "fine").await;
    let read = read_now(backplane, &[p], "c").await;
    assert_eq!(read.len(), 2);

    backplane
        .dead_letter(&read[0], "cannot decode")
        .await
        .expect("dead_letter");
    let pending = claim(backplane, p, "c", Duration::ZERO).await;
    assert_eq!(
        ids(&pending),
        vec![read[1].id.clone()],
        "a dead-lettered entry is acked; the other one stays pending"
    );
    assert!(read_now(backplane, &[p], "c").await.is_empty());
    backplane.ack(p, &[read[1].id.clone()]).await.expect("ack");
}

/// Dead letters are read back per partition, oldest first, with what the
/// entry was and why it was set aside; a partition without any has none.
pub async fn dead_letters_read_back_oldest_first(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    assert!(backplane
        .dead_letters(p)
        .await
        .expect("dead_letters")
        .is_empty());

    append(backplane, p, "first").await;
    append(backplane, p, "second").await;
    let read = read_now(backplane, &[p], "c").await;
    assert_eq!(read.len(), 2);
    backplane
        .dead_letter(&read[0], "cannot decode")
        .await
        .expect("dead_letter");
    backplane
        .dead_letter(&read[1], "refused")
        .await
        .expect("dead_letter");

    let dead = backplane.dead_letters(p).await.expect("dead_letters");
    let expected = [
        (&read[0], "first", "cannot decode"),
        (&read[1], "second", "refused"),
    ];
    assert_eq!(dead.len(), expected.len(), "{dead:?}");
    for (letter, (entry, payload, reason)) in dead.iter().zip(expected) {
        assert_eq!(letter.partition, p);
        assert_eq!(letter.id, entry.id);
        assert_eq!(letter.payload, Bytes::from(payload));
        assert_eq!(letter.deliveries, 1);
        assert_eq!(letter.reason, reason);
    }
    assert!(
        backplane
            .dead_letters(scope.partition(1))
            .await
            .expect("dead_letters")
            .is_empty(),
        "dead letters belong to their partition"
    );
}

/// Trimming never loses work: undelivered and pending entries survive it.
pub async fn trim_keeps_unprocessed_entries(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    for n in 0..3 {
        append(backplane, p, &format!("old-{n}")).await;
    }
    let read = read_now(backplane, &[p], "c").await;
    assert_eq!(read.len(), 3);
    backplane.ack(p, &[read[0].id.clone()]).await.expect("ack");
    append(backplane, p, "new").await;

    backplane.trim(p).await.expect("trim");
    backplane
        .trim(scope.partition(1))
        .await
        .expect("trim of an unused partition");

    let pending = claim(backplane, p, "c", Duration::ZERO).await;
    assert_eq!(ids(&pending), ids(&read[1..]));
    let fresh = read_now(backplane, &[p], "c").await;
    assert_eq!(payloads(&fresh), vec![Bytes::from("new")]);
    assert!(id_order(&fresh[0].id) > id_order(&read[2].id));
}

async fn info(backplane: &dyn Backplane, partition: u32) -> StreamInfo {
    backplane.stream_info(partition).await.expect("stream_info")
}

/// The backlog a monitor sees: undelivered entries are lag, delivered and
/// unacked ones are pending, and acking or reading moves them along. The
/// length counts at least both (a stream may keep processed entries until
/// it is trimmed) and never more than was appended.
pub async fn stream_info_counts_the_backlog(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    assert_eq!(
        info(backplane, p).await,
        StreamInfo::default(),
        "an unused partition has no backlog"
    );
    for n in 0..3 {
        append(backplane, p, &format!("b-{n}")).await;
    }
    let appended = info(backplane, p).await;
    assert_eq!((appended.lag, appended.pending), (3, 0), "{appended:?}");
    assert_eq!(appended.length, 3);

    let read = backplane
        .read_new(&[p], "c", 2, Duration::from_millis(10))
        .await
        .expect("read_new");
    assert_eq!(read.len(), 2);
    backplane.ack(p, &[read[0].id.clone()]).await.expect("ack");
    let partly = info(backplane, p).await;
    assert_eq!((partly.lag, partly.pending), (1, 1), "{partly:?}");
    assert!((2..=3).contains(&partly.length), "{partly:?}");

    let rest = read_now(backplane, &[p], "c").await;
    let mut all = ids(&read);
    all.extend(ids(&rest));
    backplane.ack(p, &all).await.expect("ack");
    let done = info(backplane, p).await;
    assert_eq!((done.lag, done.pending), (0, 0), "{done:?}");
    assert!(done.length <= 3, "{done:?}");
}

pub async fn lease_exclusive_and_renewable(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (p, other) = (scope.partition(0), scope.partition(1));
    let ttl = Duration::from_millis(300);

    let lease = backplane
        .acquire_lease(p, "worker-a", ttl)
        .await
        .expect("acquire_lease")
        .expect("a free partition can be leased");
    assert_eq!(lease.partition, p);
    assert!(
        backplane
            .acquire_lease(p, "worker-b", ttl)
            .await
            .expect("acquire_lease")
            .is_none(),
        "a held lease is exclusive"
    );
    assert!(
        backplane
            .acquire_lease(other, "worker-b", ttl)
            .await
            .expect("acquire_lease")
            .is_some(),
        "leases are per partition"
    );

    // Renewing before expiry pushes the expiry out.
    assert!(backplane
        .renew_lease(lease, "worker-a", Duration::from_millis(600))
        .await
        .expect("renew_lease"));
    // Time passing is what is checked: the first ttl runs out.
    sleep(ttl + CLOCK_SLACK).await;
    assert!(
        backplane
            .acquire_lease(p, "worker-b", ttl)
            .await
            .expect("acquire_lease")
            .is_none(),
        "a renewed lease outlives its first ttl"
    );

    // Only the holder, with its token, can renew.
    assert!(!backplane
        .renew_lease(lease, "worker-b", ttl)
        .await
        .expect("renew_lease"));
    let forged = super::Lease {
        partition: p,
        token: lease.token.wrapping_add(1),
    };
    assert!(!backplane
        .renew_lease(forged, "worker-a", ttl)
        .await
        .expect("renew_lease"));

    backplane
        .release_lease(lease, "worker-a")
        .await
        .expect("release_lease");
}

/// Once a lease expires another holder gets it with a strictly larger
/// token, and the previous holder can neither renew nor release it.
pub async fn lease_expiry_hands_over_with_larger_token(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    let ttl = Duration::from_millis(100);

    let old = backplane
        .acquire_lease(p, "worker-a", ttl)
        .await
        .expect("acquire_lease")
        .expect("free partition");
    // Time passing is what is checked: the lease expires.
    sleep(ttl + CLOCK_SLACK).await;

    let new = backplane
        .acquire_lease(p, "worker-b", Duration::from_secs(10))
        .await
        .expect("acquire_lease")
        .expect("an expired lease can be taken");
    assert!(
        new.token > old.token,
        "fencing token must grow: {} then {}",
        old.token,
        new.token
    );

    assert!(
        !backplane
            .renew_lease(old, "worker-a", ttl)
            .await
            .expect("renew_lease"),
        "a stale holder must not renew"
    );
    backplane
        .release_lease(old, "worker-a")
        .await
        .expect("stale release");
    assert!(
        backplane
            .acquire_lease(p, "worker-c", ttl)
            .await
            .expect("acquire_lease")
            .is_none(),
        "a stale release must not free the new holder's lease"
    );
    assert!(backplane
        .renew_lease(new, "worker-b", Duration::from_secs(10))
        .await
        .expect("renew_lease"));

    backplane
        .release_lease(new, "worker-b")
        .await
        .expect("release_lease");
}

pub async fn lease_release_frees_at_once(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let p = scope.partition(0);
    let long = Duration::from_secs(30);

    let first = backplane
        .acquire_lease(p, "worker-a", long)
        .await
        .expect("acquire_lease")
        .expect("free partition");
    backplane
        .release_lease(first, "worker-a")
        .await
        .expect("release_lease");
    let second = backplane
        .acquire_lease(p, "worker-b", long)
        .await
        .expect("acquire_lease")
        .expect("a released lease is free at once");
    assert!(second.token > first.token);
    assert!(!backplane
        .renew_lease(first, "worker-a", long)
        .await
        .expect("renew_lease"));
    backplane
        .release_lease(second, "worker-b")
        .await
        .expect("release_lease");
}

pub async fn pubsub_subscribe_then_publish(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let channel = scope.name("session");
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");
    // Subscribing twice must not double deliveries.
    subscriber
        .subscribe(&channel)
        .await
        .expect("subscribe again");

    backplane
        .publish(&channel, Bytes::from_static(b"hello"))
        .await
        .expect("publish");
    let message = next_message(&mut events).await;
    assert_eq!(message.channel, channel);
    assert_eq!(message.payload, Bytes::from_static(b"hello"));
    assert_quiet(&mut events).await;

    // Publishing where nobody listens is fine.
    backplane
        .publish(&scope.name("nobody"), Bytes::new())
        .await
        .expect("publish without subscribers");
}

pub async fn pubsub_preserves_order(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let channel = scope.name("ordered");
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");

    for n in 0..100 {
        backplane
            .publish(&channel, Bytes::from(format!("{n}")))
            .await
            .expect("publish");
    }
    for n in 0..100 {
        let message = next_message(&mut events).await;
        assert_eq!(message.payload, Bytes::from(format!("{n}")));
    }
}

/// Each channel of a batch receives its messages in the order given, and
/// every one of them: what every backplane keeps, a sharded one included.
pub async fn publish_batch_preserves_order_per_channel(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let channels: Vec<String> = (0..4).map(|n| scope.name(&format!("ch{n}"))).collect();
    let (subscriber, mut received) = backplane.subscriber().await.expect("subscriber");
    for channel in &channels {
        subscriber.subscribe(channel).await.expect("subscribe");
    }
    let batch: Vec<(String, Bytes)> = (0..80)
        .map(|n| (channels[n % 4].clone(), Bytes::from(format!("{n}"))))
        .collect();
    backplane
        .publish_batch(&batch)
        .await
        .expect("publish batch");
    let mut per_channel: std::collections::HashMap<String, Vec<Bytes>> = Default::default();
    for _ in 0..batch.len() {
        let message = next_message(&mut received).await;
        per_channel
            .entry(message.channel)
            .or_default()
            .push(message.payload);
    }
    for channel in &channels {
        let sent: Vec<Bytes> = batch
            .iter()
            .filter(|(to, _)| to == channel)
            .map(|(_, payload)| payload.clone())
            .collect();
        assert_eq!(per_channel.get(channel), Some(&sent), "order on {channel}");
    }
}

/// A batch spanning two channels arrives in the order given, interleaved
/// as published, on a backplane that runs on one server: the worker puts
/// a reply before its own events, so that a sender's ack comes first
/// where both reach one connection (on a Redis Cluster a sender's joined
/// socket gets the reply inside its event instead).
pub async fn publish_batch_preserves_order_across_channels(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let replies = scope.name("replies");
    let events = scope.name("events");
    let (subscriber, mut received) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&replies).await.expect("subscribe");
    subscriber.subscribe(&events).await.expect("subscribe");

    let batch: Vec<(String, Bytes)> = (0..60)
        .map(|n| {
            let channel = if n % 2 == 0 { &replies } else { &events };
            (channel.clone(), Bytes::from(format!("{n}")))
        })
        .collect();
    backplane
        .publish_batch(&batch)
        .await
        .expect("publish batch");
    backplane.publish_batch(&[]).await.expect("empty batch");
    for (channel, payload) in &batch {
        let message = next_message(&mut received).await;
        assert_eq!(&message.channel, channel);
        assert_eq!(&message.payload, payload);
    }
}

pub async fn pubsub_reaches_every_subscriber(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let channel = scope.name("pool");
    let (first, mut first_events) = backplane.subscriber().await.expect("subscriber");
    let (second, mut second_events) = backplane.subscriber().await.expect("subscriber");
    first.subscribe(&channel).await.expect("subscribe");
    second.subscribe(&channel).await.expect("subscribe");

    backplane
        .publish(&channel, Bytes::from_static(b"all"))
        .await
        .expect("publish");
    for events in [&mut first_events, &mut second_events] {
        let message = next_message(events).await;
        assert_eq!(message.channel, channel);
        assert_eq!(message.payload, Bytes::from_static(b"all"));
    }
}

/// One connection receives the messages of all its channels, tagged with
/// the channel, and nothing of channels it did not subscribe to.
pub async fn pubsub_channels_are_isolated(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (a, b, c) = (scope.name("a"), scope.name("b"), scope.name("c"));
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&a).await.expect("subscribe");
    subscriber.subscribe(&b).await.expect("subscribe");

    backplane
        .publish(&c, Bytes::from_static(b"not for us"))
        .await
        .expect("publish");
    backplane
        .publish(&a, Bytes::from_static(b"to a"))
        .await
        .expect("publish");
    backplane
        .publish(&b, Bytes::from_static(b"to b"))
        .await
        .expect("publish");

    // In either order: channels on different servers (a Redis Cluster)
    // reach the subscriber over different connections.
    let mut received = Vec::new();
    for _ in 0..2 {
        let message = next_message(&mut events).await;
        received.push((message.channel, message.payload));
    }
    received.sort();
    assert_eq!(
        received,
        vec![
            (a.clone(), Bytes::from_static(b"to a")),
            (b.clone(), Bytes::from_static(b"to b")),
        ]
    );
    assert_quiet(&mut events).await;
}

pub async fn pubsub_unsubscribe_stops_delivery(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (left, kept) = (scope.name("left"), scope.name("kept"));
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&left).await.expect("subscribe");
    subscriber.subscribe(&kept).await.expect("subscribe");
    subscriber.unsubscribe(&left).await.expect("unsubscribe");

    backplane
        .publish(&left, Bytes::from_static(b"gone"))
        .await
        .expect("publish");
    backplane
        .publish(&kept, Bytes::from_static(b"marker"))
        .await
        .expect("publish");
    let message = next_message(&mut events).await;
    assert_eq!(message.channel, kept, "unsubscribed channel was delivered");
    assert_quiet(&mut events).await;

    // Subscribing again works.
    subscriber.subscribe(&left).await.expect("subscribe");
    backplane
        .publish(&left, Bytes::from_static(b"back"))
        .await
        .expect("publish");
    let message = next_message(&mut events).await;
    assert_eq!(message.channel, left);
    assert_eq!(message.payload, Bytes::from_static(b"back"));

    // Unsubscribing from a channel never subscribed is harmless.
    subscriber
        .unsubscribe(&scope.name("never"))
        .await
        .expect("unsubscribe");
}

/// A user present through two gateways counts once, and stays present
/// until the last of them goes.
pub async fn presence_counts_distinct_users(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (pool, other_pool) = (scope.name("pool"), scope.name("other"));
    let ttl = Duration::from_secs(30);

    assert_eq!(backplane.presence_count(&pool).await.expect("count"), 0);
    backplane
        .presence_heartbeat(&pool, "agent-1", "gw-1", ttl)
        .await
        .expect("heartbeat");
    backplane
        .presence_heartbeat(&pool, "agent-1", "gw-2", ttl)
        .await
        .expect("heartbeat");
    backplane
        .presence_heartbeat(&pool, "agent-2", "gw-1", ttl)
        .await
        .expect("heartbeat");
    // A repeated heartbeat is not a new presence.
    backplane
        .presence_heartbeat(&pool, "agent-2", "gw-1", ttl)
        .await
        .expect("heartbeat");
    assert_eq!(backplane.presence_count(&pool).await.expect("count"), 2);
    assert_eq!(
        backplane.presence_count(&other_pool).await.expect("count"),
        0,
        "pools are separate"
    );

    backplane
        .presence_remove(&pool, "agent-1", "gw-1")
        .await
        .expect("remove");
    assert_eq!(
        backplane.presence_count(&pool).await.expect("count"),
        2,
        "agent-1 is still present through gw-2"
    );
    backplane
        .presence_remove(&pool, "agent-1", "gw-2")
        .await
        .expect("remove");
    assert_eq!(backplane.presence_count(&pool).await.expect("count"), 1);
    backplane
        .presence_remove(&pool, "agent-2", "gw-1")
        .await
        .expect("remove");
    assert_eq!(backplane.presence_count(&pool).await.expect("count"), 0);
    backplane
        .presence_remove(&pool, "agent-2", "gw-1")
        .await
        .expect("removing twice is harmless");
}

pub async fn presence_expires(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let pool = scope.name("pool");
    let ttl = Duration::from_millis(1_000);
    let count = || async { backplane.presence_count(&pool).await.expect("count") };

    let first_beat = Instant::now();
    backplane
        .presence_heartbeat(&pool, "short", "gw-1", ttl)
        .await
        .expect("heartbeat");
    backplane
        .presence_heartbeat(&pool, "refreshed", "gw-1", ttl)
        .await
        .expect("heartbeat");
    // Time passing is what is checked: the two users' expiries come apart.
    sleep(ttl / 2).await;
    let refreshed_beat = Instant::now();
    backplane
        .presence_heartbeat(&pool, "refreshed", "gw-1", ttl)
        .await
        .expect("heartbeat");
    let both = count().await;
    // What the server may answer depends on how long the calls took on a
    // busy machine; each claim is checked only where its time bound held,
    // with room for a server that keeps expiries in whole milliseconds of
    // its own clock.
    let slack = Duration::from_millis(10);
    if first_beat.elapsed() + slack < ttl {
        assert_eq!(both, 2, "neither heartbeat has expired yet");
    }

    // "short" goes at one ttl, "refreshed" half a ttl later.
    wait_until(10 * ttl, "\"short\" expires", || async {
        count().await <= 1
    })
    .await;
    let users = backplane.presence_users(&pool).await.expect("users");
    if refreshed_beat.elapsed() + slack < ttl {
        assert_eq!(
            users,
            vec!["refreshed".to_owned()],
            "expired users are not listed, the refreshed one is"
        );
    }
    assert!(
        !users.contains(&"short".to_owned()),
        "an expired user is not listed"
    );

    wait_until(10 * ttl, "\"refreshed\" expires", || async {
        count().await == 0
    })
    .await;
    assert!(
        refreshed_beat.elapsed() + slack >= ttl,
        "the refreshed heartbeat expired early"
    );
}

/// The users behind the count: each once however many gateways carry
/// them, sorted, per pool, until the last of their gateways goes.
pub async fn presence_lists_distinct_users(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (pool, other_pool) = (scope.name("pool"), scope.name("other"));
    let ttl = Duration::from_secs(30);
    let users = |list: Result<Vec<String>, BackplaneError>| list.expect("users");

    assert_eq!(
        users(backplane.presence_users(&pool).await),
        Vec::<String>::new()
    );
    for (user, instance) in [("bob", "gw-1"), ("ann", "gw-1"), ("ann", "gw-2")] {
        backplane
            .presence_heartbeat(&pool, user, instance, ttl)
            .await
            .expect("heartbeat");
    }
    assert_eq!(
        users(backplane.presence_users(&pool).await),
        vec!["ann".to_owned(), "bob".to_owned()]
    );
    assert_eq!(
        users(backplane.presence_users(&other_pool).await),
        Vec::<String>::new(),
        "pools are separate"
    );
    backplane
        .presence_remove(&pool, "ann", "gw-1")
        .await
        .expect("remove");
    assert_eq!(
        users(backplane.presence_users(&pool).await),
        vec!["ann".to_owned(), "bob".to_owned()],
        "ann is still present through gw-2"
    );
    backplane
        .presence_remove(&pool, "ann", "gw-2")
        .await
        .expect("remove");
    assert_eq!(
        users(backplane.presence_users(&pool).await),
        vec!["bob".to_owned()]
    );
}

pub async fn window_counts_restart_after_the_window(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (key, other) = (scope.name("rate"), scope.name("rate-other"));
    let window = Duration::from_millis(200);
    for expected in 1..=3 {
        let count = backplane
            .count_in_window(&key, window)
            .await
            .expect("count");
        assert_eq!(count, expected);
    }
    assert_eq!(
        backplane
            .count_in_window(&other, window)
            .await
            .expect("count"),
        1,
        "keys are separate"
    );
    // Time passing is what is checked: the window ends.
    sleep(window + CLOCK_SLACK).await;
    assert_eq!(
        backplane
            .count_in_window(&key, window)
            .await
            .expect("count"),
        1
    );
}

pub async fn throttle_once_per_period(backplane: &dyn Backplane) {
    let scope = Scope::new();
    let (key, other) = (scope.name("stats"), scope.name("other"));
    let period = Duration::from_millis(200);

    assert!(backplane.throttle(&key, period).await.expect("throttle"));
    assert!(!backplane.throttle(&key, period).await.expect("throttle"));
    assert!(!backplane.throttle(&key, period).await.expect("throttle"));
    assert!(
        backplane.throttle(&other, period).await.expect("throttle"),
        "keys are separate"
    );

    // Time passing is what is checked: the period ends.
    sleep(period + CLOCK_SLACK).await;
    assert!(backplane.throttle(&key, period).await.expect("throttle"));
    assert!(!backplane.throttle(&key, period).await.expect("throttle"));
}
