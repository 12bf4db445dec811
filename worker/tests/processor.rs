//! The processor end to end over a real SQLite store and the in-process
//! backplane: a command appended to a partition is stored, answered on the
//! caller's gateway channel before its event goes out, and acknowledged;
//! poison entries and failing writes are set aside without blocking the
//! commands behind them; redelivery is harmless.

mod common;

use std::time::Duration;

use bytes::Bytes;
use chat_shared::backplane::memory::MemoryBackplane;
use chat_shared::backplane::CommandLog;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::server_events;
use chat_shared::store::Store;
use chat_shared::ErrorCode;
use common::{create, customer, envelope, frame_payload, send, sent, Rig, GATEWAY};
use serde_json::json;
use std::sync::Arc;

/// A session of customer `c1`, created through the processor.
async fn open_session(rig: &Rig, partition: u32, session_id: &str) {
    rig.append(
        partition,
        &envelope(&customer("c1"), 0, create(session_id, "default")),
    )
    .await;
    let entries = rig.read(partition).await;
    rig.processor(5)
        .process(entries)
        .await
        .expect("create the session");
}

#[tokio::test]
async fn a_command_is_stored_answered_before_its_event_and_acknowledged() {
    let rig = Rig::new();
    open_session(&rig, 2, "s1").await;
    let mut gateway = rig
        .listen(&[
            rig.names.gateway_channel(GATEWAY),
            rig.names.session_channel("s1"),
        ])
        .await;

    rig.append(
        2,
        &envelope(&customer("c1"), 7, send("s1", "Hello there", "k-1")),
    )
    .await;
    let entries = rig.read(2).await;
    assert_eq!(entries.len(), 1);
    rig.processor(5).process(entries).await.expect("process");

    // The reply first, so the sender's ack precedes its own new-message.
    let reply = gateway.next().await.reply();
    assert_eq!(reply.request_id, 7);
    let (message, duplicate) = sent(&reply);
    assert!(!duplicate);
    assert_eq!(message.seq, 1);
    assert_eq!(message.content, "Hello there");

    let (channel, delivery) = gateway.next().await.event();
    assert_eq!(channel, rig.names.session_channel("s1"));
    assert_eq!(delivery.event, server_events::NEW_MESSAGE);
    assert_eq!(delivery.seq, Some(1));
    let payload = frame_payload(&delivery);
    assert_eq!(payload["id"], json!(message.id));
    assert_eq!(payload["content"], json!("Hello there"));
    gateway.assert_quiet(Duration::from_millis(50)).await;

    assert_eq!(rig.messages("s1").await, vec![message]);
    assert!(rig.unacked(2).await.is_empty(), "the entry is acknowledged");
}

#[tokio::test]
async fn an_undecodable_entry_is_dead_lettered_and_does_not_block_the_next() {
    let rig = Rig::new();
    let mut gateway = rig.listen(&[rig.names.gateway_channel(GATEWAY)]).await;
    rig.append_raw(3, Bytes::from_static(b"\xc1 not messagepack"))
        .await;
    rig.append(3, &envelope(&customer("c1"), 1, create("s1", "default")))
        .await;
    let entries = rig.read(3).await;
    assert_eq!(entries.len(), 2);
    let poison_id = entries[0].id.clone();
    rig.processor(5).process(entries).await.expect("process");

    let dead = rig.backplane.dead_letters(3).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, poison_id);
    assert_eq!(dead[0].reason, "undecodable");
    assert_eq!(dead[0].payload, Bytes::from_static(b"\xc1 not messagepack"));

    let reply = gateway.next().await.reply();
    assert_eq!(reply.request_id, 1);
    assert!(
        matches!(reply.outcome, Ok(ReplyBody::Session(_))),
        "{reply:?}"
    );
    assert!(rig.store.get_session("s1").await.expect("read").is_some());
    assert!(rig.unacked(3).await.is_empty());
}

