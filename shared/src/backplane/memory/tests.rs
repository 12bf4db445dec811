//! Tests of the in-process backplane: the conformance suite, one test per
//! check, and what only this implementation promises or can show (paused
//! time, memory handed back, registrations cleaned up, bounded dead
//! letters).

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::command_log::{format_id, MAX_DEAD_LETTERS_PER_PARTITION};
use super::{lock, MemoryBackplane, SWEEP_INTERVAL};
use crate::backplane::conformance::ReadWaits;
use crate::backplane::{conformance, CommandLog, Leases, Presence, PubSub, StreamEntry, Throttle};

/// A read of this backplane that is still pending after it was first
/// polled waits: it registers for appends before it looks for entries,
/// and the conformance check polls it before it asks.
struct PendingReadsWait;

#[async_trait]
impl ReadWaits for PendingReadsWait {
    async fn read_waits(&self) -> bool {
        true
    }
}

async fn open_for_check() -> (PendingReadsWait, MemoryBackplane) {
    (PendingReadsWait, MemoryBackplane::new())
}

conformance::tests_per_check!(open_for_check);

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

/// Both readers wait before anything is appended: a read pending after its
/// first poll is registered for appends.
#[tokio::test]
async fn concurrent_readers_never_share_an_entry() {
    let backplane = MemoryBackplane::new();
    let block = Duration::from_secs(5);
    let mut a = pin!(backplane.read_new(&[7], "a", 1, block));
    let mut b = pin!(backplane.read_new(&[7], "b", 1, block));
    std::future::poll_fn(|cx| {
        assert!(
            a.as_mut().poll(cx).is_pending(),
            "a returned with nothing appended"
        );
        assert!(
            b.as_mut().poll(cx).is_pending(),
            "b returned with nothing appended"
        );
        Poll::Ready(())
    })
    .await;
    backplane
        .append_command(7, Bytes::from_static(b"1"))
        .await
        .unwrap();
    backplane
        .append_command(7, Bytes::from_static(b"2"))
        .await
        .unwrap();
    let (a, b) = tokio::join!(a, b);
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
    let dead = backplane.dead_letters(5).await.unwrap();
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
    let dead = backplane.dead_letters(6).await.unwrap();
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
