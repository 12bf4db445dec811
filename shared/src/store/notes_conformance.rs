//! Conformance checks of internal notes and invited colleagues, run by
//! `conformance::run_all` and per check by each store's tests: notes are
//! stored apart from messages (no read of messages ever returns one, and
//! message numbers keep running), paged by their own `seq`, found by
//! client id and by the latest number in a batch's snapshot, and refused
//! as a conflict when their number or client id is taken; a session's
//! colleagues are written with its row and read back with every read of
//! it; the timeline keeps `invited` and `left`.

use uuid::Uuid;

use crate::protocol::{
    ClosedBy, Message, Participant, Role, SessionEvent, SessionEventKind, SessionStatus,
};
use crate::store::{BatchKeys, MessageRange, Mutation, SessionQuery, SessionRecord, SessionScope};
use crate::store::{Store, StoreError};
use crate::Timestamp;

fn unique(label: &str) -> String {
    format!("{label}-{}", Uuid::new_v4().simple())
}

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what} failed: {err}"))
}

async fn commit_ok(store: &dyn Store, mutations: Vec<Mutation>, what: &str) {
    if let Err(err) = store.commit(mutations).await {
        panic!("{what}: commit failed: {err}");
    }
}

fn message(session: &SessionRecord, seq: i64) -> Message {
    Message {
        id: unique("message"),
        session_id: session.session.id.clone(),
        seq,
        sender_id: session.session.customer_id.clone(),
        sender_name: "Carla".into(),
        sender_role: Role::Customer,
        content: format!("message {seq}"),
        client_msg_id: Some(format!("m-{seq}")),
        created_at: Timestamp(2_000 + seq),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    }
}

fn note(session: &SessionRecord, seq: i64, after_seq: i64, sender: &str) -> Message {
    Message {
        id: unique("note"),
        session_id: session.session.id.clone(),
        seq,
        sender_id: sender.to_owned(),
        sender_name: "Ann Agent".into(),
        sender_role: Role::Agent,
        content: format!("note {seq}"),
        client_msg_id: Some(format!("n-{seq}")),
        created_at: Timestamp(3_000 + seq),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: true,
        after_seq: Some(after_seq),
    }
}

/// A stored session of a fresh pool with `messages` messages.
async fn session_with_messages(store: &dyn Store, messages: i64) -> SessionRecord {
    let mut record = SessionRecord::opened(
        unique("session"),
        unique("customer"),
        "Carla".into(),
        unique("pool"),
        None,
        Timestamp(1_000),
    );
    let mut mutations = vec![Mutation::InsertSession(record.clone())];
    if messages > 0 {
        let mut next = record.clone();
        next.version = 2;
        next.session.last_seq = messages;
        mutations.push(Mutation::UpdateSession {
            record: next.clone(),
            expected_version: 1,
        });
        for seq in 1..=messages {
            mutations.push(Mutation::InsertMessage(message(&record, seq)));
        }
        record = next;
    }
    commit_ok(store, mutations, "session with messages").await;
    record
}

