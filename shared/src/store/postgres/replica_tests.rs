//! The store with a read replica, against a throwaway primary and a real
//! streaming replica of it (`pg_basebackup -R`): reads go to the replica
//! when it has caught up, and never show less than the primary had
//! committed when the read began, also while the replica's replay is
//! paused.

use std::time::{Duration, Instant};

use super::*;
use crate::protocol::Message;
use crate::store::test_records::{message, session};
use crate::store::{SessionRecord, SessionScope};
use crate::testing::{free_port, wait_until, ThrowawayPostgres};

const WITHIN: Duration = Duration::from_secs(30);

fn options() -> PostgresOptions {
    PostgresOptions {
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    }
}

/// A started primary, a replica streaming from it, and a store reading
/// from the replica.
async fn primary_and_replica() -> (ThrowawayPostgres, ThrowawayPostgres, PostgresStore) {
    let primary = ThrowawayPostgres::create();
    primary.start();
    let replica = ThrowawayPostgres::create_replica_of(&primary);
    let store = PostgresStore::connect(&primary.url(), options())
        .await
        .expect("connect to the primary")
        .with_read_replica(&replica.url(), &options())
        .expect("replica pool");
    (primary, replica, store)
}

fn reads(store: &PostgresStore) -> ReplicaReads {
    store.replica_reads().expect("a store with a replica")
}

/// A session with `count` messages, committed as the worker would: the
/// messages in the transaction that sets `last_seq`.
async fn session_with_messages(store: &PostgresStore, id: &str, count: i64) -> Vec<Message> {
    let mut record = session(id);
    record.session.last_seq = count;
    let messages: Vec<Message> = (1..=count).map(|seq| message(id, seq, None)).collect();
    let mut mutations = vec![Mutation::InsertSession(record)];
    mutations.extend(messages.iter().cloned().map(Mutation::InsertMessage));
    store.commit(mutations).await.expect("commit");
    messages
}

/// Appends message `seq` to a session at version `version`, as a
/// send-message batch does.
async fn append(store: &PostgresStore, record: &mut SessionRecord, seq: i64) -> Message {
    let expected_version = record.version;
    record.version += 1;
    record.session.last_seq = seq;
    let next = message(&record.session.id, seq, None);
    store
        .commit(vec![
            Mutation::UpdateSession {
                record: record.clone(),
                expected_version,
            },
            Mutation::InsertMessage(next.clone()),
        ])
        .await
        .expect("append");
    next
}

/// Waits until a history read of `id` is served by the replica with
/// `expected`: the replica has caught up with everything before.
async fn until_replica_serves(store: &PostgresStore, id: &str, expected: &[Message]) {
    wait_until(WITHIN, "a history read served by the replica", || async {
        let before = reads(store).replica;
        let page = store
            .messages(id, MessageRange::Latest, 50)
            .await
            .expect("messages");
        reads(store).replica == before + 1 && page.items == expected
    })
    .await;
}

#[tokio::test]
async fn a_caught_up_replica_serves_every_read_and_counts_them() {
    let (_primary, _replica, store) = primary_and_replica().await;
    let messages = session_with_messages(&store, "s-1", 2).await;
    let agent = AgentRecord {
        id: "a-1".into(),
        name: "Ana".into(),
        pools: vec!["default".into()],
        last_seen_at: Timestamp(1_700_000_000_000),
    };
    store.remember_agent(&agent).await.expect("remember agent");

    // Every gateway read in one round: each must have been answered by the
    // replica, with what the primary committed. A round may fall back while
    // the replica still replays the commits above; the next one catches up.
    wait_until(
        WITHIN,
        "a round of reads all served by the replica",
        || async {
            let before = reads(&store);
            let page = store.messages("s-1", MessageRange::Latest, 50).await;
            let found = store.get_session("s-1").await;
            let listed = store
                .list_sessions(&SessionQuery {
                    scope: SessionScope::All,
                    status: None,
                    pool: None,
                    limit: 10,
                    after: None,
                })
                .await;
            let positions = store.read_positions("s-1").await;
            let agents = store.list_agents(Some("default")).await;
            let figures = store
                .pool_figures("default", Timestamp(1_699_999_000_000))
                .await;
            let after = reads(&store);
            after.replica == before.replica + 6
                && page.is_ok_and(|page| page.items == messages)
                && found.is_ok_and(|found| found.is_some_and(|s| s.last_seq == 2))
                && listed.is_ok_and(|listed| listed.len() == 1)
                && positions.is_ok_and(|positions| positions.is_empty())
                && agents.is_ok_and(|agents| agents == vec![agent.clone()])
                && figures.is_ok_and(|figures| figures.pending_sessions == 1)
        },
    )
    .await;

    // The rendered family says what the counts say, for every outcome
    // (reads before the replica replayed the schema fell back or failed).
    let counts = reads(&store);
    assert!(counts.replica >= 6, "{counts:?}");
    let mut text = String::new();
    store.render_metrics(&mut text);
    for (outcome, count) in [
        ("replica", counts.replica),
        ("primary_fallback", counts.primary_fallback),
        ("replica_error", counts.replica_error),
    ] {
        let series = format!("chat_store_replica_reads_total{{outcome=\"{outcome}\"}} {count}\n");
        assert!(text.contains(&series), "{series} in {text}");
    }
    let fences = format!("chat_store_replica_fences_total {}\n", counts.fences);
    assert!(text.contains(&fences), "{fences} in {text}");
}

