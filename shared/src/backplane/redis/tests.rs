//! Tests against real Redis servers: the conformance suite, and what only a
//! networked backplane can show (a blocking read on its own connection,
//! trimming, the dead-letter stream, fencing tokens, a server restart).
//!
//! They use `REDIS_URL` (default `redis://127.0.0.1:6379`) under a prefix
//! unique to the run and delete the keys under it when done, even when a
//! check fails; nothing else on that server is touched. The restart test
//! starts, kills and restarts a throwaway `redis-server` of its own.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{timeout, Instant};

use super::{RedisBackplane, RedisOptions};
use crate::backplane::conformance::{ReadWaits, CLOCK_SLACK};
use crate::backplane::{
    conformance, Backplane, CommandLog, Leases, Presence, PubSub, StreamEntry, SubscriptionEvent,
};
use crate::config::TrustedRoots;
use crate::names::Names;
use crate::testing::{self, free_port, wait_until, TestCertificates, ThrowawayRedis};

const PROMPTLY: Duration = Duration::from_secs(5);

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A backplane under a fresh prefix, whose keys go when it is dropped.
struct Scoped {
    backplane: RedisBackplane,
    url: String,
}

impl std::ops::Deref for Scoped {
    type Target = RedisBackplane;
    fn deref(&self) -> &RedisBackplane {
        &self.backplane
    }
}

async fn scoped(options: RedisOptions) -> Scoped {
    let url = redis_url();
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let backplane = RedisBackplane::connect(&url, Names::new(prefix), options)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"));
    Scoped { backplane, url }
}

impl Drop for Scoped {
    /// Deletes the run's keys on a runtime of its own, so it also happens
    /// while a failed check unwinds.
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}:*", self.backplane.names().prefix());
        let scan = pattern.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for cleanup");
            runtime.block_on(async move {
                let backplane =
                    RedisBackplane::connect(&url, Names::default(), RedisOptions::default())
                        .await
                        .expect("connect for cleanup");
                delete_matching(&backplane, &scan).await;
            });
        });
        if cleanup.join().is_err() {
            eprintln!("cleanup of {pattern} failed");
        }
    }
}

/// SCAN MATCH + DEL: only keys under the run's own prefix.
async fn delete_matching(backplane: &RedisBackplane, pattern: &str) {
    testing::delete_matching(backplane.inner.pool.next(), pattern)
        .await
        .expect("SCAN and DEL");
}

fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