/// Notes interleaved with messages: stored and paged apart, by their own
/// numbers, in every window; messages and the session's `last_seq` never
/// see them.
pub async fn notes_are_stored_apart_from_messages(store: &dyn Store) {
    let record = session_with_messages(store, 2).await;
    let id = record.session.id.clone();
    let agent = unique("agent");
    let mut mutations = Vec::new();
    for seq in 1..=4 {
        mutations.push(Mutation::InsertNote(note(&record, seq, 2, &agent)));
    }
    commit_ok(store, mutations, "four notes").await;
    let mut next = record.clone();
    next.version = record.version + 1;
    next.session.last_seq = 3;
    commit_ok(
        store,
        vec![
            Mutation::UpdateSession {
                record: next.clone(),
                expected_version: record.version,
            },
            Mutation::InsertMessage(message(&record, 3)),
            Mutation::InsertNote(note(&record, 5, 3, &agent)),
        ],
        "a message and a note in one batch",
    )
    .await;

    let session = ok(store.get_session(&id).await, "get_session").expect("stored");
    assert_eq!(session.last_seq, 3, "notes take no message number");
    let messages = ok(
        store.messages(&id, MessageRange::After(0), 100).await,
        "messages",
    );
    let seqs: Vec<i64> = messages.items.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "messages without gaps, without notes");
    assert!(messages.items.iter().all(|m| !m.internal));
    for range in [
        MessageRange::Latest,
        MessageRange::Before(10),
        MessageRange::Between {
            after: 0,
            before: 10,
        },
    ] {
        let page = ok(store.messages(&id, range, 100).await, "messages");
        assert!(page.items.iter().all(|m| !m.internal), "{range:?}");
        assert_eq!(page.items.len(), 3, "{range:?}");
    }

    let all = ok(store.notes(&id, MessageRange::After(0), 100).await, "notes");
    let numbers: Vec<(i64, Option<i64>)> = all.items.iter().map(|n| (n.seq, n.after_seq)).collect();
    assert_eq!(
        numbers,
        vec![
            (1, Some(2)),
            (2, Some(2)),
            (3, Some(2)),
            (4, Some(2)),
            (5, Some(3))
        ]
    );
    assert!(all.items.iter().all(|n| n.internal));
    assert_eq!(all.items[0].content, "note 1");
    assert_eq!(all.items[0].sender_id, agent);
    assert_eq!(all.items[0].sender_role, Role::Agent);
    assert!(!all.has_more);
    let latest = ok(
        store.notes(&id, MessageRange::Latest, 2).await,
        "latest notes",
    );
    assert_eq!(
        latest.items.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(latest.has_more);
    let before = ok(store.notes(&id, MessageRange::Before(3), 5).await, "before");
    assert_eq!(
        before.items.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let after = ok(store.notes(&id, MessageRange::After(3), 1).await, "after");
    assert_eq!(
        after.items.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(after.has_more);
    let between = ok(
        store
            .notes(
                &id,
                MessageRange::Between {
                    after: 1,
                    before: 5,
                },
                10,
            )
            .await,
        "between",
    );
    assert_eq!(
        between.items.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let none = ok(
        store
            .notes(&unique("missing"), MessageRange::Latest, 10)
            .await,
        "notes of nothing",
    );
    assert!(none.items.is_empty() && !none.has_more);
}

/// A batch's snapshot finds a session's latest note number and its notes
/// by client id; a note whose number or client id is taken fails the
/// whole batch as a conflict.
pub async fn notes_load_and_conflict(store: &dyn Store) {
    let record = session_with_messages(store, 1).await;
    let id = record.session.id.clone();
    let agent = unique("agent");
    let empty = unique("session");
    let keys = BatchKeys {
        note_sessions: vec![id.clone(), empty.clone()],
        client_notes: vec![(id.clone(), agent.clone(), "n-1".into())],
        ..BatchKeys::default()
    };
    let before = ok(store.load_batch(&keys).await, "load before");
    assert_eq!(before.last_note_seqs.get(&id).copied().unwrap_or(0), 0);
    assert!(before.notes_by_client_id.is_empty());

    let first = note(&record, 1, 1, &agent);
    commit_ok(store, vec![Mutation::InsertNote(first.clone())], "note 1").await;
    commit_ok(
        store,
        vec![Mutation::InsertNote(note(&record, 2, 1, &agent))],
        "note 2",
    )
    .await;
    let after = ok(store.load_batch(&keys).await, "load after");
    assert_eq!(after.last_note_seqs.get(&id), Some(&2));
    assert_eq!(after.last_note_seqs.get(&empty).copied().unwrap_or(0), 0);
    assert_eq!(
        after
            .notes_by_client_id
            .get(&(id.clone(), agent.clone(), "n-1".into())),
        Some(&first)
    );
    assert!(
        after.messages_by_client_id.is_empty(),
        "notes are no messages"
    );

    // The same number again, and the same client id again.
    let mut same_seq = note(&record, 2, 1, &unique("other"));
    same_seq.client_msg_id = Some("fresh".into());
    let mut same_client_id = note(&record, 3, 1, &agent);
    same_client_id.client_msg_id = Some("n-1".into());
    for (what, taken) in [("number", same_seq), ("client id", same_client_id)] {
        let mut next = record.clone();
        next.version = record.version + 1;
        next.session.last_seq = 2;
        let outcome = store
            .commit(vec![
                Mutation::UpdateSession {
                    record: next,
                    expected_version: record.version,
                },
                Mutation::InsertMessage(message(&record, 2)),
                Mutation::InsertNote(taken),
            ])
            .await;
        assert!(
            matches!(outcome, Err(StoreError::Conflict(_))),
            "a taken {what}: {outcome:?}"
        );
        let session = ok(store.get_session(&id).await, "get").expect("stored");
        assert_eq!(session.last_seq, 1, "nothing of the batch was written");
        let notes = ok(store.notes(&id, MessageRange::Latest, 10).await, "notes");
        assert_eq!(notes.items.len(), 2);
    }
}

fn colleague(id: &str, at: i64) -> Participant {
    Participant {
        user_id: id.to_owned(),
        name: format!("Name of {id}"),
        role: Role::Agent,
        joined_at: Timestamp(at),
    }
}

/// A session's colleagues are written with its row (under its version)
/// and read back by every read of it, in order; the timeline keeps
/// `invited` and `left`.
pub async fn participants_round_trip(store: &dyn Store) {
    let record = session_with_messages(store, 0).await;
    let id = record.session.id.clone();
    let fresh = ok(store.get_session(&id).await, "get").expect("stored");
    assert!(fresh.participants.is_empty());

    let mut next = record.clone();
    next.version = record.version + 1;
    next.session.status = SessionStatus::Active;
    next.session.participants = vec![colleague("b2", 5_000), colleague("a1", 6_000)];
    let invited = SessionEvent {
        session_id: id.clone(),
        kind: SessionEventKind::Invited,
        at: Timestamp(6_000),
        by: Some(ClosedBy {
            user_id: "boss".into(),
            role: Role::Agent,
        }),
        agent_id: Some("a1".into()),
        agent_name: Some("Name of a1".into()),
        pool: record.session.pool.clone(),
        after_seq: 0,
    };
    commit_ok(
        store,
        vec![
            Mutation::UpdateSession {
                record: next.clone(),
                expected_version: record.version,
            },
            Mutation::SetParticipants {
                session_id: id.clone(),
                participants: next.session.participants.clone(),
            },
            Mutation::RecordSessionEvent(invited.clone()),
        ],
        "invite",
    )
    .await;
    let read = ok(store.get_session(&id).await, "get").expect("stored");
    assert_eq!(read.participants, next.session.participants);
    let snapshot = ok(
        store
            .load_batch(&BatchKeys {
                session_ids: vec![id.clone()],
                ..BatchKeys::default()
            })
            .await,
        "load",
    );
    assert_eq!(snapshot.sessions.get(&id), Some(&next));
    let listed = ok(
        store
            .list_sessions(&SessionQuery {
                scope: SessionScope::Pools(vec![record.session.pool.clone()]),
                status: None,
                pool: None,
                limit: 10,
                after: None,
            })
            .await,
        "list",
    );
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].participants, next.session.participants);

    // A later update that keeps them (a message, say) keeps them.
    let mut later = next.clone();
    later.version += 1;
    later.session.last_seq = 1;
    commit_ok(
        store,
        vec![
            Mutation::UpdateSession {
                record: later.clone(),
                expected_version: next.version,
            },
            Mutation::InsertMessage(message(&record, 1)),
        ],
        "a message",
    )
    .await;
    let read = ok(store.get_session(&id).await, "get").expect("stored");
    assert_eq!(read.participants, next.session.participants);

    // One leaves; a stale writer of the list fails as a whole.
    let mut left = later.clone();
    left.version += 1;
    left.session.participants.remove(0);
    let stale = store
        .commit(vec![
            Mutation::UpdateSession {
                record: left.clone(),
                expected_version: next.version,
            },
            Mutation::SetParticipants {
                session_id: id.clone(),
                participants: left.session.participants.clone(),
            },
        ])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(
        ok(store.get_session(&id).await, "get")
            .expect("stored")
            .participants
            .len(),
        2
    );
    let gone = SessionEvent {
        kind: SessionEventKind::Left,
        agent_id: Some("b2".into()),
        agent_name: Some("Name of b2".into()),
        after_seq: 1,
        at: Timestamp(7_000),
        ..invited.clone()
    };
    commit_ok(
        store,
        vec![
            Mutation::UpdateSession {
                record: left.clone(),
                expected_version: later.version,
            },
            Mutation::SetParticipants {
                session_id: id.clone(),
                participants: left.session.participants.clone(),
            },
            Mutation::RecordSessionEvent(gone.clone()),
        ],
        "leave",
    )
    .await;
    let read = ok(store.get_session(&id).await, "get").expect("stored");
    assert_eq!(read.participants, vec![colleague("a1", 6_000)]);
    let events = ok(store.session_events(&id, 10).await, "events");
    assert_eq!(events, vec![invited, gone]);
}
