//! Conformance checks of reactions and delivery positions, run by
//! `conformance::run_all` and per check by each store's tests: how
//! reactions are written (idempotently, with the time of the first add),
//! how a page of history carries them in the protocol's order, what a
//! batch loads of them, and delivery positions as the read positions are
//! checked. Each check makes its own session and user ids, as the rest of
//! the suite does.

use uuid::Uuid;

use crate::protocol::{Message, Reaction, ReadPosition, Role};
use crate::store::{
    reaction_list, BatchKeys, MessageRange, Mutation, SessionRecord, Store, StoreError,
};
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

/// A session with `messages` messages, seq 1 upwards.
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
    for seq in 1..=messages {
        mutations.push(Mutation::InsertMessage(Message {
            id: unique("message"),
            session_id: record.session.id.clone(),
            seq,
            sender_id: record.session.customer_id.clone(),
            sender_name: "Carla".into(),
            sender_role: Role::Customer,
            content: format!("message {seq}"),
            client_msg_id: None,
            created_at: Timestamp(1_000 + seq),
            attachments: Vec::new(),
            reactions: Vec::new(),
            internal: false,
            after_seq: None,
        }));
    }
    commit_ok(store, mutations, "a session and its messages").await;
    record.session.last_seq = messages;
    record
}

fn react(session_id: &str, seq: i64, emoji: &str, user: &str, on: bool, at: i64) -> Mutation {
    Mutation::SetReaction {
        session_id: session_id.into(),
        seq,
        emoji: emoji.into(),
        user_id: user.into(),
        on,
        at: Timestamp(at),
    }
}

fn reaction(emoji: &str, users: &[&str]) -> Reaction {
    Reaction {
        emoji: emoji.into(),
        count: users.len() as i64,
        user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
    }
}

/// Each message's reactions in a page read with `range`, by seq.
async fn reactions_read(
    store: &dyn Store,
    session_id: &str,
    range: MessageRange,
) -> Vec<(i64, Vec<Reaction>)> {
    let page = ok(store.messages(session_id, range, 50).await, "messages");
    page.items
        .into_iter()
        .map(|message| (message.seq, message.reactions))
        .collect()
}

/// Reactions are stored one per message, emoji and user; history pages
/// carry them, emoji by first use and users by when they reacted; adding
/// twice keeps the first time, taking back removes, and taking back one
/// never made changes nothing.
pub async fn message_reactions_are_stored_and_read(store: &dyn Store) {
    let record = session_with_messages(store, 3).await;
    let id = record.session.id.as_str();
    commit_ok(
        store,
        vec![
            react(id, 1, "👍", "bob", true, 20),
            react(id, 1, "❤️", "ann", true, 10),
            react(id, 1, "👍", "ann", true, 30),
            react(id, 3, "🎉", "bob", true, 40),
        ],
        "four reactions",
    )
    .await;
    let expected_first = vec![reaction("❤️", &["ann"]), reaction("👍", &["bob", "ann"])];
    for range in [
        MessageRange::After(0),
        MessageRange::Latest,
        MessageRange::Before(4),
    ] {
        assert_eq!(
            reactions_read(store, id, range).await,
            vec![
                (1, expected_first.clone()),
                (2, vec![]),
                (3, vec![reaction("🎉", &["bob"])]),
            ],
            "reactions with the page read as {range:?}"
        );
    }
    assert_eq!(
        reactions_read(store, id, MessageRange::After(2)).await,
        vec![(3, vec![reaction("🎉", &["bob"])])],
        "a page's reactions are its own messages'"
    );

    // Again, later: the first time stays, so the order does not move.
    commit_ok(
        store,
        vec![
            react(id, 1, "❤️", "ann", true, 50),
            react(id, 2, "👍", "nobody", false, 50),
        ],
        "a repeat and a take-back never made",
    )
    .await;
    assert_eq!(
        reactions_read(store, id, MessageRange::After(0)).await[0],
        (1, expected_first.clone())
    );
    assert_eq!(
        reactions_read(store, id, MessageRange::After(0)).await[1].1,
        vec![]
    );

    // Ann takes ❤️ back and gives it again in one batch: it is now the
    // newest emoji of the message.
    commit_ok(
        store,
        vec![
            react(id, 1, "❤️", "ann", false, 60),
            react(id, 1, "❤️", "ann", true, 61),
            react(id, 3, "🎉", "bob", false, 62),
        ],
        "a take-back and a new reaction",
    )
    .await;
    assert_eq!(
        reactions_read(store, id, MessageRange::After(0)).await,
        vec![
            (
                1,
                vec![reaction("👍", &["bob", "ann"]), reaction("❤️", &["ann"])]
            ),
            (2, vec![]),
            (3, vec![]),
        ]
    );

    // What a batch loads of a message: its rows, which give the same list.
    let keys = BatchKeys {
        reactions: vec![(id.to_owned(), 1), (id.to_owned(), 3)],
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    let rows = snapshot
        .reactions
        .get(&(id.to_owned(), 1))
        .expect("message 1 has reaction rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        reaction_list(rows),
        vec![reaction("👍", &["bob", "ann"]), reaction("❤️", &["ann"])]
    );
    assert!(
        !snapshot.reactions.contains_key(&(id.to_owned(), 3)),
        "a message without reactions has no rows"
    );
}

fn position(user_id: &str, role: Role, up_to_seq: i64) -> ReadPosition {
    ReadPosition {
        user_id: user_id.into(),
        role,
        up_to_seq,
    }
}

/// Delivery positions are set and replaced per user, read by user id,
/// loaded by a batch, and kept apart from read positions.
pub async fn delivery_positions_set_and_update(store: &dyn Store) {
    let record = session_with_messages(store, 4).await;
    let id = record.session.id.clone();
    let set = |user: &str, role: Role, up_to_seq: i64| Mutation::SetDeliveryPosition {
        session_id: id.clone(),
        position: position(user, role, up_to_seq),
        delivered_at: Timestamp(up_to_seq * 1_000),
    };
    commit_ok(
        store,
        vec![set("bob", Role::Agent, 3), set("alice", Role::Customer, 1)],
        "two delivery positions",
    )
    .await;
    assert_eq!(
        ok(store.delivery_positions(&id).await, "delivery_positions"),
        vec![
            position("alice", Role::Customer, 1),
            position("bob", Role::Agent, 3)
        ]
    );
    assert_eq!(
        ok(store.read_positions(&id).await, "read_positions"),
        vec![],
        "delivery moves no read position"
    );
    commit_ok(
        store,
        vec![
            set("alice", Role::Customer, 2),
            set("alice", Role::Customer, 4),
        ],
        "alice twice in one batch",
    )
    .await;
    assert_eq!(
        ok(store.delivery_positions(&id).await, "delivery_positions"),
        vec![
            position("alice", Role::Customer, 4),
            position("bob", Role::Agent, 3)
        ],
        "the last position of a batch wins"
    );
    let keys = BatchKeys {
        delivery_positions: vec![(id.clone(), "alice".into()), (id.clone(), unique("user"))],
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    assert_eq!(snapshot.delivery_positions.len(), 1);
    assert_eq!(
        snapshot.delivery_positions.get(&(id, "alice".into())),
        Some(&4)
    );
    assert_eq!(
        ok(
            store.delivery_positions(&unique("missing")).await,
            "delivery_positions"
        ),
        vec![],
        "an unknown session has no delivery positions"
    );
}