#[tokio::test]
async fn processing_the_same_send_twice_stores_one_message() {
    let rig = Rig::new();
    open_session(&rig, 0, "s1").await;
    let mut gateway = rig
        .listen(&[
            rig.names.gateway_channel(GATEWAY),
            rig.names.session_channel("s1"),
        ])
        .await;
    rig.append(
        0,
        &envelope(&customer("c1"), 5, send("s1", "only once", "k-1")),
    )
    .await;
    let entries = rig.read(0).await;
    let processor = rig.processor(5);
    processor
        .process(entries.clone())
        .await
        .expect("first delivery");
    processor.process(entries).await.expect("redelivery");

    let (first, first_duplicate) = sent(&gateway.next().await.reply());
    let (_, event) = gateway.next().await.event();
    assert_eq!(event.seq, Some(1));
    let (again, again_duplicate) = sent(&gateway.next().await.reply());
    let (_, event_again) = gateway.next().await.event();
    assert!(!first_duplicate);
    assert!(again_duplicate);
    assert_eq!(again, first);
    // The event is sent again with the same seq; sockets drop the repeat.
    assert_eq!(event_again.seq, Some(1));

    let stored = rig.messages("s1").await;
    assert_eq!(stored, vec![first]);
    let session = rig
        .store
        .get_session("s1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(session.last_seq, 1);
}

#[tokio::test]
async fn a_redelivery_after_lost_events_publishes_them() {
    // The first attempt commits, then its events are lost (here: published
    // on a backplane nobody listens to, as if the worker died before
    // publishing). The redelivery must still tell the pool and the session.
    let rig = Rig::new();
    let deaf = rig.processor_on(Arc::new(MemoryBackplane::new()), 5);
    let mut listener = rig
        .listen(&[
            rig.names.gateway_channel(GATEWAY),
            rig.names.pool_channel("default"),
            rig.names.session_channel("s1"),
        ])
        .await;

    rig.append(1, &envelope(&customer("c1"), 1, create("s1", "default")))
        .await;
    rig.append(
        1,
        &envelope(&customer("c1"), 2, send("s1", "anyone?", "k-1")),
    )
    .await;
    let entries = rig.read(1).await;
    deaf.process(entries.clone()).await.expect("first attempt");
    listener.assert_quiet(Duration::from_millis(50)).await;

    rig.processor(5).process(entries).await.expect("redelivery");
    let reply = listener.next().await.reply();
    assert_eq!(reply.request_id, 1);
    let (channel, announced) = listener.next().await.event();
    assert_eq!(channel, rig.names.pool_channel("default"));
    assert_eq!(announced.event, server_events::NEW_PENDING_SESSION);
    assert_eq!(frame_payload(&announced)["session"]["id"], json!("s1"));
    let (message, duplicate) = sent(&listener.next().await.reply());
    assert!(duplicate);
    let (channel, delivery) = listener.next().await.event();
    assert_eq!(channel, rig.names.session_channel("s1"));
    assert_eq!(delivery.seq, Some(message.seq));
    assert_eq!(rig.messages("s1").await.len(), 1);
}

/// Makes the store refuse, for a reason that is no write race, every
/// message whose content is `poison`: a trigger in the real database.
fn poison_the_store(rig: &Rig) {
    let conn = rusqlite::Connection::open(&rig.db_path).expect("open the database file");
    conn.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages
         WHEN NEW.content = 'poison'
         BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END;",
    )
    .expect("install the trigger");
}

