//! Conformance suite every store implementation must pass.
//!
//! The checks are written once against `&dyn Store`, so the SQLite file of
//! standalone mode and the PostgreSQL database of the cluster are held to
//! exactly the same behaviour. Each check makes its own session ids,
//! customers and pool names (random suffixes) and never assumes an empty
//! store, so checks may run concurrently, repeatedly, and against a
//! database that other runs share.
//!
//! `run_all` runs every check; each is also public so an implementation's
//! tests can run them one by one for clearer failures.

use std::collections::HashMap;

use uuid::Uuid;

use crate::protocol::{AgentStatus, Message, ReadPosition, Role, Session, SessionStatus};
use crate::store::{
    AgentRecord, BatchKeys, BatchSnapshot, HeldChat, MessageRange, Mutation, QueuedSession,
    RoutedAgent, RoutingChange, SessionCursor, SessionQuery, SessionRecord, SessionScope, Store,
    StoreError,
};
use crate::Timestamp;

pub use super::notes_conformance::{
    notes_are_stored_apart_from_messages, notes_load_and_conflict, participants_round_trip,
};
pub use super::reaction_conformance::{
    delivery_positions_set_and_update, message_reactions_are_stored_and_read,
};

/// Runs every check in turn.
pub async fn run_all(store: &dyn Store) {
    ping_answers(store).await;
    empty_commit_is_a_no_op(store).await;
    session_round_trip(store).await;
    duplicate_session_conflicts(store).await;
    update_checks_version(store).await;
    updates_keep_or_move_a_session_in_the_lists(store).await;
    failed_batch_writes_nothing(store).await;
    racing_updates_have_one_winner(store).await;
    duplicate_seq_conflicts(store).await;
    duplicate_client_msg_id_conflicts(store).await;
    null_client_ids_never_collide(store).await;
    load_batch_returns_known_keys(store).await;
    remember_user_keeps_latest_name(store).await;
    agent_directory(store).await;
    message_pages(store).await;
    list_sessions_filters(store).await;
    list_sessions_pages_by_cursor(store).await;
    read_positions_set_and_update(store).await;
    pool_figures_counts(store).await;
    pool_figures_of_an_empty_pool(store).await;
    routed_agents_mirror_the_directory(store).await;
    change_routing_stores_status_and_capacity(store).await;
    commits_adjust_agent_load(store).await;
    load_bound_fails_the_whole_batch(store).await;
    racing_load_adjustments_respect_the_bound(store).await;
    queue_orders_waiting_sessions(store).await;
    chats_of_agents_seen_before_a_cutoff(store).await;
    // Reactions and delivery positions.
    message_reactions_are_stored_and_read(store).await;
    delivery_positions_set_and_update(store).await;
    // Internal notes and invited colleagues.
    notes_are_stored_apart_from_messages(store).await;
    notes_load_and_conflict(store).await;
    participants_round_trip(store).await;
}

/// Declares, in the calling module, one test per check, each on a fresh
/// store, so that a failure names the check; and
/// `whole_suite_twice_on_one_database`, the whole suite twice on one
/// store, since the checks must not depend on an empty database (as when
/// they run against a shared PostgreSQL). `$open` is an async fn giving a
/// guard and the store; the guard keeps what the store lives in (a file, a
/// schema) until the check is done with the store.
#[cfg(test)]
macro_rules! tests_per_check {
    ($open:path) => {
        $crate::store::conformance::tests_per_check!(
            $open;
            ping_answers,
            empty_commit_is_a_no_op,
            session_round_trip,
            duplicate_session_conflicts,
            update_checks_version,
            updates_keep_or_move_a_session_in_the_lists,
            failed_batch_writes_nothing,
            racing_updates_have_one_winner,
            duplicate_seq_conflicts,
            duplicate_client_msg_id_conflicts,
            null_client_ids_never_collide,
            load_batch_returns_known_keys,
            remember_user_keeps_latest_name,
            agent_directory,
            message_pages,
            list_sessions_filters,
            list_sessions_pages_by_cursor,
            read_positions_set_and_update,
            pool_figures_counts,
            pool_figures_of_an_empty_pool,
            routed_agents_mirror_the_directory,
            change_routing_stores_status_and_capacity,
            commits_adjust_agent_load,
            load_bound_fails_the_whole_batch,
            racing_load_adjustments_respect_the_bound,
            queue_orders_waiting_sessions,
            chats_of_agents_seen_before_a_cutoff,
            message_reactions_are_stored_and_read,
            delivery_positions_set_and_update,
            notes_are_stored_apart_from_messages,
            notes_load_and_conflict,
            participants_round_trip,
        );
    };
    ($open:path; $($check:ident),* $(,)?) => {
        mod conformance_checks {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let (guard, store) = $open().await;
                    $crate::store::conformance::$check(&store).await;
                    drop(store);
                    drop(guard);
                }
            )*
        }

        #[tokio::test]
        async fn whole_suite_twice_on_one_database() {
            let (guard, store) = $open().await;
            $crate::store::conformance::run_all(&store).await;
            $crate::store::conformance::run_all(&store).await;
            drop(store);
            drop(guard);
        }
    };
}

#[cfg(test)]
pub(crate) use tests_per_check;

pub async fn ping_answers(store: &dyn Store) {
    if let Err(err) = store.ping().await {
        panic!("ping failed: {err}");
    }
}

pub async fn empty_commit_is_a_no_op(store: &dyn Store) {
    commit_ok(store, Vec::new(), "empty batch").await;
}

/// Every field comes back as written, `None`s included, through both
/// `get_session` and `load_batch`.
pub async fn session_round_trip(store: &dyn Store) {
    let full = SessionRecord {
        session: Session {
            id: unique("session"),
            customer_id: unique("customer"),
            customer_name: "Carla Ortiz".into(),
            agent_id: Some(unique("agent")),
            agent_name: Some("Ann Ågren".into()),
            pool: unique("pool"),
            status: SessionStatus::Closed,
            subject: Some("Billing: “double charge” 💳".into()),
            created_at: at(1_000),
            assigned_at: Some(at(2_000)),
            closed_at: Some(at(9_000)),
            last_seq: 7,
            last_message_at: Some(at(8_000)),
            participants: Vec::new(),
        },
        version: 5,
        first_assigned_at: Some(at(1_500)),
        first_response_at: Some(at(3_000)),
        first_response_ms: Some(1_500),
    };
    let bare = pending_session(&unique("pool"), at(1_000));
    commit_ok(
        store,
        vec![
            Mutation::InsertSession(full.clone()),
            Mutation::InsertSession(bare.clone()),
        ],
        "insert two sessions",
    )
    .await;

    for record in [&full, &bare] {
        let id = &record.session.id;
        let found = ok(store.get_session(id).await, "get_session");
        assert_eq!(found.as_ref(), Some(&record.session), "get_session({id})");
        assert_eq!(
            stored_record(store, id).await.as_ref(),
            Some(record),
            "load_batch of session {id}"
        );
    }
    let missing = ok(store.get_session(&unique("missing")).await, "get_session");
    assert_eq!(missing, None, "an unknown session id gives None");
}

/// Inserting a session id that exists already is a race lost, not a crash.
pub async fn duplicate_session_conflicts(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let mut again = record.clone();
    again.session.customer_name = "Someone Else".into();
    commit_conflicts(
        store,
        vec![Mutation::InsertSession(again)],
        "inserting an existing session id",
    )
    .await;
    assert_eq!(
        stored_record(store, &record.session.id).await,
        Some(record),
        "the existing session is untouched"
    );
}

pub async fn update_checks_version(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let assigned = assigned_to(&record, &unique("agent"));
    commit_ok(
        store,
        vec![Mutation::UpdateSession {
            record: assigned.clone(),
            expected_version: record.version,
        }],
        "update at the current version",
    )
    .await;
    assert_eq!(
        stored_record(store, &record.session.id).await.as_ref(),
        Some(&assigned),
        "the update is stored with its new version"
    );

    let mut stale = assigned.clone();
    stale.version = assigned.version + 1;
    stale.session.status = SessionStatus::Closed;
    stale.session.closed_at = Some(at(50_000));
    commit_conflicts(
        store,
        vec![Mutation::UpdateSession {
            record: stale,
            expected_version: record.version,
        }],
        "update at a stale version",
    )
    .await;
    assert_eq!(
        stored_record(store, &record.session.id).await,
        Some(assigned),
        "a stale update changes nothing"
    );
}