async fn raw(backplane: &RedisBackplane, name: &'static str, args: Vec<String>) -> Value {
    backplane
        .inner
        .pool
        .next()
        .custom(command(name), args)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn stream_len(backplane: &RedisBackplane, key: String) -> u64 {
    raw(backplane, "XLEN", vec![key])
        .await
        .as_u64()
        .expect("XLEN is a number")
}

async fn append(backplane: &dyn Backplane, partition: u32, payload: &str) {
    backplane
        .append_command(partition, Bytes::from(payload.to_owned()))
        .await
        .expect("append_command");
}

async fn read(backplane: &dyn Backplane, partitions: &[u32], max: usize) -> Vec<StreamEntry> {
    backplane
        .read_new(partitions, "reader", max, Duration::from_millis(10))
        .await
        .expect("read_new")
}

fn ids(entries: &[StreamEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

fn payloads(entries: &[StreamEntry]) -> Vec<Bytes> {
    entries.iter().map(|e| e.payload.clone()).collect()
}

/// Which of a backplane's reads are blocked on the server: CLIENT LIST
/// flags a connection blocked in a command with `b` and names the command,
/// and the backplane's blocking connections are known by their ids.
struct BlockedReads {
    backplane: RedisBackplane,
    connections: Vec<String>,
}

impl BlockedReads {
    /// Opens all of `backplane`'s blocking connections, before any read:
    /// its reads then use only those.
    async fn of(backplane: &RedisBackplane) -> BlockedReads {
        let ids = backplane
            .inner
            .blocking
            .open_all()
            .await
            .expect("open the blocking connections");
        BlockedReads {
            backplane: backplane.clone(),
            connections: ids.iter().map(i64::to_string).collect(),
        }
    }

    async fn count(&self) -> usize {
        let mut args = vec!["LIST".to_owned(), "ID".to_owned()];
        args.extend(self.connections.iter().cloned());
        let list = raw(&self.backplane, "CLIENT", args)
            .await
            .into_string()
            .expect("CLIENT LIST is text");
        list.lines()
            .filter(|line| {
                let field = |name: &str| {
                    line.split(' ')
                        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                };
                field("flags").is_some_and(|flags| flags.contains('b'))
                    && field("cmd") == Some("xreadgroup")
            })
            .count()
    }

    /// Returns once `reads` reads are blocked; panics after `PROMPTLY`.
    async fn wait_for(&self, reads: usize) {
        wait_until(PROMPTLY, &format!("{reads} blocked reads"), || async {
            self.count().await >= reads
        })
        .await;
    }
}

#[async_trait]
impl ReadWaits for BlockedReads {
    async fn read_waits(&self) -> bool {
        self.count().await > 0
    }
}

/// What a conformance check runs on: the keys of its prefix, deleted when
/// it is dropped, and how to see its reads block.
struct Checked {
    _scoped: Scoped,
    reads: BlockedReads,
}

#[async_trait]
impl ReadWaits for Checked {
    async fn read_waits(&self) -> bool {
        self.reads.read_waits().await
    }
}

/// A fresh prefix for each conformance check; the guard deletes its keys.
async fn open_for_check() -> (Checked, RedisBackplane) {
    let scoped = scoped(RedisOptions::default()).await;
    let backplane = scoped.backplane.clone();
    let reads = BlockedReads::of(&backplane).await;
    let checked = Checked {
        _scoped: scoped,
        reads,
    };
    (checked, backplane)
}

conformance::tests_per_check!(open_for_check);

/// `rediss://` carries everything over TLS (ordinary commands, blocking
/// reads and subscribers, each on connections of their own): the whole
/// suite passes against a server that speaks only TLS, trusting its
/// authority; trusting another authority, the connection is refused.
#[tokio::test]
async fn conformance_suite_over_tls() {
    let certificates = TestCertificates::create();
    let server = ThrowawayRedis::start_tls(&certificates);
    let trusting = |authority: std::path::PathBuf| RedisOptions {
        tls_roots: TrustedRoots::File(authority),
        ..RedisOptions::default()
    };
    let backplane = RedisBackplane::connect(
        &server.url(),
        Names::new("tls"),
        trusting(certificates.authority()),
    )
    .await
    .expect("connect over TLS");
    let reads = BlockedReads::of(&backplane).await;
    conformance::run_all(&backplane, &reads).await;

    let stranger = TestCertificates::create();
    let refused = timeout(
        Duration::from_secs(30),
        RedisBackplane::connect(
            &server.url(),
            Names::new("tls"),
            trusting(stranger.authority()),
        ),
    )
    .await
    .expect("a refused handshake is reported, not retried forever");
    assert!(
        refused.is_err(),
        "a server whose certificate chains to no trusted authority must be refused"
    );
}

/// A read blocked on the server must not hold up anything else: with a
/// single shared connection, a publish and an append issued while a read
/// waits 2 s finish long before the read returns.
#[tokio::test]
async fn blocking_read_leaves_other_commands_alone() {
    let backplane = scoped(RedisOptions {
        pool_size: 1,
        ..RedisOptions::default()
    })
    .await;
    let reads = BlockedReads::of(&backplane).await;
    let block = Duration::from_secs(2);
    let start = Instant::now();
    let (read, others) = tokio::join!(
        async {
            let read = backplane
                .read_new(&[1_000], "reader", 10, block)
                .await
                .expect("read_new");
            (read, start.elapsed())
        },
        async {
            reads.wait_for(1).await;
            let issued = Instant::now();
            backplane
                .publish("unheard", Bytes::from_static(b"x"))
                .await
                .expect("publish");
            append(&*backplane, 2_000, "elsewhere").await;
            (issued.elapsed(), start.elapsed())
        }
    );
    let (read, read_done) = read;
    let (took, others_done) = others;
    assert!(read.is_empty());
    assert!(
        read_done >= block - Duration::from_millis(50),
        "read returned after {read_done:?}"
    );
    assert!(
        took < Duration::from_millis(500),
        "publish + append took {took:?}"
    );
    assert!(
        others_done + Duration::from_secs(1) < read_done,
        "publish + append done at {others_done:?}, read at {read_done:?}"
    );
}

/// Giving up on a read while it waits loses nothing: the entry appended
/// afterwards is there for the next read.
#[tokio::test]
async fn cancelled_read_loses_nothing() {
    let backplane = scoped(RedisOptions {
        blocking_connections: 1,
        ..RedisOptions::default()
    })
    .await;
    let reads = BlockedReads::of(&backplane).await;
    tokio::select! {
        read = backplane.read_new(&[7], "reader", 10, Duration::from_secs(5)) => {
            panic!("the read should still have been waiting, got {read:?}")
        }
        () = reads.wait_for(1) => {}
    }
    append(&*backplane, 7, "after").await;
    let start = Instant::now();
    let read = backplane
        .read_new(&[7], "reader", 10, Duration::from_secs(5))
        .await
        .expect("read_new");
    assert_eq!(payloads(&read), vec![Bytes::from("after")]);
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// Every partition with entries gets some in one read, so a busy one
/// cannot starve the others, and each keeps its order.
#[tokio::test]
async fn read_new_takes_from_every_partition() {
    let backplane = scoped(RedisOptions::default()).await;
    for n in 0..10 {
        append(&*backplane, 1, &format!("busy-{n}")).await;
    }
    append(&*backplane, 2, "quiet").await;
    let first = read(&*backplane, &[1, 2, 3], 4).await;
    assert_eq!(first.iter().filter(|e| e.partition == 1).count(), 4);
    assert_eq!(first.iter().filter(|e| e.partition == 2).count(), 1);
    let rest = read(&*backplane, &[1, 2, 3], 100).await;
    assert_eq!(rest.len(), 6);
    assert!(rest.iter().all(|e| e.partition == 1));
    let busy: Vec<Bytes> = first
        .iter()
        .chain(&rest)
        .filter(|e| e.partition == 1)
        .map(|e| e.payload.clone())
        .collect();
    let expected: Vec<Bytes> = (0..10).map(|n| Bytes::from(format!("busy-{n}"))).collect();
    assert_eq!(busy, expected, "per-partition order holds");
}

/// A read given up on after it took entries (here: they arrive while its
/// caller is already gone) hands them to the consumer's next read.
#[tokio::test]
async fn entries_of_an_abandoned_read_reach_the_next_one() {
    let backplane = scoped(RedisOptions::default()).await;
    for n in 0..50 {
        let waited = timeout(
            Duration::from_micros(50 * n),
            backplane.read_new(&[9], "reader", 10, Duration::from_secs(5)),
        );
        let payload = format!("m{n}");
        let appended = append(&*backplane, 9, &payload);
        let (waited, ()) = tokio::join!(waited, appended);
        let mut got = match waited {
            Ok(read) => read.expect("read_new"),
            Err(_) => Vec::new(),
        };
        if got.is_empty() {
            got = backplane
                .read_new(&[9], "reader", 10, Duration::from_secs(5))
                .await
                .expect("read_new");
        }
        assert_eq!(
            payloads(&got),
            vec![Bytes::from(format!("m{n}"))],
            "round {n}"
        );
    }
}

/// Both readers are blocked on the server before anything is appended.
#[tokio::test]
async fn concurrent_readers_never_share_an_entry() {
    let backplane = scoped(RedisOptions::default()).await;
    let reads = BlockedReads::of(&backplane).await;
    let block = Duration::from_secs(5);
    let (a, b, ()) = tokio::join!(
        backplane.read_new(&[7], "a", 1, block),
        backplane.read_new(&[7], "b", 1, block),
        async {
            reads.wait_for(2).await;
            append(&*backplane, 7, "1").await;
            append(&*backplane, 7, "2").await;
        }
    );
    let (a, b) = (a.expect("read a"), b.expect("read b"));
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_ne!(a[0].id, b[0].id);
}

/// Trimming drops what every group is done with, and nothing else: not
/// pending entries, not undelivered ones, not a stream nobody read yet.
#[tokio::test]
async fn trim_never_drops_unprocessed_entries() {
    let backplane = scoped(RedisOptions::default()).await;
    let key = backplane.names().command_stream(3);
    for n in 0..10 {
        append(&*backplane, 3, &format!("cmd-{n}")).await;
    }
    let delivered = read(&*backplane, &[3], 6).await;
    assert_eq!(delivered.len(), 6);
    backplane.ack(3, &ids(&delivered[..3])).await.expect("ack");

    backplane.trim(3).await.expect("trim");
    assert_eq!(
        stream_len(&backplane, key.clone()).await,
        7,
        "3 pending + 4 undelivered"
    );
    let first: Value = raw(
        &backplane,
        "XRANGE",
        vec![
            key.clone(),
            "-".into(),
            "+".into(),
            "COUNT".into(),
            "1".into(),
        ],
    )
    .await;
    let first_id = first
        .into_array()
        .into_iter()
        .next()
        .map(Value::into_array)
        .and_then(|entry| entry.into_iter().next())
        .and_then(Value::into_string);
    assert_eq!(
        first_id.as_deref(),
        Some(delivered[3].id.as_str()),
        "oldest pending is kept"
    );

    let pending = backplane
        .claim_pending(3, "rescuer", Duration::ZERO, 100)
        .await
        .expect("claim_pending");
    assert_eq!(ids(&pending), ids(&delivered[3..]));
    let fresh = read(&*backplane, &[3], 100).await;
    assert_eq!(fresh.len(), 4);
    backplane.ack(3, &ids(&pending)).await.expect("ack");
    backplane.ack(3, &ids(&fresh)).await.expect("ack");

    backplane.trim(3).await.expect("trim");
    assert!(
        stream_len(&backplane, key.clone()).await <= 1,
        "only the last delivered entry may stay"
    );
    append(&*backplane, 3, "later").await;
    let later = read(&*backplane, &[3], 100).await;
    assert_eq!(payloads(&later), vec![Bytes::from("later")]);

    // Never read: no group yet, so trimming must keep everything.
    let untouched = backplane.names().command_stream(4);
    for n in 0..3 {
        append(&*backplane, 4, &format!("waiting-{n}")).await;
    }
    backplane.trim(4).await.expect("trim");
    assert_eq!(stream_len(&backplane, untouched).await, 3);
    assert_eq!(read(&*backplane, &[4], 100).await.len(), 3);
}

#[tokio::test]
async fn dead_letter_stream_keeps_entry_and_reason() {
    let backplane = scoped(RedisOptions::default()).await;
    append(&*backplane, 5, "poison").await;
    let entry = read(&*backplane, &[5], 1).await.remove(0);
    backplane
        .dead_letter(&entry, "cannot decode")
        .await
        .expect("dead_letter");

    let dead = backplane.dead_letters(5).await.expect("dead_letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].partition, 5);
    assert_eq!(dead[0].id, entry.id);
    assert_eq!(dead[0].payload, Bytes::from_static(b"poison"));
    assert_eq!(dead[0].deliveries, 1);
    assert_eq!(dead[0].reason, "cannot decode");

    let summary: Value = raw(
        &backplane,
        "XPENDING",
        vec![
            backplane.names().command_stream(5),
            crate::names::COMMAND_GROUP.into(),
        ],
    )
    .await;
    let pending = summary
        .into_array()
        .into_iter()
        .next()
        .and_then(|v| v.as_u64());
    assert_eq!(pending, Some(0), "the dead letter was acked");
}

/// Fencing tokens of a partition grow with every change of hands,
/// and the lease key names its holder and token.
#[tokio::test]
async fn lease_tokens_strictly_increase() {
    let backplane = scoped(RedisOptions::default()).await;
    let short = Duration::from_millis(100);
    // Per partition: each partition's counter lives on its lease's slot.
    let mut last = [0u64; 2];
    for (n, holder) in ["a", "b", "c", "d", "e", "f"].into_iter().enumerate() {
        let partition = (n % 2) as u32;
        let lease = backplane
            .acquire_lease(partition, holder, short)
            .await
            .expect("acquire_lease")
            .expect("free");
        let before = last[n % 2];
        assert!(lease.token > before, "token {} after {before}", lease.token);
        last[n % 2] = lease.token;
        let stored = raw(
            &backplane,
            "GET",
            vec![backplane.names().partition_lease(partition)],
        )
        .await;
        assert_eq!(
            stored.into_string(),
            Some(format!("{holder}:{}", lease.token))
        );
        if n % 2 == 0 {
            backplane
                .release_lease(lease, holder)
                .await
                .expect("release");
        } else {
            // Time passing is what is checked: the lease expires.
            tokio::time::sleep(short + CLOCK_SLACK).await;
            assert!(!backplane
                .renew_lease(lease, holder, short)
                .await
                .expect("renew"));
        }
    }
}

#[tokio::test]
async fn presence_keys_expire_with_their_members() {
    let backplane = scoped(RedisOptions::default()).await;
    let key = backplane.names().presence("pool");
    backplane
        .presence_heartbeat("pool", "agent", "gw", Duration::from_millis(200))
        .await
        .expect("heartbeat");
    let ttl = raw(&backplane, "PTTL", vec![key.clone()]).await.as_i64();
    assert!(matches!(ttl, Some(1..=200)), "PTTL {ttl:?}");
    // Time passing is what is checked: the key expires with its member.
    tokio::time::sleep(Duration::from_millis(200) + CLOCK_SLACK).await;
    let exists = raw(&backplane, "EXISTS", vec![key]).await.as_u64();
    assert_eq!(exists, Some(0));
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let port = free_port();
    let result = RedisBackplane::connect(
        &format!("redis://127.0.0.1:{port}"),
        Names::default(),
        RedisOptions {
            command_timeout: Duration::from_secs(1),
            ..RedisOptions::default()
        },
    )
    .await;
    assert!(matches!(
        result,
        Err(crate::backplane::BackplaneError::Unavailable(_))
    ));
}

async fn next_event(
    events: &mut UnboundedReceiver<SubscriptionEvent>,
    wait: Duration,
) -> SubscriptionEvent {
    timeout(wait, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {wait:?}"))
        .expect("subscription closed")
}

/// After the server is killed and comes back, the subscriber says so and
/// hears new messages, and a command appended before the crash is still
/// there to be read.
#[tokio::test]
async fn subscriber_and_commands_survive_a_server_restart() {
    let mut server = ThrowawayRedis::start();
    let backplane = RedisBackplane::connect(
        &server.url(),
        Names::new(format!("test-{}", uuid::Uuid::new_v4().simple())),
        RedisOptions::default(),
    )
    .await
    .expect("connect");
    let channel = "restart:channel";
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(channel).await.expect("subscribe");
    backplane
        .publish(channel, Bytes::from_static(b"before"))
        .await
        .expect("publish");
    assert_eq!(
        next_event(&mut events, PROMPTLY).await,
        SubscriptionEvent::Message(crate::backplane::ChannelMessage {
            channel: channel.to_owned(),
            payload: Bytes::from_static(b"before"),
        })
    );
    append(&backplane, 9, "durable").await;
    let before = run_id(&backplane).await;

    server.kill();
    server.restart();

    let event = next_event(&mut events, Duration::from_secs(20)).await;
    assert_eq!(event, SubscriptionEvent::Resubscribed);
    backplane
        .publish(channel, Bytes::from_static(b"after"))
        .await
        .expect("publish after restart");
    match next_event(&mut events, PROMPTLY).await {
        SubscriptionEvent::Message(message) => {
            assert_eq!(message.channel, channel);
            assert_eq!(message.payload, Bytes::from_static(b"after"));
        }
        other => panic!("expected the new message, got {other:?}"),
    }

    assert_ne!(run_id(&backplane).await, before, "the server restarted");

    let read = backplane
        .read_new(&[9], "reader", 10, Duration::from_millis(100))
        .await
        .expect("read_new after restart");
    assert_eq!(payloads(&read), vec![Bytes::from("durable")]);
}

/// Differs between two runs of a server, even on the same port.
async fn run_id(backplane: &RedisBackplane) -> String {
    let info = raw(backplane, "INFO", vec!["server".to_owned()])
        .await
        .into_string()
        .expect("INFO is text");
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .expect("INFO has a run_id")
        .trim()
        .to_owned()
}