#[tokio::test]
async fn a_command_the_store_refuses_is_retried_then_dead_lettered_without_holding_back_others() {
    const MAX_DELIVERIES: u32 = 3;
    let rig = Rig::new();
    for session in ["sa", "sb", "sc"] {
        open_session(&rig, 0, session).await;
    }
    poison_the_store(&rig);
    let mut gateway = rig.listen(&[rig.names.gateway_channel(GATEWAY)]).await;
    let carla = customer("c1");
    rig.append(0, &envelope(&carla, 1, send("sa", "before", "k-1")))
        .await;
    rig.append(0, &envelope(&carla, 2, send("sb", "poison", "k-2")))
        .await;
    rig.append(0, &envelope(&carla, 3, send("sc", "after", "k-3")))
        .await;
    let processor = rig.processor(MAX_DELIVERIES);

    let entries = rig.read(0).await;
    assert_eq!(entries.len(), 3);
    let poison_id = entries[1].id.clone();
    // The batch fails as a whole, then its commands are applied one by one:
    // the refused one stays pending, the others go through.
    assert!(processor.process(entries).await.is_err());
    let mut answered: Vec<u64> = Vec::new();
    for _ in 0..2 {
        let reply = gateway.next().await.reply();
        assert!(reply.outcome.is_ok(), "{reply:?}");
        answered.push(reply.request_id);
    }
    assert_eq!(answered, vec![1, 3]);
    assert_eq!(rig.messages("sa").await.len(), 1);
    assert_eq!(rig.messages("sc").await.len(), 1);
    gateway.assert_quiet(Duration::from_millis(50)).await;

    // Retried until it has been delivered MAX_DELIVERIES times.
    for delivery in 2..MAX_DELIVERIES {
        let retry = rig.unacked(0).await;
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].id, poison_id);
        assert_eq!(retry[0].deliveries, delivery);
        assert!(processor.process(retry).await.is_err());
        assert!(rig
            .backplane
            .dead_letters(0)
            .await
            .expect("dead letters")
            .is_empty());
    }
    let last = rig.unacked(0).await;
    assert_eq!(last[0].deliveries, MAX_DELIVERIES);
    processor
        .process(last)
        .await
        .expect("the last attempt gives up");

    let dead = rig.backplane.dead_letters(0).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, poison_id);
    assert!(
        dead[0].reason.contains("refused by the test trigger"),
        "{}",
        dead[0].reason
    );
    let reply = gateway.next().await.reply();
    assert_eq!(reply.request_id, 2);
    assert_eq!(
        reply.outcome.expect_err("the caller is told").code,
        ErrorCode::Unavailable
    );
    assert!(rig.messages("sb").await.is_empty());
    assert!(rig.unacked(0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_processors_never_repeat_or_skip_a_seq() {
    // Two workers that both believe they own a partition (a lease lost
    // mid-batch) race on one session: the store's version check makes the
    // loser decide again, so seqs stay 1, 2, 3, … with every message once.
    const SENDS: usize = 40;
    let rig = Rig::new();
    open_session(&rig, 0, "s1").await;
    let carla = customer("c1");
    for n in 0..SENDS {
        let command = send("s1", &format!("text {n}"), &format!("k-{n}"));
        rig.append(0, &envelope(&carla, n as u64, command)).await;
    }
    let entries = rig.read(0).await;
    assert_eq!(entries.len(), SENDS);
    let (evens, odds): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let run = |share: Vec<(usize, chat_shared::backplane::StreamEntry)>| {
        let processor = rig.processor(5);
        async move {
            for (_, entry) in share {
                // A batch that lost every race stays pending for later.
                let _ = processor.process(vec![entry]).await;
            }
        }
    };
    tokio::join!(run(evens), run(odds));
    let processor = rig.processor(5);
    for _ in 0..3 {
        let left = rig.unacked(0).await;
        if left.is_empty() {
            break;
        }
        processor.process(left).await.expect("applied once alone");
    }
    assert!(rig.unacked(0).await.is_empty());

    let stored = rig.messages("s1").await;
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=SENDS as i64).collect::<Vec<_>>());
    let contents: std::collections::BTreeSet<&str> =
        stored.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents.len(), SENDS);
    let session = rig
        .store
        .get_session("s1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(session.last_seq, SENDS as i64);
}

/// Two workers that both believe they own a partition, as after a Redis
/// failover that lost the lease (the promoted replica never saw it, and
/// its fencing counter may even have gone back): each remembers the
/// session as it last wrote it, so each decides on a stale `seq` in turn.
/// The store's version check, which no Redis failover can undo, is the
/// fence: a stale decision fails its commit and is made again on the
/// record, so every message is stored once with gapless `seq`s, and a
/// send handed to both is stored once.
#[tokio::test]
async fn two_owners_of_one_partition_never_store_a_seq_or_a_message_twice() {
    use chat_shared::store::MessageRange;

    let rig = Rig::new();
    open_session(&rig, 0, "s1").await;
    let owners = [rig.processor(5), rig.processor(5)];
    for turn in 0..12 {
        rig.append(
            0,
            &envelope(
                &customer("c1"),
                turn,
                send("s1", &format!("turn {turn}"), &format!("k-{turn}")),
            ),
        )
        .await;
        let entries = rig.read(0).await;
        owners[turn as usize % 2]
            .process(entries)
            .await
            .expect("a stale owner's batch is decided again on the record");
    }
    rig.append(
        0,
        &envelope(&customer("c1"), 99, send("s1", "to both", "k-both")),
    )
    .await;
    let entries = rig.read(0).await;
    for owner in &owners {
        owner.process(entries.clone()).await.expect("process");
    }

    let page = rig
        .store
        .messages("s1", MessageRange::After(0), 100)
        .await
        .expect("history");
    let seqs: Vec<i64> = page.items.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=13).collect::<Vec<i64>>(),
        "gapless, each seq once"
    );
    let mut client_ids: Vec<String> = page
        .items
        .iter()
        .filter_map(|m| m.client_msg_id.clone())
        .collect();
    client_ids.sort();
    client_ids.dedup();
    assert_eq!(client_ids.len(), 13, "every message stored once");
    let session = rig
        .store
        .get_session("s1")
        .await
        .expect("read")
        .expect("the session");
    assert_eq!(session.last_seq, 13);
}