/// An update that leaves the listed columns (pool, status, customer,
/// creation time) as they were and one that changes them both check the
/// version and both leave the session where the lists find it.
pub async fn updates_keep_or_move_a_session_in_the_lists(store: &dyn Store) {
    let (pool_a, pool_b) = (unique("pool"), unique("pool"));
    let record = new_session(store, &pool_a).await;
    let id = record.session.id.clone();
    let mut messaged = record.clone();
    messaged.version = record.version + 1;
    messaged.session.last_seq = 1;
    messaged.session.last_message_at = Some(at(1_500));
    commit_ok(
        store,
        vec![Mutation::UpdateSession {
            record: messaged.clone(),
            expected_version: record.version,
        }],
        "an update of the last message only",
    )
    .await;
    assert_eq!(stored_record(store, &id).await.as_ref(), Some(&messaged));

    let mut stale = messaged.clone();
    stale.version = messaged.version + 1;
    stale.session.last_seq = 2;
    commit_conflicts(
        store,
        vec![Mutation::UpdateSession {
            record: stale,
            expected_version: record.version,
        }],
        "an update of the last message at a stale version",
    )
    .await;
    let mut moved = assigned_to(&messaged, &unique("agent"));
    moved.session.pool = pool_b.clone();
    commit_conflicts(
        store,
        vec![Mutation::UpdateSession {
            record: moved.clone(),
            expected_version: record.version,
        }],
        "a move at a stale version",
    )
    .await;
    assert_eq!(stored_record(store, &id).await.as_ref(), Some(&messaged));

    commit_ok(
        store,
        vec![Mutation::UpdateSession {
            record: moved.clone(),
            expected_version: messaged.version,
        }],
        "a move to another pool and status",
    )
    .await;
    assert_eq!(stored_record(store, &id).await.as_ref(), Some(&moved));
    let listed = |pool: &str, status: SessionStatus| {
        query(
            SessionScope::Pools(vec![pool.to_owned()]),
            Some(status),
            None,
        )
    };
    let found = |query: SessionQuery| async move {
        match store.list_sessions(&query).await {
            Ok(sessions) => ids(&sessions),
            Err(err) => panic!("list sessions: {err}"),
        }
    };
    assert!(
        found(listed(&pool_a, SessionStatus::Pending))
            .await
            .is_empty(),
        "the old pool no longer lists it"
    );
    assert_eq!(
        found(listed(&pool_b, SessionStatus::Active)).await,
        vec![id.clone()],
        "the new pool lists it under its new status"
    );
    assert_eq!(
        found(query(
            SessionScope::Customer(moved.session.customer_id.clone()),
            None,
            None
        ))
        .await,
        vec![id],
        "its customer still finds it once"
    );
}