#[tokio::test]
async fn a_paused_replica_never_hides_a_commit_yet_serves_what_it_holds() {
    let (_primary, replica, store) = primary_and_replica().await;
    let quiet = session_with_messages(&store, "s-quiet", 2).await;
    let mut busy_messages = session_with_messages(&store, "s-busy", 1).await;
    until_replica_serves(&store, "s-quiet", &quiet).await;
    until_replica_serves(&store, "s-busy", &busy_messages).await;

    replica.pause_replay();
    let mut busy = session("s-busy");
    busy.session.last_seq = 1;
    busy_messages.push(append(&store, &mut busy, 2).await);
    assert_eq!(
        replica.query("SELECT count(*) FROM messages WHERE session_id = 's-busy'"),
        "1",
        "the paused replica must not have the new message, or this test proves nothing"
    );

    // What the primary committed before the read is in the answer, from
    // the primary.
    let before = reads(&store);
    let page = store
        .messages("s-busy", MessageRange::Latest, 50)
        .await
        .expect("latest");
    assert_eq!(page.items, busy_messages);
    let page = store
        .messages("s-busy", MessageRange::After(1), 50)
        .await
        .expect("after 1");
    assert_eq!(page.items, busy_messages[1..]);
    let found = store.get_session("s-busy").await.expect("session");
    assert_eq!(found.map(|s| s.last_seq), Some(2));
    let after = reads(&store);
    assert_eq!(after.primary_fallback, before.primary_fallback + 3);
    assert_eq!(after.replica, before.replica);

    // A session untouched since the pause is still read from the replica.
    let page = store
        .messages("s-quiet", MessageRange::Latest, 50)
        .await
        .expect("quiet");
    assert_eq!(page.items, quiet);
    assert_eq!(reads(&store).replica, after.replica + 1);

    replica.resume_replay();
    until_replica_serves(&store, "s-busy", &busy_messages).await;
}

#[tokio::test]
async fn reads_waiting_together_share_one_question_to_the_primary() {
    let (_primary, _replica, store) = primary_and_replica().await;
    let messages = session_with_messages(&store, "s-1", 1).await;
    until_replica_serves(&store, "s-1", &messages).await;
    let before = reads(&store);

    // On this single-threaded runtime every read below is waiting for a
    // fence before the task asking the primary first runs, so one question
    // answers all of them.
    let mut reads_at_once = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        reads_at_once.spawn(async move { store.messages("s-1", MessageRange::Latest, 10).await });
    }
    while let Some(read) = reads_at_once.join_next().await {
        let page = read.expect("read task").expect("read");
        assert_eq!(page.items, messages);
    }
    let after = reads(&store);
    assert_eq!(after.fences, before.fences + 1, "{after:?}");
    let served = (after.replica + after.primary_fallback + after.replica_error)
        - (before.replica + before.primary_fallback + before.replica_error);
    assert_eq!(served, 20, "{after:?}");
}

#[tokio::test]
async fn an_unreachable_replica_sends_reads_to_the_primary_without_waiting_each_time() {
    let primary = ThrowawayPostgres::create();
    primary.start();
    let nobody = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let store = PostgresStore::connect(&primary.url(), options())
        .await
        .expect("connect")
        .with_read_replica(&nobody, &options())
        .expect("replica pool");
    let messages = session_with_messages(&store, "s-1", 1).await;

    let page = store
        .messages("s-1", MessageRange::Latest, 10)
        .await
        .expect("read from the primary");
    assert_eq!(page.items, messages);
    assert_eq!(reads(&store).replica_error, 1);

    // Within the retry delay the replica is not tried again, so the read
    // takes nowhere near a connect timeout.
    let started = Instant::now();
    let found = store.get_session("s-1").await.expect("session");
    assert!(found.is_some());
    assert!(
        started.elapsed() < options().connect_timeout,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        reads(&store),
        ReplicaReads {
            replica: 0,
            primary_fallback: 0,
            replica_error: 2,
            fences: 2,
        }
    );
}

#[tokio::test]
async fn without_a_replica_nothing_is_counted_or_rendered() {
    let primary = ThrowawayPostgres::create();
    primary.start();
    let store = PostgresStore::connect(&primary.url(), options())
        .await
        .expect("connect");
    session_with_messages(&store, "s-1", 1).await;
    assert_eq!(
        store
            .messages("s-1", MessageRange::Latest, 10)
            .await
            .expect("read")
            .items
            .len(),
        1
    );
    assert_eq!(store.replica_reads(), None);
    let mut text = String::new();
    store.render_metrics(&mut text);
    assert!(text.is_empty(), "{text}");
}