/// A batch fails as a whole: the mutations before the failing one are
/// rolled back too, whichever kind of conflict stops it.
pub async fn failed_batch_writes_nothing(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = record.session.id.clone();
    let customer = record.session.customer_id.clone();
    let user = unique("user");
    let first = message(&id, 1, &customer, Some("c-1"));
    let mut stale = assigned_to(&record, &unique("agent"));
    stale.version = record.version + 7;
    commit_conflicts(
        store,
        vec![
            Mutation::RememberUser {
                user_id: user.clone(),
                name: "Ann".into(),
            },
            Mutation::InsertMessage(first.clone()),
            Mutation::SetReadPosition {
                session_id: id.clone(),
                position: read_position(&customer, Role::Customer, 1),
                read_at: at(1_000),
            },
            Mutation::UpdateSession {
                record: stale,
                expected_version: record.version + 6,
            },
        ],
        "batch ending in a stale update",
    )
    .await;
    let keys = BatchKeys {
        session_ids: vec![id.clone()],
        client_messages: vec![(id.clone(), customer.clone(), "c-1".into())],
        read_positions: vec![(id.clone(), customer.clone())],
        user_ids: vec![user],
        agent_ids: Vec::new(),
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    assert_eq!(
        snapshot.sessions.get(&id),
        Some(&record),
        "session unchanged"
    );
    assert!(
        snapshot.messages_by_client_id.is_empty(),
        "no message stored"
    );
    assert!(
        snapshot.read_positions.is_empty(),
        "no read position stored"
    );
    assert!(snapshot.user_names.is_empty(), "no user name stored");
    assert_eq!(
        seqs(store, &id, MessageRange::Latest, 10).await,
        (vec![], false)
    );

    commit_ok(store, vec![Mutation::InsertMessage(first)], "first message").await;
    commit_conflicts(
        store,
        vec![
            Mutation::UpdateSession {
                record: assigned_to(&record, &unique("agent")),
                expected_version: record.version,
            },
            Mutation::InsertMessage(message(&id, 1, &customer, Some("c-2"))),
        ],
        "batch ending in a colliding message",
    )
    .await;
    assert_eq!(
        stored_record(store, &id).await,
        Some(record),
        "the update before the colliding message is rolled back"
    );
}

/// Two writers updating the same version at once: exactly one wins.
pub async fn racing_updates_have_one_winner(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let (agent_a, agent_b) = (unique("agent"), unique("agent"));
    let update = |agent: &str| {
        vec![Mutation::UpdateSession {
            record: assigned_to(&record, agent),
            expected_version: record.version,
        }]
    };
    let (a, b) = tokio::join!(
        store.commit(update(&agent_a)),
        store.commit(update(&agent_b))
    );
    let winner = match (&a, &b) {
        (Ok(()), Err(StoreError::Conflict(_))) => &agent_a,
        (Err(StoreError::Conflict(_)), Ok(())) => &agent_b,
        _ => panic!("expected exactly one winner and one Conflict, got {a:?} and {b:?}"),
    };
    let stored = ok(store.get_session(&record.session.id).await, "get_session");
    assert_eq!(
        stored.and_then(|s| s.agent_id).as_ref(),
        Some(winner),
        "the stored agent is the winner's"
    );
}

pub async fn duplicate_seq_conflicts(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = &record.session.id;
    let customer = &record.session.customer_id;
    let original = message(id, 1, customer, Some("c-1"));
    commit_ok(
        store,
        vec![Mutation::InsertMessage(original.clone())],
        "seq 1",
    )
    .await;

    let mut other_sender = message(id, 1, &unique("agent"), Some("c-2"));
    other_sender.sender_role = Role::Agent;
    commit_conflicts(
        store,
        vec![Mutation::InsertMessage(other_sender)],
        "a second seq 1 from another sender",
    )
    .await;
    commit_conflicts(
        store,
        vec![Mutation::InsertMessage(message(id, 1, customer, None))],
        "a second seq 1 without client id",
    )
    .await;
    let page = ok(
        store.messages(id, MessageRange::Latest, 10).await,
        "messages",
    );
    assert_eq!(page.items, vec![original], "only the first seq 1 is stored");
}

pub async fn duplicate_client_msg_id_conflicts(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = &record.session.id;
    let customer = &record.session.customer_id;
    let agent = unique("agent");
    commit_ok(
        store,
        vec![Mutation::InsertMessage(message(
            id,
            1,
            customer,
            Some("c-1"),
        ))],
        "first use of a client id",
    )
    .await;
    commit_conflicts(
        store,
        vec![Mutation::InsertMessage(message(
            id,
            2,
            customer,
            Some("c-1"),
        ))],
        "same sender, same client id, new seq",
    )
    .await;
    commit_ok(
        store,
        vec![Mutation::InsertMessage(message(id, 2, &agent, Some("c-1")))],
        "the same client id from another sender",
    )
    .await;
    let other = new_session(store, &record.session.pool).await;
    commit_ok(
        store,
        vec![Mutation::InsertMessage(message(
            &other.session.id,
            1,
            customer,
            Some("c-1"),
        ))],
        "the same sender and client id in another session",
    )
    .await;
    assert_eq!(
        seqs(store, id, MessageRange::Latest, 10).await,
        (vec![1, 2], false)
    );
}

pub async fn null_client_ids_never_collide(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = &record.session.id;
    let customer = &record.session.customer_id;
    let first = message(id, 1, customer, None);
    let second = message(id, 2, customer, None);
    commit_ok(store, vec![Mutation::InsertMessage(first.clone())], "first").await;
    commit_ok(
        store,
        vec![Mutation::InsertMessage(second.clone())],
        "a second message without client id from the same sender",
    )
    .await;
    let page = ok(
        store.messages(id, MessageRange::Latest, 10).await,
        "messages",
    );
    assert_eq!(page.items, vec![first, second]);
}

/// `load_batch` returns what exists for the keys and leaves out the rest.
pub async fn load_batch_returns_known_keys(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = record.session.id.clone();
    let customer = record.session.customer_id.clone();
    let user = unique("user");
    let sent = message(&id, 1, &customer, Some("c-1"));
    commit_ok(
        store,
        vec![
            Mutation::InsertMessage(sent.clone()),
            Mutation::SetReadPosition {
                session_id: id.clone(),
                position: read_position(&customer, Role::Customer, 1),
                read_at: at(2_000),
            },
            Mutation::RememberUser {
                user_id: user.clone(),
                name: "Ann Agent".into(),
            },
        ],
        "message, read position and user",
    )
    .await;

    let keys = BatchKeys {
        session_ids: vec![id.clone(), unique("missing")],
        client_messages: vec![
            (id.clone(), customer.clone(), "c-1".into()),
            (id.clone(), customer.clone(), "c-404".into()),
            (id.clone(), unique("someone"), "c-1".into()),
        ],
        read_positions: vec![(id.clone(), customer.clone()), (id.clone(), unique("user"))],
        user_ids: vec![user.clone(), unique("user")],
        agent_ids: vec![unique("agent")],
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    let expected = BatchSnapshot {
        sessions: HashMap::from([(id.clone(), record)]),
        messages_by_client_id: HashMap::from([(
            (id.clone(), customer.clone(), "c-1".into()),
            sent,
        )]),
        read_positions: HashMap::from([((id, customer), 1)]),
        user_names: HashMap::from([(user, "Ann Agent".into())]),
        agents: HashMap::new(),
        ..BatchSnapshot::default()
    };
    assert_eq!(
        snapshot, expected,
        "known keys present, unknown ones absent"
    );

    let empty = ok(store.load_batch(&BatchKeys::default()).await, "load_batch");
    assert_eq!(empty, BatchSnapshot::default(), "no keys, empty snapshot");
}

pub async fn remember_user_keeps_latest_name(store: &dyn Store) {
    let user = unique("user");
    let remember = |name: &str| Mutation::RememberUser {
        user_id: user.clone(),
        name: name.into(),
    };
    commit_ok(store, vec![remember("Ann")], "first name").await;
    commit_ok(store, vec![remember("Annie")], "renamed").await;
    assert_eq!(user_name(store, &user).await.as_deref(), Some("Annie"));
    commit_ok(
        store,
        vec![remember("Anna"), remember("Anne")],
        "two names in one batch",
    )
    .await;
    assert_eq!(
        user_name(store, &user).await.as_deref(),
        Some("Anne"),
        "the last mutation of a batch wins"
    );
}

/// The directory keeps one entry per agent: the latest name and pools
/// (sorted, without repeats), `last_seen_at` only moving forward; a pool's
/// list holds its agents only, sorted by name (bytewise) then id; the
/// worker's `load_batch` finds entries by id; the name is also the user's
/// display name.
pub async fn agent_directory(store: &dyn Store) {
    let (p1, p2) = (unique("pool"), unique("pool"));
    let mut both = vec![p1.clone(), p2.clone()];
    both.sort();
    let agent = |id: &str, name: &str, pools: &[&String], seen: i64| AgentRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        pools: pools.iter().map(|p| (*p).clone()).collect(),
        last_seen_at: at(seen),
    };
    let (bea, ann, cy, lower) = (
        unique("agent"),
        unique("agent"),
        unique("agent"),
        unique("agent"),
    );
    for record in [
        agent(&bea, "Bea", &[&p2, &p1, &p1], 1_000),
        agent(&ann, "Ann", &[&p1], 2_000),
        agent(&cy, "Cy", &[&p2], 3_000),
        agent(&lower, "ann", &[&p1], 4_000),
    ] {
        ok(store.remember_agent(&record).await, "remember_agent");
    }
    let listed = |agents: Vec<AgentRecord>| -> Vec<(String, String, Vec<String>, Timestamp)> {
        agents
            .into_iter()
            .map(|a| (a.id, a.name, a.pools, a.last_seen_at))
            .collect()
    };
    assert_eq!(
        listed(ok(store.list_agents(Some(&p1)).await, "list_agents")),
        vec![
            (ann.clone(), "Ann".into(), vec![p1.clone()], at(2_000)),
            (bea.clone(), "Bea".into(), both.clone(), at(1_000)),
            (lower.clone(), "ann".into(), vec![p1.clone()], at(4_000)),
        ],
        "a pool's agents, by name, bytewise"
    );
    assert_eq!(
        listed(ok(store.list_agents(Some(&p2)).await, "list_agents")),
        vec![
            (bea.clone(), "Bea".into(), both.clone(), at(1_000)),
            (cy.clone(), "Cy".into(), vec![p2.clone()], at(3_000)),
        ]
    );
    let everyone = ok(store.list_agents(None).await, "list_agents");
    for id in [&bea, &ann, &cy, &lower] {
        assert!(everyone.iter().any(|a| &a.id == id), "{id} listed");
    }
    assert!(
        everyone
            .windows(2)
            .all(|w| (&w[0].name, &w[0].id) <= (&w[1].name, &w[1].id)),
        "the whole directory is sorted by name then id"
    );

    // Seen again with a new name and fewer pools, with a clock behind.
    ok(
        store
            .remember_agent(&agent(&bea, "Bea Bell", &[&p2], 500))
            .await,
        "remember_agent",
    );
    let ids_of = |agents: Vec<AgentRecord>| agents.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids_of(ok(store.list_agents(Some(&p1)).await, "list_agents")),
        vec![ann.clone(), lower.clone()],
        "a pool no longer served"
    );
    let keys = BatchKeys {
        agent_ids: vec![bea.clone(), unique("agent")],
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    assert_eq!(
        snapshot.agents,
        HashMap::from([(bea.clone(), agent(&bea, "Bea Bell", &[&p2], 1_000))]),
        "latest name and pools, last seen never moves back"
    );
    assert_eq!(user_name(store, &bea).await.as_deref(), Some("Bea Bell"));
    assert_eq!(
        ok(
            store.list_agents(Some(&unique("pool"))).await,
            "list_agents"
        ),
        vec![],
        "a pool nobody serves"
    );
}

/// Pages in every direction, with `has_more` exact on the boundaries.
pub async fn message_pages(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = &record.session.id;
    let customer = &record.session.customer_id;
    let messages: Vec<Message> = (1..=5)
        .map(|seq| message(id, seq, customer, Some(&format!("c-{seq}"))))
        .collect();
    commit_ok(
        store,
        messages
            .iter()
            .cloned()
            .map(Mutation::InsertMessage)
            .collect(),
        "five messages",
    )
    .await;

    let all = vec![1, 2, 3, 4, 5];
    let cases: Vec<(MessageRange, usize, Vec<i64>, bool)> = vec![
        (MessageRange::After(0), 2, vec![1, 2], true),
        (MessageRange::After(2), 2, vec![3, 4], true),
        (MessageRange::After(2), 3, vec![3, 4, 5], false),
        (MessageRange::After(3), 2, vec![4, 5], false),
        (MessageRange::After(4), 2, vec![5], false),
        (MessageRange::After(5), 2, vec![], false),
        (MessageRange::After(0), 5, all.clone(), false),
        (MessageRange::After(0), 10, all.clone(), false),
        (MessageRange::Before(6), 2, vec![4, 5], true),
        (MessageRange::Before(4), 2, vec![2, 3], true),
        (MessageRange::Before(4), 3, vec![1, 2, 3], false),
        (MessageRange::Before(3), 2, vec![1, 2], false),
        (MessageRange::Before(2), 2, vec![1], false),
        (MessageRange::Before(1), 2, vec![], false),
        (MessageRange::Before(100), 10, all.clone(), false),
        (MessageRange::Latest, 2, vec![4, 5], true),
        (MessageRange::Latest, 4, vec![2, 3, 4, 5], true),
        (MessageRange::Latest, 5, all.clone(), false),
        (MessageRange::Latest, 10, all.clone(), false),
        (
            MessageRange::Between {
                after: 1,
                before: 5,
            },
            10,
            vec![2, 3, 4],
            false,
        ),
        (
            MessageRange::Between {
                after: 1,
                before: 5,
            },
            2,
            vec![2, 3],
            true,
        ),
        (
            MessageRange::Between {
                after: 0,
                before: 6,
            },
            5,
            all,
            false,
        ),
        (
            MessageRange::Between {
                after: 3,
                before: 4,
            },
            5,
            vec![],
            false,
        ),
        (
            MessageRange::Between {
                after: 4,
                before: 2,
            },
            5,
            vec![],
            false,
        ),
    ];
    for (range, limit, expected, has_more) in cases {
        assert_eq!(
            seqs(store, id, range, limit).await,
            (expected, has_more),
            "{range:?} with limit {limit}: (seqs, has_more)"
        );
    }

    let page = ok(
        store.messages(id, MessageRange::After(0), 5).await,
        "messages",
    );
    assert_eq!(page.items, messages, "messages come back field for field");
    assert_eq!(
        seqs(store, &unique("missing"), MessageRange::Latest, 10).await,
        (vec![], false),
        "an unknown session has no messages"
    );
}

/// Scope, status and pool filters, newest first.
pub async fn list_sessions_filters(store: &dyn Store) {
    let (pool_a, pool_b) = (unique("pool"), unique("pool"));
    let customer = unique("customer");
    let someone = unique("customer");
    let a1 = session_of(&pool_a, &customer, SessionStatus::Pending, at(1_000));
    let a2 = session_of(&pool_a, &someone, SessionStatus::Active, at(2_000));
    let a3 = session_of(&pool_a, &customer, SessionStatus::Closed, at(3_000));
    let b1 = session_of(&pool_b, &customer, SessionStatus::Pending, at(2_500));
    let b2 = session_of(&pool_b, &someone, SessionStatus::Pending, at(4_000));
    let all = [&a1, &a2, &a3, &b1, &b2];
    commit_ok(
        store,
        all.iter()
            .map(|r| Mutation::InsertSession((*r).clone()))
            .collect(),
        "five sessions in two pools",
    )
    .await;

    let both = SessionScope::Pools(vec![pool_a.clone(), pool_b.clone()]);
    let pending = Some(SessionStatus::Pending);
    let cases: Vec<(&str, SessionQuery, Vec<&SessionRecord>)> = vec![
        (
            "a customer's own sessions",
            query(SessionScope::Customer(customer.clone()), None, None),
            vec![&a3, &b1, &a1],
        ),
        (
            "a customer's pending sessions",
            query(SessionScope::Customer(customer.clone()), pending, None),
            vec![&b1, &a1],
        ),
        (
            "a customer's sessions in one pool",
            query(
                SessionScope::Customer(customer.clone()),
                None,
                Some(&pool_a),
            ),
            vec![&a3, &a1],
        ),
        (
            "one pool",
            query(SessionScope::Pools(vec![pool_a.clone()]), None, None),
            vec![&a3, &a2, &a1],
        ),
        (
            "two pools",
            query(both.clone(), None, None),
            vec![&b2, &a3, &b1, &a2, &a1],
        ),
        (
            "two pools, pending",
            query(both.clone(), pending, None),
            vec![&b2, &b1, &a1],
        ),
        (
            "two pools, narrowed to one",
            query(both.clone(), None, Some(&pool_b)),
            vec![&b2, &b1],
        ),
        (
            "a pool filter outside the scope",
            query(
                SessionScope::Pools(vec![pool_a.clone()]),
                None,
                Some(&pool_b),
            ),
            vec![],
        ),
        (
            "no pools in scope",
            query(SessionScope::Pools(vec![]), None, None),
            vec![],
        ),
        (
            "everything, one pool",
            query(SessionScope::All, None, Some(&pool_b)),
            vec![&b2, &b1],
        ),
        (
            "everything, one pool, active",
            query(
                SessionScope::All,
                Some(SessionStatus::Active),
                Some(&pool_a),
            ),
            vec![&a2],
        ),
        (
            "two pools, limit 2",
            SessionQuery {
                limit: 2,
                ..query(both, None, None)
            },
            vec![&b2, &a3],
        ),
    ];
    for (what, query, expected) in cases {
        let expected: Vec<Session> = expected.into_iter().map(|r| r.session.clone()).collect();
        let listed = ok(store.list_sessions(&query).await, what);
        assert_eq!(listed, expected, "list_sessions: {what}");
    }
}

/// Paging by cursor visits every session once, in order, including
/// sessions created in the same millisecond (ordered by id).
pub async fn list_sessions_pages_by_cursor(store: &dyn Store) {
    let pool = unique("pool");
    let customer = unique("customer");
    let mut records: Vec<SessionRecord> = [1_000, 2_000, 2_000, 2_000, 3_000, 4_000, 4_000]
        .into_iter()
        .map(|ms| session_of(&pool, &customer, SessionStatus::Pending, at(ms)))
        .collect();
    commit_ok(
        store,
        records
            .iter()
            .cloned()
            .map(Mutation::InsertSession)
            .collect(),
        "seven sessions",
    )
    .await;
    records.sort_by(|x, y| {
        (y.session.created_at, &y.session.id).cmp(&(x.session.created_at, &x.session.id))
    });
    let expected: Vec<String> = records.into_iter().map(|r| r.session.id).collect();

    let scopes = [
        query(SessionScope::Pools(vec![pool.clone()]), None, None),
        query(SessionScope::Customer(customer), None, None),
        query(SessionScope::All, None, Some(&pool)),
    ];
    for base in scopes {
        let whole = ok(store.list_sessions(&base).await, "list_sessions");
        assert_eq!(ids(&whole), expected, "one page, newest first, ties by id");
        for limit in [1, 3, 7] {
            let (visited, pages) = page_through(store, &base, limit).await;
            assert_eq!(visited, expected, "{:?} in pages of {limit}", base.scope);
            assert_eq!(
                pages,
                expected.len().div_ceil(limit) + 1,
                "pages of {limit}"
            );
        }
    }
}

pub async fn read_positions_set_and_update(store: &dyn Store) {
    let record = new_session(store, &unique("pool")).await;
    let id = record.session.id.clone();
    let set = |user: &str, role: Role, up_to_seq: i64| Mutation::SetReadPosition {
        session_id: id.clone(),
        position: read_position(user, role, up_to_seq),
        read_at: at(up_to_seq * 1_000),
    };
    commit_ok(
        store,
        vec![set("bob", Role::Agent, 3), set("alice", Role::Customer, 1)],
        "two read positions",
    )
    .await;
    assert_eq!(
        ok(store.read_positions(&id).await, "read_positions"),
        vec![
            read_position("alice", Role::Customer, 1),
            read_position("bob", Role::Agent, 3)
        ],
        "read positions ordered by user id"
    );

    commit_ok(store, vec![set("alice", Role::Customer, 4)], "move alice").await;
    assert_eq!(
        ok(store.read_positions(&id).await, "read_positions"),
        vec![
            read_position("alice", Role::Customer, 4),
            read_position("bob", Role::Agent, 3)
        ],
        "an update replaces the position"
    );
    let keys = BatchKeys {
        read_positions: vec![(id.clone(), "alice".into())],
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    assert_eq!(snapshot.read_positions.get(&(id, "alice".into())), Some(&4));
    assert_eq!(
        ok(
            store.read_positions(&unique("missing")).await,
            "read_positions"
        ),
        vec![],
        "an unknown session has no read positions"
    );
}

/// Every figure of a pool, with sessions and messages on both sides of the
/// day boundary, and a neighbouring pool that must not leak in.
pub async fn pool_figures_counts(store: &dyn Store) {
    let pool = unique("pool");
    let day = at(0);
    let ms = |offset: i64| Timestamp(day.millis() + offset);

    let pending_new = in_pool(&pool, SessionStatus::Pending, ms(1_000));
    let pending_old = in_pool(&pool, SessionStatus::Pending, ms(-5_000));
    // Waited 12 s, assigned and answered today (3 s).
    let mut active_today = in_pool(&pool, SessionStatus::Active, ms(-10_000));
    active_today.first_assigned_at = Some(ms(2_000));
    active_today.first_response_at = Some(ms(5_000));
    active_today.first_response_ms = Some(3_000);
    // Assigned yesterday (no wait today), answered today (1 s).
    let mut active_yesterday = in_pool(&pool, SessionStatus::Active, ms(-100_000));
    active_yesterday.first_assigned_at = Some(ms(-50_000));
    active_yesterday.first_response_at = Some(ms(0));
    active_yesterday.first_response_ms = Some(1_000);
    // Waited 4 s today, never answered, closed today.
    let mut closed_today = in_pool(&pool, SessionStatus::Closed, ms(1_000));
    closed_today.first_assigned_at = Some(ms(5_000));
    closed_today.session.closed_at = Some(ms(20_000));
    // Everything happened yesterday, up to the last millisecond.
    let mut closed_yesterday = in_pool(&pool, SessionStatus::Closed, ms(-200_000));
    closed_yesterday.first_assigned_at = Some(ms(-150_000));
    closed_yesterday.first_response_at = Some(ms(-140_000));
    closed_yesterday.first_response_ms = Some(10_000);
    closed_yesterday.session.closed_at = Some(ms(-1));
    let neighbour = in_pool(&unique("pool"), SessionStatus::Active, ms(1_000));

    let sessions = [
        &pending_new,
        &pending_old,
        &active_today,
        &active_yesterday,
        &closed_today,
        &closed_yesterday,
        &neighbour,
    ];
    let mut batch: Vec<Mutation> = sessions
        .iter()
        .map(|r| Mutation::InsertSession((*r).clone()))
        .collect();
    // Messages today: two in `active_today`, one at the very start of the
    // day in `active_yesterday`; the others are yesterday's or elsewhere.
    let stamped = [
        (&active_today, 1, ms(-5_000)),
        (&active_today, 2, ms(5_000)),
        (&active_today, 3, ms(6_000)),
        (&active_yesterday, 1, ms(0)),
        (&closed_yesterday, 1, ms(-1)),
        (&neighbour, 1, ms(2_000)),
    ];
    for (record, seq, created_at) in stamped {
        let mut m = message(&record.session.id, seq, &record.session.customer_id, None);
        m.created_at = created_at;
        batch.push(Mutation::InsertMessage(m));
    }
    commit_ok(store, batch, "a day of a pool").await;

    let figures = ok(store.pool_figures(&pool, day).await, "pool_figures");
    assert_eq!(figures.pending_sessions, 2, "pending sessions");
    assert_eq!(figures.active_sessions, 2, "active sessions");
    assert_eq!(figures.closed_today, 1, "sessions closed today");
    assert_eq!(
        figures.oldest_pending_created_at,
        Some(ms(-5_000)),
        "oldest pending session"
    );
    assert_close(figures.avg_wait_seconds, 8.0, "average wait (12 s and 4 s)");
    assert_close(
        figures.avg_first_response_seconds,
        2.0,
        "average first response (3 s and 1 s)",
    );
    assert_eq!(figures.messages_today, 3, "messages today");
}

pub async fn pool_figures_of_an_empty_pool(store: &dyn Store) {
    let figures = ok(
        store.pool_figures(&unique("pool"), at(0)).await,
        "pool_figures",
    );
    assert_eq!(figures.pending_sessions, 0);
    assert_eq!(figures.active_sessions, 0);
    assert_eq!(figures.closed_today, 0);
    assert_eq!(figures.oldest_pending_created_at, None);
    assert_eq!(figures.avg_wait_seconds, None);
    assert_eq!(figures.avg_first_response_seconds, None);
    assert_eq!(figures.messages_today, 0);
}

/// A remembered agent starts online, without a capacity of their own, with
/// no chats and never assigned, and is listed as `list_agents` lists them.
pub async fn routed_agents_mirror_the_directory(store: &dyn Store) {
    let (p1, p2) = (unique("pool"), unique("pool"));
    let (bea, ann, cy) = (unique("agent"), unique("agent"), unique("agent"));
    let records = [
        directory_entry(&bea, "Bea", &[&p1, &p2], 1_000),
        directory_entry(&ann, "Ann", &[&p1], 2_000),
        directory_entry(&cy, "Cy", &[&p2], 3_000),
    ];
    for record in &records {
        ok(store.remember_agent(record).await, "remember_agent");
    }
    for record in &records {
        let routed = ok(store.routed_agent(&record.id).await, "routed_agent");
        assert_eq!(
            routed,
            Some(fresh_routing(record)),
            "routed_agent({}) of a newly remembered agent",
            record.id
        );
    }
    for pool in [&p1, &p2] {
        let listed = ok(store.list_agents(Some(pool)).await, "list_agents");
        let routed = ok(store.routed_agents(Some(pool)).await, "routed_agents");
        assert_eq!(
            routed,
            listed.iter().map(fresh_routing).collect::<Vec<_>>(),
            "routed_agents({pool}) lists list_agents' agents in its order"
        );
        assert_eq!(routed.len(), 2, "two agents serve {pool}");
    }
    let mine = |ids: Vec<String>| -> Vec<String> {
        ids.into_iter()
            .filter(|id| [&bea, &ann, &cy].contains(&id))
            .collect()
    };
    let listed = ok(store.list_agents(None).await, "list_agents");
    let routed = ok(store.routed_agents(None).await, "routed_agents");
    let routed_ids = mine(routed.iter().map(|r| r.agent.id.clone()).collect());
    assert_eq!(
        routed_ids,
        vec![ann.clone(), bea.clone(), cy.clone()],
        "routed_agents(None) holds every agent, by name"
    );
    assert_eq!(
        routed_ids,
        mine(listed.iter().map(|a| a.id.clone()).collect()),
        "routed_agents(None) in list_agents' order"
    );
    assert!(
        routed
            .windows(2)
            .all(|w| (&w[0].agent.name, &w[0].agent.id) <= (&w[1].agent.name, &w[1].agent.id)),
        "routed_agents(None) sorted by name then id"
    );
    assert_eq!(
        ok(store.routed_agent(&unique("agent")).await, "routed_agent"),
        None,
        "an unknown agent has no routing"
    );
    assert!(
        ok(
            store.routed_agents(Some(&unique("pool"))).await,
            "routed_agents"
        )
        .is_empty(),
        "a pool nobody serves has no agents"
    );
}

/// Status and capacity changes are stored and returned, touch only their
/// agent, create nothing for an unknown one, and survive a reconnect.
pub async fn change_routing_stores_status_and_capacity(store: &dyn Store) {
    let pool = unique("pool");
    let (id, other) = (unique("agent"), unique("agent"));
    let record = directory_entry(&id, "Dee", &[&pool], 1_000);
    let neighbour = directory_entry(&other, "Eve", &[&pool], 1_000);
    ok(store.remember_agent(&record).await, "remember_agent");
    ok(store.remember_agent(&neighbour).await, "remember_agent");

    let mut expected = fresh_routing(&record);
    expected.status = AgentStatus::Away;
    let changed = ok(
        store
            .change_routing(&id, RoutingChange::Status(AgentStatus::Away))
            .await,
        "change_routing",
    );
    assert_eq!(changed.as_ref(), Some(&expected), "away is returned");
    assert_eq!(
        ok(store.routed_agent(&id).await, "routed_agent").as_ref(),
        Some(&expected),
        "away is stored"
    );

    expected.capacity = Some(3);
    let changed = ok(
        store
            .change_routing(&id, RoutingChange::Capacity(Some(3)))
            .await,
        "change_routing",
    );
    assert_eq!(changed.as_ref(), Some(&expected), "capacity 3 is returned");
    assert_eq!(
        ok(store.routed_agent(&id).await, "routed_agent").as_ref(),
        Some(&expected),
        "capacity 3 is stored, status kept"
    );
    assert_eq!(
        ok(store.routed_agent(&other).await, "routed_agent"),
        Some(fresh_routing(&neighbour)),
        "another agent's routing is untouched"
    );

    // A reconnect: new name, later time; routing is the agent's, not the
    // token's, so it stays.
    let again = directory_entry(&id, "Dee Dunn", &[&pool], 5_000);
    ok(store.remember_agent(&again).await, "remember_agent again");
    expected.agent = again.clone();
    assert_eq!(
        ok(store.routed_agent(&id).await, "routed_agent").as_ref(),
        Some(&expected),
        "a reconnect keeps status and capacity"
    );

    expected.capacity = None;
    let changed = ok(
        store
            .change_routing(&id, RoutingChange::Capacity(None))
            .await,
        "change_routing",
    );
    assert_eq!(changed.as_ref(), Some(&expected), "no capacity is returned");
    expected.status = AgentStatus::Online;
    let changed = ok(
        store
            .change_routing(&id, RoutingChange::Status(AgentStatus::Online))
            .await,
        "change_routing",
    );
    assert_eq!(changed.as_ref(), Some(&expected), "online again");
    assert_eq!(
        ok(store.routed_agent(&id).await, "routed_agent"),
        Some(expected),
        "online without a capacity is stored"
    );

    let unknown = unique("agent");
    for change in [
        RoutingChange::Status(AgentStatus::Away),
        RoutingChange::Capacity(Some(3)),
        RoutingChange::Capacity(None),
    ] {
        assert_eq!(
            ok(
                store.change_routing(&unknown, change).await,
                "change_routing"
            ),
            None,
            "{change:?} of an unknown agent"
        );
    }
    assert_eq!(
        ok(store.routed_agent(&unknown).await, "routed_agent"),
        None,
        "a change of an unknown agent creates nothing"
    );
    assert!(
        !ok(store.list_agents(None).await, "list_agents")
            .iter()
            .any(|a| a.id == unknown),
        "nor a directory entry"
    );
}

/// Commits move an agent's load: adjustments of one batch add up, an
/// assignment time is kept, a bound that holds lets the batch through, and
/// an agent outside the directory is skipped without failing the batch.
pub async fn commits_adjust_agent_load(store: &dyn Store) {
    let pool = unique("pool");
    let (id, other) = (unique("agent"), unique("agent"));
    let record = directory_entry(&id, "Fay", &[&pool], 1_000);
    let neighbour = directory_entry(&other, "Gil", &[&pool], 1_000);
    ok(store.remember_agent(&record).await, "remember_agent");
    ok(store.remember_agent(&neighbour).await, "remember_agent");

    commit_ok(
        store,
        vec![
            adjust_load(&id, 1, None, Some(at(7_000))),
            adjust_load(&id, 1, None, None),
            adjust_load(&id, 1, Some(5), None),
        ],
        "three adjustments of one agent",
    )
    .await;
    let routed = routing_of(store, &id).await;
    assert_eq!(routed.open_chats, 3, "adjustments of a batch are summed");
    assert_eq!(
        routed.last_assigned_at,
        Some(at(7_000)),
        "assigned_at sets last_assigned_at"
    );
    assert_eq!(
        routing_of(store, &other).await,
        fresh_routing(&neighbour),
        "another agent's load is untouched"
    );

    commit_ok(
        store,
        vec![adjust_load(&id, -1, None, None)],
        "a session taken away",
    )
    .await;
    let routed = routing_of(store, &id).await;
    assert_eq!(routed.open_chats, 2, "a negative delta lowers the load");
    assert_eq!(
        routed.last_assigned_at,
        Some(at(7_000)),
        "no assigned_at keeps last_assigned_at"
    );

    commit_ok(
        store,
        vec![adjust_load(&id, 1, Some(3), Some(at(9_000)))],
        "an assignment up to the bound exactly",
    )
    .await;
    let routed = routing_of(store, &id).await;
    assert_eq!(routed.open_chats, 3, "a load at the bound is allowed");
    assert_eq!(routed.last_assigned_at, Some(at(9_000)));

    let unknown = unique("agent");
    let session = pending_session(&pool, at(1_000));
    commit_ok(
        store,
        vec![
            Mutation::InsertSession(session.clone()),
            adjust_load(&unknown, 1, Some(0), Some(at(9_000))),
        ],
        "an adjustment of an agent outside the directory",
    )
    .await;
    assert_eq!(
        stored_record(store, &session.session.id).await,
        Some(session),
        "the batch with an unknown agent's adjustment still commits"
    );
    assert_eq!(
        ok(store.routed_agent(&unknown).await, "routed_agent"),
        None,
        "the unknown agent is not created"
    );
}

/// A batch that would leave an agent above its bound fails with
/// `Conflict` and writes nothing: neither the load nor its sessions and
/// messages.
pub async fn load_bound_fails_the_whole_batch(store: &dyn Store) {
    let pool = unique("pool");
    let id = unique("agent");
    let record = directory_entry(&id, "Hal", &[&pool], 1_000);
    ok(store.remember_agent(&record).await, "remember_agent");

    let mut session = assigned_to(&pending_session(&pool, at(1_000)), &id);
    session.version = 1;
    let sid = session.session.id.clone();
    let customer = session.session.customer_id.clone();
    commit_conflicts(
        store,
        vec![
            Mutation::InsertSession(session.clone()),
            Mutation::InsertMessage(message(&sid, 1, &customer, Some("c-1"))),
            adjust_load(&id, 2, Some(1), Some(at(2_000))),
        ],
        "a batch leaving the agent above the bound",
    )
    .await;
    assert_eq!(
        routing_of(store, &id).await,
        fresh_routing(&record),
        "the load and last assignment are unchanged"
    );
    assert_eq!(
        ok(store.get_session(&sid).await, "get_session"),
        None,
        "the session inserted in the failed batch is absent"
    );
    assert_eq!(
        seqs(store, &sid, MessageRange::Latest, 10).await,
        (vec![], false),
        "its message is absent"
    );

    commit_ok(
        store,
        vec![adjust_load(&id, 1, None, None)],
        "one chat without a bound",
    )
    .await;
    // Two adjustments that each fit, but not together.
    commit_conflicts(
        store,
        vec![
            Mutation::InsertSession(session.clone()),
            adjust_load(&id, 1, Some(2), Some(at(3_000))),
            adjust_load(&id, 1, Some(2), None),
        ],
        "two assignments of one batch that together pass the bound",
    )
    .await;
    let routed = routing_of(store, &id).await;
    assert_eq!(routed.open_chats, 1, "the failed batch moved no load");
    assert_eq!(routed.last_assigned_at, None);
    assert_eq!(ok(store.get_session(&sid).await, "get_session"), None);

    commit_ok(
        store,
        vec![
            Mutation::InsertSession(session.clone()),
            adjust_load(&id, 1, Some(2), Some(at(3_000))),
        ],
        "the same session within the bound",
    )
    .await;
    assert_eq!(routing_of(store, &id).await.open_chats, 2);
    assert_eq!(stored_record(store, &sid).await, Some(session));
}

/// Two commits at once, each giving the same agent their last free chat:
/// exactly one wins, and the agent never holds more than the bound.
pub async fn racing_load_adjustments_respect_the_bound(store: &dyn Store) {
    let pool = unique("pool");
    let id = unique("agent");
    ok(
        store
            .remember_agent(&directory_entry(&id, "Ida", &[&pool], 1_000))
            .await,
        "remember_agent",
    );
    for round in 0..20 {
        let take = |n: i64| {
            let session = pending_session(&pool, at(1_000 + round));
            let sid = session.session.id.clone();
            let batch = vec![
                Mutation::InsertSession(session),
                adjust_load(&id, 1, Some(1), Some(at(round * 10 + n))),
            ];
            (sid, batch)
        };
        let ((sid_a, a), (sid_b, b)) = (take(1), take(2));
        let (a, b) = tokio::join!(store.commit(a), store.commit(b));
        let (winner, loser) = match (&a, &b) {
            (Ok(()), Err(StoreError::Conflict(_))) => (&sid_a, &sid_b),
            (Err(StoreError::Conflict(_)), Ok(())) => (&sid_b, &sid_a),
            _ => panic!(
                "round {round}: expected exactly one success and one Conflict, got {a:?} and {b:?}"
            ),
        };
        assert_eq!(
            routing_of(store, &id).await.open_chats,
            1,
            "round {round}: the agent holds exactly the bound"
        );
        assert!(
            ok(store.get_session(winner).await, "get_session").is_some(),
            "round {round}: the winner's session is stored"
        );
        assert_eq!(
            ok(store.get_session(loser).await, "get_session"),
            None,
            "round {round}: the loser's session is not"
        );
        commit_ok(
            store,
            vec![adjust_load(&id, -1, None, None)],
            "reset the load",
        )
        .await;
        assert_eq!(routing_of(store, &id).await.open_chats, 0);
    }
}

/// A pool's queue: its pending sessions only, oldest first (ties by id),
/// at most the limit; what was assigned since a time; how many wait ahead
/// of a session; and which pools have a queue.
pub async fn queue_orders_waiting_sessions(store: &dyn Store) {
    let (pool, neighbour, idle) = (unique("pool"), unique("pool"), unique("pool"));
    let first = in_pool(&pool, SessionStatus::Pending, at(1_000));
    let mut tied = [
        in_pool(&pool, SessionStatus::Pending, at(2_000)),
        in_pool(&pool, SessionStatus::Pending, at(2_000)),
    ];
    tied.sort_by(|x, y| x.session.id.cmp(&y.session.id));
    let last = in_pool(&pool, SessionStatus::Pending, at(3_000));
    let since = at(3_000);
    let mut assigned_after = in_pool(&pool, SessionStatus::Active, at(500));
    assigned_after.first_assigned_at = Some(at(6_000));
    let mut assigned_at_since = in_pool(&pool, SessionStatus::Closed, at(600));
    assigned_at_since.first_assigned_at = Some(since);
    assigned_at_since.session.closed_at = Some(at(8_000));
    let mut assigned_before = in_pool(&pool, SessionStatus::Active, at(700));
    assigned_before.first_assigned_at = Some(at(2_999));
    // Back in the queue after an assignment since: waits and counts.
    let mut requeued = in_pool(&pool, SessionStatus::Pending, at(4_000));
    requeued.first_assigned_at = Some(at(4_500));
    let mut other_pool = in_pool(&neighbour, SessionStatus::Pending, at(100));
    other_pool.first_assigned_at = Some(at(5_000));
    let neighbour_tail = in_pool(&neighbour, SessionStatus::Pending, at(200));
    let mut idle_active = in_pool(&idle, SessionStatus::Active, at(100));
    idle_active.first_assigned_at = Some(at(5_000));
    let idle_closed = in_pool(&idle, SessionStatus::Closed, at(100));
    let all = [
        &last,
        &tied[1],
        &first,
        &tied[0],
        &assigned_after,
        &assigned_at_since,
        &assigned_before,
        &requeued,
        &other_pool,
        &neighbour_tail,
        &idle_active,
        &idle_closed,
    ];
    commit_ok(
        store,
        all.iter()
            .map(|r| Mutation::InsertSession((*r).clone()))
            .collect(),
        "a pool's sessions",
    )
    .await;
    let queued = |records: &[&SessionRecord]| -> Vec<QueuedSession> {
        records
            .iter()
            .map(|r| QueuedSession {
                session_id: r.session.id.clone(),
                customer_id: r.session.customer_id.clone(),
                created_at: r.session.created_at,
            })
            .collect()
    };
    let order = [&first, &tied[0], &tied[1], &last, &requeued];

    let view = ok(store.queue(&pool, 10, since).await, "queue");
    assert_eq!(
        view.waiting,
        queued(&order),
        "the pool's pending sessions, oldest first, ties by id"
    );
    assert_eq!(
        view.assigned_since, 3,
        "first assigned at or after the time, whatever the status now"
    );
    let view = ok(store.queue(&pool, 2, since).await, "queue");
    assert_eq!(view.waiting, queued(&order[..2]), "at most the limit");
    assert_eq!(view.assigned_since, 3, "the limit does not cut the count");
    let view = ok(store.queue(&pool, 10, at(6_001)).await, "queue");
    assert_eq!(view.assigned_since, 0, "nothing assigned after 6.001 s");
    let view = ok(store.queue(&idle, 10, at(0)).await, "queue");
    assert_eq!(view.waiting, vec![], "a pool without pending sessions");
    assert_eq!(view.assigned_since, 1);
    let view = ok(store.queue(&unique("pool"), 10, at(0)).await, "queue");
    assert_eq!(view, crate::store::QueueView::default(), "an unknown pool");

    for (ahead, record) in order.iter().enumerate() {
        assert_eq!(
            ok(
                store.waiting_ahead(&pool, &record.session.id).await,
                "waiting_ahead"
            ),
            ahead as i64,
            "sessions ahead of the one created at {:?}",
            record.session.created_at
        );
    }
    assert_eq!(
        ok(
            store.waiting_ahead(&pool, &unique("session")).await,
            "waiting_ahead"
        ),
        order.len() as i64,
        "a session not stored yet waits behind every waiting one"
    );
    assert_eq!(
        ok(
            store
                .waiting_ahead(&neighbour, &neighbour_tail.session.id)
                .await,
            "waiting_ahead"
        ),
        1,
        "only the pool's own sessions count"
    );
    assert_eq!(
        ok(
            store.waiting_ahead(&idle, &unique("session")).await,
            "waiting_ahead"
        ),
        0,
        "nobody waits in a pool without pending sessions"
    );

    let pools = ok(store.waiting_pools().await, "waiting_pools");
    assert!(
        pools.windows(2).all(|w| w[0] < w[1]),
        "waiting pools sorted without duplicates: {pools:?}"
    );
    assert!(pools.contains(&pool), "the pool with a queue is listed");
    assert!(pools.contains(&neighbour), "the neighbour is listed");
    assert!(
        !pools.contains(&idle),
        "a pool with only active and closed sessions is not listed"
    );
}

/// The active chats of agents gone since before a time, for returning them
/// to the queue; not waiting or closed ones, not those of agents seen
/// since.
pub async fn chats_of_agents_seen_before_a_cutoff(store: &dyn Store) {
    let pool = unique("pool");
    let (gone, here, unknown) = (unique("agent"), unique("agent"), unique("agent"));
    let cutoff = at(5_000);
    ok(
        store
            .remember_agent(&directory_entry(&gone, "Jo", &[&pool], 4_999))
            .await,
        "remember_agent",
    );
    ok(
        store
            .remember_agent(&directory_entry(&here, "Kim", &[&pool], 5_000))
            .await,
        "remember_agent",
    );
    let held = |agent: &str, status: SessionStatus| {
        let mut record = assigned_to(&in_pool(&pool, SessionStatus::Pending, at(1_000)), agent);
        record.version = 1;
        record.session.status = status;
        if status == SessionStatus::Closed {
            record.session.closed_at = Some(at(3_000));
        }
        record
    };
    let gone_a = held(&gone, SessionStatus::Active);
    let gone_b = held(&gone, SessionStatus::Active);
    let gone_pending = held(&gone, SessionStatus::Pending);
    let gone_closed = held(&gone, SessionStatus::Closed);
    let here_active = held(&here, SessionStatus::Active);
    let unknown_active = held(&unknown, SessionStatus::Active);
    let records = [
        &gone_a,
        &gone_b,
        &gone_pending,
        &gone_closed,
        &here_active,
        &unknown_active,
    ];
    commit_ok(
        store,
        records
            .iter()
            .map(|r| Mutation::InsertSession((*r).clone()))
            .collect(),
        "held chats",
    )
    .await;
    let mine = |chats: Vec<HeldChat>| -> Vec<HeldChat> {
        chats
            .into_iter()
            .filter(|c| records.iter().any(|r| r.session.id == c.session_id))
            .collect()
    };
    let mut expected: Vec<HeldChat> = [&gone_a, &gone_b]
        .iter()
        .map(|r| HeldChat {
            session_id: r.session.id.clone(),
            agent_id: gone.clone(),
            pool: pool.clone(),
        })
        .collect();
    expected.sort_by(|x, y| x.session_id.cmp(&y.session_id));
    let found = ok(
        store.chats_of_agents_seen_before(cutoff, 100_000).await,
        "chats_of_agents_seen_before",
    );
    let mut found = mine(found);
    found.sort_by(|x, y| x.session_id.cmp(&y.session_id));
    assert_eq!(
        found, expected,
        "only the active chats of the agent seen before the cutoff"
    );
    let limited = ok(
        store.chats_of_agents_seen_before(cutoff, 1).await,
        "chats_of_agents_seen_before",
    );
    assert_eq!(limited.len(), 1, "at most the limit");

    // The agent reconnects: their chats are theirs again.
    ok(
        store
            .remember_agent(&directory_entry(&gone, "Jo", &[&pool], 6_000))
            .await,
        "remember_agent",
    );
    let found = ok(
        store.chats_of_agents_seen_before(cutoff, 100_000).await,
        "chats_of_agents_seen_before",
    );
    assert_eq!(mine(found), vec![], "an agent seen again keeps their chats");
}

// ---------------------------------------------------------------------------
// Helpers

/// 2026-01-01T00:00:00Z, the start of a UTC day; test times are offsets
/// from it so that figures for "today" are predictable.
const DAY_START_MS: i64 = 1_767_225_600_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp(DAY_START_MS + offset_ms)
}

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

async fn commit_conflicts(store: &dyn Store, mutations: Vec<Mutation>, what: &str) {
    match store.commit(mutations).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn directory_entry(id: &str, name: &str, pools: &[&String], seen: i64) -> AgentRecord {
    let mut pools: Vec<String> = pools.iter().map(|p| (*p).clone()).collect();
    pools.sort();
    pools.dedup();
    AgentRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        pools,
        last_seen_at: at(seen),
    }
}

/// An agent's routing as it is right after they first connect.
fn fresh_routing(agent: &AgentRecord) -> RoutedAgent {
    RoutedAgent {
        agent: agent.clone(),
        status: AgentStatus::Online,
        capacity: None,
        open_chats: 0,
        last_assigned_at: None,
    }
}

async fn routing_of(store: &dyn Store, agent_id: &str) -> RoutedAgent {
    ok(store.routed_agent(agent_id).await, "routed_agent")
        .unwrap_or_else(|| panic!("agent {agent_id} is in the directory"))
}

fn adjust_load(
    agent_id: &str,
    delta: i64,
    at_most: Option<i64>,
    assigned_at: Option<Timestamp>,
) -> Mutation {
    Mutation::AdjustAgentLoad {
        agent_id: agent_id.to_owned(),
        delta,
        at_most,
        assigned_at,
    }
}

fn session_of(
    pool: &str,
    customer: &str,
    status: SessionStatus,
    created_at: Timestamp,
) -> SessionRecord {
    let mut record = SessionRecord::opened(
        unique("session"),
        customer.into(),
        "Carla".into(),
        pool.into(),
        None,
        created_at,
    );
    record.session.status = status;
    record
}

fn pending_session(pool: &str, created_at: Timestamp) -> SessionRecord {
    session_of(
        pool,
        &unique("customer"),
        SessionStatus::Pending,
        created_at,
    )
}

fn in_pool(pool: &str, status: SessionStatus, created_at: Timestamp) -> SessionRecord {
    session_of(pool, &unique("customer"), status, created_at)
}

async fn new_session(store: &dyn Store, pool: &str) -> SessionRecord {
    let record = pending_session(pool, at(1_000));
    commit_ok(
        store,
        vec![Mutation::InsertSession(record.clone())],
        "insert session",
    )
    .await;
    record
}

/// The next version of `record`, assigned to `agent`.
fn assigned_to(record: &SessionRecord, agent: &str) -> SessionRecord {
    let mut next = record.clone();
    next.version = record.version + 1;
    next.session.status = SessionStatus::Active;
    next.session.agent_id = Some(agent.into());
    next.session.agent_name = Some("Ann".into());
    next.session.assigned_at = Some(at(2_000));
    next.first_assigned_at = Some(at(2_000));
    next
}

fn message(session_id: &str, seq: i64, sender_id: &str, client_msg_id: Option<&str>) -> Message {
    Message {
        id: unique("message"),
        session_id: session_id.into(),
        seq,
        sender_id: sender_id.into(),
        sender_name: "Carla".into(),
        sender_role: Role::Customer,
        content: format!("message {seq}"),
        client_msg_id: client_msg_id.map(Into::into),
        created_at: at(seq * 1_000),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    }
}

fn read_position(user_id: &str, role: Role, up_to_seq: i64) -> ReadPosition {
    ReadPosition {
        user_id: user_id.into(),
        role,
        up_to_seq,
    }
}

fn query(scope: SessionScope, status: Option<SessionStatus>, pool: Option<&str>) -> SessionQuery {
    SessionQuery {
        scope,
        status,
        pool: pool.map(Into::into),
        limit: 50,
        after: None,
    }
}

fn ids(sessions: &[Session]) -> Vec<String> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

/// Follows cursors until an empty page; returns the ids seen and the number
/// of pages read (the empty one included).
async fn page_through(
    store: &dyn Store,
    base: &SessionQuery,
    limit: usize,
) -> (Vec<String>, usize) {
    let mut visited = Vec::new();
    let mut after = None;
    for pages in 1..=100 {
        let page_query = SessionQuery {
            limit,
            after: after.clone(),
            ..base.clone()
        };
        let page = ok(store.list_sessions(&page_query).await, "list_sessions page");
        assert!(page.len() <= limit, "a page holds at most {limit}");
        let Some(last) = page.last() else {
            return (visited, pages);
        };
        after = Some(SessionCursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        visited.extend(ids(&page));
    }
    panic!("paging did not end after 100 pages");
}

async fn stored_record(store: &dyn Store, id: &str) -> Option<SessionRecord> {
    let keys = BatchKeys {
        session_ids: vec![id.into()],
        ..BatchKeys::default()
    };
    let mut snapshot = ok(store.load_batch(&keys).await, "load_batch");
    snapshot.sessions.remove(id)
}

async fn user_name(store: &dyn Store, user_id: &str) -> Option<String> {
    let keys = BatchKeys {
        user_ids: vec![user_id.into()],
        ..BatchKeys::default()
    };
    let mut snapshot = ok(store.load_batch(&keys).await, "load_batch");
    snapshot.user_names.remove(user_id)
}

async fn seqs(
    store: &dyn Store,
    session_id: &str,
    range: MessageRange,
    limit: usize,
) -> (Vec<i64>, bool) {
    let page = ok(store.messages(session_id, range, limit).await, "messages");
    (page.items.iter().map(|m| m.seq).collect(), page.has_more)
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    match actual {
        Some(value) if (value - expected).abs() < 1e-9 => {}
        other => panic!("{what}: expected {expected}, got {other:?}"),
    }
}
