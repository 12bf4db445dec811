//! The business rules of `decide`, one rule at a time: snapshots are built
//! by hand, commands are applied to a `BatchState`, and the test looks at
//! the reply, the deliveries (down to the Socket.IO frame a browser gets)
//! and the writes the batch would commit.

use std::collections::HashSet;

use chat_shared::auth::Identity;
use chat_shared::envelope::{Command, CommandEnvelope, Delivery, ReplyBody};
use chat_shared::names::Names;
use chat_shared::protocol::{
    server_events, ClosedBy, Message, ReadPosition, Role, Session, SessionEvent, SessionEventKind,
    SessionStatus,
};
use chat_shared::store::{AgentRecord, BatchSnapshot, Mutation, SessionRecord};
use chat_shared::{ErrorCode, Timestamp};
use serde_json::{json, Value};

use super::{keys_for, BatchState, Decision};

/// "Now" of every batch unless a test says otherwise.
const NOW: Timestamp = Timestamp(1_700_000_000_000);
/// When the sessions of the fixtures were opened.
const CREATED: Timestamp = Timestamp(1_699_999_000_000);
/// When the active sessions of the fixtures were assigned.
const ASSIGNED: Timestamp = Timestamp(1_699_999_500_000);
/// Version the fixture sessions are loaded at.
const LOADED_VERSION: i64 = 7;

fn names() -> Names {
    Names::new("t")
}

fn actor(id: &str, role: Role, pools: &[&str]) -> Identity {
    Identity {
        user_id: id.to_owned(),
        name: format!("Name of {id}"),
        role,
        pools: pools.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn customer(id: &str) -> Identity {
    actor(id, Role::Customer, &[])
}

fn agent(id: &str, pools: &[&str]) -> Identity {
    actor(id, Role::Agent, pools)
}

fn admin(id: &str) -> Identity {
    actor(id, Role::Admin, &[])
}

/// A pending session of customer `c1` in `pool`, with `last_seq` messages.
fn pending(id: &str, pool: &str, last_seq: i64) -> SessionRecord {
    SessionRecord {
        session: Session {
            id: id.to_owned(),
            customer_id: "c1".to_owned(),
            customer_name: "Name of c1".to_owned(),
            agent_id: None,
            agent_name: None,
            pool: pool.to_owned(),
            status: SessionStatus::Pending,
            subject: Some("Billing".to_owned()),
            created_at: CREATED,
            assigned_at: None,
            closed_at: None,
            last_seq,
            last_message_at: (last_seq > 0).then_some(CREATED),
            participants: Vec::new(),
        },
        version: LOADED_VERSION,
        first_assigned_at: None,
        first_response_at: None,
        first_response_ms: None,
    }
}

/// The same session, assigned to `agent_id` at `ASSIGNED`.
fn active(id: &str, pool: &str, last_seq: i64, agent_id: &str) -> SessionRecord {
    let mut record = pending(id, pool, last_seq);
    record.session.status = SessionStatus::Active;
    record.session.agent_id = Some(agent_id.to_owned());
    record.session.agent_name = Some(format!("Name of {agent_id}"));
    record.session.assigned_at = Some(ASSIGNED);
    record.first_assigned_at = Some(ASSIGNED);
    record
}

fn closed(id: &str, pool: &str, last_seq: i64, agent_id: &str) -> SessionRecord {
    let mut record = active(id, pool, last_seq, agent_id);
    record.session.status = SessionStatus::Closed;
    record.session.closed_at = Some(ASSIGNED);
    record
}

/// A snapshot holding `records`, where every actor of `known` is already
/// remembered under its current name (so no `RememberUser` is due), and
/// every agent among them is in the directory with the pools of their token.
fn snapshot(
    records: impl IntoIterator<Item = SessionRecord>,
    known: &[&Identity],
) -> BatchSnapshot {
    let mut snapshot = BatchSnapshot::default();
    for record in records {
        snapshot.sessions.insert(record.session.id.clone(), record);
    }
    for actor in known {
        snapshot
            .user_names
            .insert(actor.user_id.clone(), actor.name.clone());
        if actor.role == Role::Agent {
            in_directory(&mut snapshot, &actor.user_id, &actor.name, &actor.pools);
        }
    }
    snapshot
}

/// Puts an agent in the snapshot's directory (and their display name).
fn in_directory(snapshot: &mut BatchSnapshot, id: &str, name: &str, pools: &[String]) {
    snapshot.user_names.insert(id.to_owned(), name.to_owned());
    snapshot.agents.insert(
        id.to_owned(),
        AgentRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            pools: pools.to_vec(),
            last_seen_at: CREATED,
        },
    );
}

/// The decision's last delivery is the session's timeline entry of
/// `kind`, to the session's sockets.
fn assert_timeline(decision: &Decision, kind: &str) {
    let entry = decision.deliveries.last().expect("a timeline entry");
    let session_id = entry.session_id.as_deref().expect("about a session");
    assert_eq!(entry.audience, [names().session_channel(session_id)]);
    let payload = payload(entry, server_events::SESSION_EVENT);
    assert_eq!(payload["kind"], kind, "{payload}");
    assert_eq!(payload["sessionId"], session_id);
}

/// One batch being decided, with message ids `m-1`, `m-2`, …
struct Batch {
    state: BatchState,
    issued: u32,
}

impl Batch {
    fn new(snapshot: BatchSnapshot) -> Self {
        Batch {
            state: BatchState::new(snapshot, names()),
            issued: 0,
        }
    }

    fn apply(&mut self, actor: &Identity, command: Command) -> Decision {
        self.apply_at(actor, command, NOW)
    }

    fn apply_at(&mut self, actor: &Identity, command: Command, now: Timestamp) -> Decision {
        let envelope = CommandEnvelope {
            reply_to: None,
            actor: actor.clone(),
            issued_at: now,
            command,
        };
        let issued = &mut self.issued;
        let mut new_id = || {
            *issued += 1;
            format!("m-{issued}")
        };
        self.state.apply(&envelope, now, &mut new_id)
    }

    fn mutations(self) -> Vec<Mutation> {
        self.state.into_mutations()
    }
}

fn create(session_id: &str, pool: &str, first_message: Option<&str>) -> Command {
    Command::CreateSession {
        session_id: session_id.to_owned(),
        pool: pool.to_owned(),
        subject: Some("Invoice".to_owned()),
        first_message: first_message.map(str::to_owned),
    }
}

fn send(session_id: &str, content: &str, client_msg_id: Option<&str>) -> Command {
    Command::SendMessage {
        session_id: session_id.to_owned(),
        content: content.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        attachment_ids: Vec::new(),
    }
}

fn assign(session_id: &str, agent_id: Option<&str>) -> Command {
    Command::Assign {
        session_id: session_id.to_owned(),
        agent_id: agent_id.map(str::to_owned),
    }
}

fn transfer(session_id: &str, agent_id: Option<&str>, pool: Option<&str>) -> Command {
    Command::Transfer {
        session_id: session_id.to_owned(),
        agent_id: agent_id.map(str::to_owned),
        pool: pool.map(str::to_owned),
    }
}

fn close(session_id: &str, reason: Option<&str>) -> Command {
    Command::Close {
        session_id: session_id.to_owned(),
        reason: reason.map(str::to_owned),
    }
}

fn mark_read(session_id: &str, up_to_seq: i64) -> Command {
    Command::MarkRead {
        session_id: session_id.to_owned(),
        up_to_seq,
    }
}

fn error_code(decision: &Decision) -> ErrorCode {
    match &decision.reply {
        Err(error) => error.code,
        Ok(body) => panic!("expected an error, got {body:?}"),
    }
}

fn session_reply(decision: &Decision) -> Session {
    match &decision.reply {
        Ok(ReplyBody::Session(session)) => session.clone(),
        other => panic!("expected a session, got {other:?}"),
    }
}

fn message_reply(decision: &Decision) -> (Message, bool) {
    match &decision.reply {
        Ok(ReplyBody::Message { message, duplicate }) => (message.clone(), *duplicate),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Checks that a delivery's frame is the Socket.IO event packet
/// `42/chat,["<event>",payload]` for its own event, and returns the payload.
fn payload(delivery: &Delivery, event: &str) -> Value {
    assert_eq!(delivery.event, event);
    let body = delivery
        .frame
        .strip_prefix("42/chat,")
        .unwrap_or_else(|| panic!("not an event packet of /chat: {}", delivery.frame));
    let packet: Value = serde_json::from_str(body).expect("the frame carries JSON");
    let parts = packet.as_array().expect("an event packet is a JSON array");
    assert_eq!(parts.len(), 2, "event name and one payload: {packet}");
    assert_eq!(parts[0], json!(event));
    parts[1].clone()
}

fn assert_no_duplicates(audience: &[String]) {
    let distinct: HashSet<&String> = audience.iter().collect();
    assert_eq!(
        distinct.len(),
        audience.len(),
        "repeated channel in {audience:?}"
    );
}

/// The session writes of a batch (inserts and updates).
fn session_writes(mutations: &[Mutation]) -> Vec<&Mutation> {
    mutations
        .iter()
        .filter(|m| {
            matches!(
                m,
                Mutation::InsertSession(_) | Mutation::UpdateSession { .. }
            )
        })
        .collect()
}

/// The single `UpdateSession` of a batch: its record and expected version.
fn the_update(mutations: &[Mutation]) -> (SessionRecord, i64) {
    let updates: Vec<(SessionRecord, i64)> = mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::UpdateSession {
                record,
                expected_version,
            } => Some((record.clone(), *expected_version)),
            _ => None,
        })
        .collect();
    assert_eq!(
        updates.len(),
        1,
        "one session update per batch: {mutations:?}"
    );
    updates.into_iter().next().expect("checked above")
}

fn inserted_messages(mutations: &[Mutation]) -> Vec<Message> {
    mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::InsertMessage(message) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Create session

#[test]
fn a_customer_opens_a_pending_session_with_default_fields() {
    let carla = customer("c1");
    let mut batch = Batch::new(BatchSnapshot::default());
    let decision = batch.apply(&carla, create("s1", "billing", None));

    let session = session_reply(&decision);
    assert_eq!(
        session,
        Session {
            id: "s1".into(),
            customer_id: "c1".into(),
            customer_name: "Name of c1".into(),
            agent_id: None,
            agent_name: None,
            pool: "billing".into(),
            status: SessionStatus::Pending,
            subject: Some("Invoice".into()),
            created_at: NOW,
            assigned_at: None,
            closed_at: None,
            last_seq: 0,
            last_message_at: None,
            participants: Vec::new(),
        }
    );
    assert_eq!(decision.stats_pools, vec!["billing".to_owned()]);

    assert_eq!(decision.deliveries.len(), 1);
    let delivery = &decision.deliveries[0];
    assert_eq!(
        delivery.audience,
        vec![names().pool_channel("billing"), names().admin_channel()]
    );
    assert_eq!(delivery.session_id.as_deref(), Some("s1"));
    assert_eq!(delivery.seq, None);
    assert_eq!(delivery.except_socket, None);
    let event = payload(delivery, server_events::NEW_PENDING_SESSION);
    assert_eq!(
        event,
        json!({"session": {
            "id": "s1", "customerId": "c1", "customerName": "Name of c1",
            "agentId": null, "agentName": null, "pool": "billing",
            "status": "pending", "subject": "Invoice",
            "createdAt": NOW.to_rfc3339(), "assignedAt": null, "closedAt": null,
            "lastSeq": 0, "lastMessageAt": null, "participants": []
        }})
    );

    assert_eq!(
        batch.mutations(),
        vec![
            Mutation::RememberUser {
                user_id: "c1".into(),
                name: "Name of c1".into()
            },
            Mutation::InsertSession(SessionRecord {
                session,
                version: 1,
                first_assigned_at: None,
                first_response_at: None,
                first_response_ms: None,
            }),
        ]
    );
}

#[test]
fn the_first_message_of_a_new_session_gets_seq_one() {
    let carla = customer("c1");
    let mut batch = Batch::new(snapshot([], &[&carla]));
    let decision = batch.apply(&carla, create("s1", "default", Some("My invoice is wrong")));

    let session = session_reply(&decision);
    assert_eq!(session.last_seq, 1);
    assert_eq!(session.last_message_at, Some(NOW));
    let event = payload(&decision.deliveries[0], server_events::NEW_PENDING_SESSION);
    assert_eq!(event["session"]["lastSeq"], json!(1));

    let mutations = batch.mutations();
    // The session row first: the message refers to it.
    assert!(matches!(&mutations[0], Mutation::InsertSession(r) if r.session == session));
    assert_eq!(
        mutations[1],
        Mutation::InsertMessage(Message {
            id: "m-1".into(),
            session_id: "s1".into(),
            seq: 1,
            sender_id: "c1".into(),
            sender_name: "Name of c1".into(),
            sender_role: Role::Customer,
            content: "My invoice is wrong".into(),
            client_msg_id: None,
            created_at: NOW,
            attachments: Vec::new(),
            reactions: Vec::new(),
            internal: false,
            after_seq: None,
        })
    );
    assert_eq!(mutations.len(), 2);
}

#[test]
fn only_customers_open_sessions() {
    for someone in [agent("a1", &["default"]), admin("root")] {
        let mut batch = Batch::new(snapshot([], &[&someone]));
        let decision = batch.apply(&someone, create("s1", "default", Some("hi")));
        assert_eq!(error_code(&decision), ErrorCode::Forbidden);
        assert!(decision.deliveries.is_empty());
        assert!(decision.stats_pools.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
}

#[test]
fn a_redelivered_create_answers_with_the_existing_session() {
    let carla = customer("c1");
    let existing = pending("s1", "billing", 1);
    let mut batch = Batch::new(snapshot([existing.clone()], &[&carla]));
    let decision = batch.apply(&carla, create("s1", "billing", Some("My invoice is wrong")));
    assert_eq!(session_reply(&decision), existing.session);
    // Nothing is written twice.
    assert_eq!(batch.mutations(), vec![]);
}

#[test]
fn a_redelivered_create_announces_a_still_pending_session_again() {
    // If the first attempt committed and died before publishing, the
    // redelivery is the only chance for the pool to hear of the session.
    let carla = customer("c1");
    let mut batch = Batch::new(snapshot([pending("s1", "billing", 0)], &[&carla]));
    let decision = batch.apply(&carla, create("s1", "billing", None));
    assert_eq!(decision.deliveries.len(), 1);
    let delivery = &decision.deliveries[0];
    assert_eq!(
        delivery.audience,
        vec![names().pool_channel("billing"), names().admin_channel()]
    );
    let event = payload(delivery, server_events::NEW_PENDING_SESSION);
    assert_eq!(event["session"]["id"], json!("s1"));

    // Once taken, it is no longer announced as pending.
    let mut batch = Batch::new(snapshot([active("s1", "billing", 0, "a1")], &[&carla]));
    let decision = batch.apply(&carla, create("s1", "billing", None));
    assert_eq!(session_reply(&decision).status, SessionStatus::Active);
    assert!(decision.deliveries.is_empty());
}

#[test]
fn a_session_id_of_another_customer_is_a_conflict() {
    let dave = customer("c2");
    let mut batch = Batch::new(snapshot([pending("s1", "default", 0)], &[&dave]));
    let decision = batch.apply(&dave, create("s1", "default", None));
    assert_eq!(error_code(&decision), ErrorCode::Conflict);
    assert!(decision.deliveries.is_empty());
    assert_eq!(batch.mutations(), vec![]);
}

// ---------------------------------------------------------------------------
// Send message

#[test]
fn a_message_gets_the_next_seq_and_goes_to_the_session_channel() {
    let carla = customer("c1");
    let record = active("s1", "default", 4, "a1");
    let mut batch = Batch::new(snapshot([record.clone()], &[&carla]));
    let decision = batch.apply(&carla, send("s1", "Any news?", Some("k-1")));

    let (message, duplicate) = message_reply(&decision);
    assert!(!duplicate);
    let expected = Message {
        id: "m-1".into(),
        session_id: "s1".into(),
        seq: 5,
        sender_id: "c1".into(),
        sender_name: "Name of c1".into(),
        sender_role: Role::Customer,
        content: "Any news?".into(),
        client_msg_id: Some("k-1".into()),
        created_at: NOW,
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    };
    assert_eq!(message, expected);
    assert_eq!(decision.stats_pools, vec!["default".to_owned()]);

    assert_eq!(decision.deliveries.len(), 1);
    let delivery = &decision.deliveries[0];
    assert_eq!(delivery.audience, vec![names().session_channel("s1")]);
    assert_eq!(delivery.session_id.as_deref(), Some("s1"));
    assert_eq!(delivery.seq, Some(5));
    assert_eq!(
        payload(delivery, server_events::NEW_MESSAGE),
        json!({
            "id": "m-1", "sessionId": "s1", "seq": 5, "senderId": "c1",
            "senderName": "Name of c1", "senderRole": "customer",
            "content": "Any news?", "clientMsgId": "k-1",
            "createdAt": NOW.to_rfc3339(), "attachments": [], "reactions": [],
            "internal": false
        })
    );

    let mut updated = record;
    updated.session.last_seq = 5;
    updated.session.last_message_at = Some(NOW);
    updated.version = LOADED_VERSION + 1;
    assert_eq!(
        batch.mutations(),
        vec![
            Mutation::UpdateSession {
                record: updated,
                expected_version: LOADED_VERSION,
            },
            Mutation::InsertMessage(expected),
        ]
    );
}

#[test]
fn only_participants_send() {
    let allowed = [customer("c1"), agent("a1", &["default"]), admin("root")];
    for sender in &allowed {
        let mut batch = Batch::new(snapshot([active("s1", "default", 4, "a1")], &[sender]));
        let decision = batch.apply(sender, send("s1", "hello", None));
        let (message, _) = message_reply(&decision);
        assert_eq!(message.seq, 5, "{} may send", sender.user_id);
        assert_eq!(message.sender_role, sender.role);
    }
    let refused = [
        // An agent of the pool who does not hold the session.
        agent("a2", &["default"]),
        // An agent of another pool.
        agent("a3", &["sales"]),
        // Another customer.
        customer("c2"),
    ];
    for sender in &refused {
        let mut batch = Batch::new(snapshot([active("s1", "default", 4, "a1")], &[sender]));
        let decision = batch.apply(sender, send("s1", "hello", None));
        assert_eq!(
            error_code(&decision),
            ErrorCode::Forbidden,
            "{}",
            sender.user_id
        );
        assert!(decision.deliveries.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
}

#[test]
fn a_pending_session_accepts_the_customer_and_refuses_agents() {
    let carla = customer("c1");
    let mut batch = Batch::new(snapshot([pending("s1", "default", 1)], &[&carla]));
    let (message, _) = message_reply(&batch.apply(&carla, send("s1", "still there?", None)));
    assert_eq!(message.seq, 2);

    let agent_of_pool = agent("a1", &["default"]);
    let mut batch = Batch::new(snapshot([pending("s1", "default", 1)], &[&agent_of_pool]));
    let decision = batch.apply(&agent_of_pool, send("s1", "hi", None));
    assert_eq!(error_code(&decision), ErrorCode::Forbidden);
    assert_eq!(batch.mutations(), vec![]);

    let root = admin("root");
    let mut batch = Batch::new(snapshot([pending("s1", "default", 1)], &[&root]));
    let (message, _) = message_reply(&batch.apply(&root, send("s1", "admin here", None)));
    assert_eq!(message.seq, 2);
}

#[test]
fn a_closed_session_refuses_new_messages() {
    for sender in [customer("c1"), agent("a1", &["default"]), admin("root")] {
        let mut batch = Batch::new(snapshot([closed("s1", "default", 3, "a1")], &[&sender]));
        let decision = batch.apply(&sender, send("s1", "hello?", Some("k-9")));
        assert_eq!(
            error_code(&decision),
            ErrorCode::SessionClosed,
            "{}",
            sender.user_id
        );
        assert!(decision.deliveries.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
}

#[test]
fn sends_of_one_batch_get_consecutive_seqs_and_one_session_update() {
    let carla = customer("c1");
    let ann = agent("a1", &["default"]);
    let record = active("s1", "default", 4, "a1");
    let mut batch = Batch::new(snapshot([record], &[&carla, &ann]));
    let senders = [&carla, &ann, &carla, &carla, &ann];
    let mut seqs = Vec::new();
    for (n, sender) in senders.iter().enumerate() {
        let decision = batch.apply(
            sender,
            send("s1", &format!("text {n}"), Some(&format!("k-{n}"))),
        );
        let (message, _) = message_reply(&decision);
        assert_eq!(decision.deliveries[0].seq, Some(message.seq));
        seqs.push(message.seq);
    }
    assert_eq!(seqs, vec![5, 6, 7, 8, 9]);

    let mutations = batch.mutations();
    let (record, expected_version) = the_update(&mutations);
    assert_eq!(expected_version, LOADED_VERSION);
    assert_eq!(record.version, LOADED_VERSION + 1);
    assert_eq!(record.session.last_seq, 9);
    let inserted = inserted_messages(&mutations);
    let inserted_seqs: Vec<i64> = inserted.iter().map(|m| m.seq).collect();
    assert_eq!(inserted_seqs, vec![5, 6, 7, 8, 9]);
    let contents: Vec<&str> = inserted.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["text 0", "text 1", "text 2", "text 3", "text 4"]);
}

#[test]
fn a_session_touched_by_many_commands_is_written_once() {
    let ann = agent("a1", &["default"]);
    let carla = customer("c1");
    let mut batch = Batch::new(snapshot([pending("s1", "default", 2)], &[&ann, &carla]));
    let later = |ms: i64| Timestamp(NOW.millis() + ms);
    session_reply(&batch.apply_at(&ann, assign("s1", None), later(0)));
    message_reply(&batch.apply_at(&ann, send("s1", "Hi, Ann here", None), later(3_000)));
    batch.apply_at(&carla, mark_read("s1", 3), later(4_000));
    session_reply(&batch.apply_at(&carla, close("s1", None), later(5_000)));

    let mutations = batch.mutations();
    let (record, expected_version) = the_update(&mutations);
    assert_eq!(expected_version, LOADED_VERSION);
    assert_eq!(record.version, LOADED_VERSION + 1);
    assert_eq!(record.session.status, SessionStatus::Closed);
    assert_eq!(record.session.agent_id.as_deref(), Some("a1"));
    assert_eq!(record.session.last_seq, 3);
    assert_eq!(record.session.closed_at, Some(later(5_000)));
    // Assigned and answered within the same batch.
    assert_eq!(record.first_assigned_at, Some(later(0)));
    assert_eq!(record.first_response_ms, Some(3_000));
    assert_eq!(session_writes(&mutations).len(), 1);
}

#[test]
fn a_stored_client_msg_id_answers_with_the_original_even_after_close() {
    let carla = customer("c1");
    let original = Message {
        id: "m-orig".into(),
        session_id: "s1".into(),
        seq: 3,
        sender_id: "c1".into(),
        sender_name: "Name of c1".into(),
        sender_role: Role::Customer,
        content: "first try".into(),
        client_msg_id: Some("k-1".into()),
        created_at: CREATED,
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    };
    let mut snap = snapshot([closed("s1", "default", 3, "a1")], &[&carla]);
    snap.messages_by_client_id
        .insert(("s1".into(), "c1".into(), "k-1".into()), original.clone());
    let mut batch = Batch::new(snap);
    let decision = batch.apply(&carla, send("s1", "second try", Some("k-1")));

    assert_eq!(message_reply(&decision), (original.clone(), true));
    // The event goes out again with the original seq, in case the first
    // attempt never published it.
    assert_eq!(decision.deliveries.len(), 1);
    let delivery = &decision.deliveries[0];
    assert_eq!(delivery.seq, Some(3));
    assert_eq!(delivery.audience, vec![names().session_channel("s1")]);
    let event = payload(delivery, server_events::NEW_MESSAGE);
    assert_eq!(event["id"], json!("m-orig"));
    assert_eq!(event["content"], json!("first try"));
    assert_eq!(batch.mutations(), vec![]);
}

#[test]
fn a_client_msg_id_repeated_in_one_batch_is_stored_once() {
    let carla = customer("c1");
    let mut batch = Batch::new(snapshot([active("s1", "default", 4, "a1")], &[&carla]));
    let first = batch.apply(&carla, send("s1", "hello", Some("k-1")));
    let again = batch.apply(&carla, send("s1", "hello", Some("k-1")));
    let (first_message, first_duplicate) = message_reply(&first);
    let (again_message, again_duplicate) = message_reply(&again);
    assert!(!first_duplicate);
    assert!(again_duplicate);
    assert_eq!(again_message, first_message);
    assert_eq!(again_message.seq, 5);

    let mutations = batch.mutations();
    assert_eq!(inserted_messages(&mutations), vec![first_message]);
    assert_eq!(the_update(&mutations).0.session.last_seq, 5);
}

#[test]
fn a_client_msg_id_is_unique_per_sender_only() {
    let carla = customer("c1");
    let ann = agent("a1", &["default"]);
    let mut batch = Batch::new(snapshot(
        [active("s1", "default", 0, "a1")],
        &[&carla, &ann],
    ));
    let (from_carla, _) = message_reply(&batch.apply(&carla, send("s1", "hi", Some("k-1"))));
    let (from_ann, duplicate) = message_reply(&batch.apply(&ann, send("s1", "hello", Some("k-1"))));
    assert!(!duplicate);
    assert_eq!((from_carla.seq, from_ann.seq), (1, 2));
    assert_eq!(inserted_messages(&batch.mutations()).len(), 2);
}

#[test]
fn the_first_agent_message_records_the_first_response_once() {
    let carla = customer("c1");
    let ann = agent("a1", &["default"]);
    let mut batch = Batch::new(snapshot(
        [active("s1", "default", 2, "a1")],
        &[&carla, &ann],
    ));
    let later = |ms: i64| Timestamp(NOW.millis() + ms);
    // A customer message is no response.
    batch.apply_at(&carla, send("s1", "hello?", None), later(0));
    batch.apply_at(&ann, send("s1", "Hi, Ann here", None), later(1_000));
    batch.apply_at(&ann, send("s1", "How can I help?", None), later(9_000));
    let (record, _) = the_update(&batch.mutations());
    assert_eq!(record.first_response_at, Some(later(1_000)));
    assert_eq!(
        record.first_response_ms,
        Some(later(1_000).millis() - ASSIGNED.millis())
    );

    // A later batch keeps the first figures.
    let mut answered = active("s1", "default", 5, "a1");
    answered.first_response_at = record.first_response_at;
    answered.first_response_ms = record.first_response_ms;
    let mut batch = Batch::new(snapshot([answered], &[&ann]));
    batch.apply_at(&ann, send("s1", "Anything else?", None), later(60_000));
    let (record, _) = the_update(&batch.mutations());
    assert_eq!(record.first_response_at, Some(later(1_000)));
    assert_eq!(
        record.first_response_ms,
        Some(later(1_000).millis() - ASSIGNED.millis())
    );
}

// ---------------------------------------------------------------------------
// Assign

#[test]
fn an_agent_of_the_pool_takes_a_pending_session() {
    let ann = agent("a1", &["sales", "billing"]);
    let record = pending("s1", "billing", 2);
    for named in [None, Some("a1")] {
        let mut batch = Batch::new(snapshot([record.clone()], &[&ann]));
        let decision = batch.apply(&ann, assign("s1", named));
        let session = session_reply(&decision);
        assert_eq!(session.status, SessionStatus::Active);
        assert_eq!(session.agent_id.as_deref(), Some("a1"));
        assert_eq!(session.agent_name.as_deref(), Some("Name of a1"));
        assert_eq!(session.assigned_at, Some(NOW));
        assert_eq!(decision.stats_pools, vec!["billing".to_owned()]);

        assert_eq!(decision.deliveries.len(), 2);
        assert_timeline(&decision, "assigned");
        let delivery = &decision.deliveries[0];
        assert_eq!(
            delivery.audience,
            vec![
                names().session_channel("s1"),
                names().pool_channel("billing"),
                names().admin_channel(),
                names().user_channel("c1"),
                names().user_channel("a1"),
            ]
        );
        let event = payload(delivery, server_events::SESSION_UPDATED);
        assert_eq!(event["session"]["status"], json!("active"));
        assert_eq!(event["session"]["agentId"], json!("a1"));
        assert_eq!(event["session"]["agentName"], json!("Name of a1"));
        assert_eq!(event["session"]["assignedAt"], json!(NOW.to_rfc3339()));

        let mutations = batch.mutations();
        let (written, expected_version) = the_update(&mutations);
        assert_eq!(expected_version, LOADED_VERSION);
        assert_eq!(written.session, session);
        assert_eq!(written.first_assigned_at, Some(NOW));
        assert_eq!(
            mutations[1..],
            [
                Mutation::RecordSessionEvent(SessionEvent {
                    session_id: "s1".to_owned(),
                    kind: SessionEventKind::Assigned,
                    at: NOW,
                    by: Some(ClosedBy {
                        user_id: "a1".to_owned(),
                        role: Role::Agent,
                    }),
                    agent_id: Some("a1".to_owned()),
                    agent_name: Some("Name of a1".to_owned()),
                    pool: "billing".to_owned(),
                    after_seq: 2,
                }),
                Mutation::AdjustAgentLoad {
                    agent_id: "a1".to_owned(),
                    delta: 1,
                    at_most: None,
                    assigned_at: Some(NOW),
                },
            ],
            "the timeline says who took it; the agent holds one chat more, \
             unbounded: a manual take"
        );
    }
}

#[test]
fn agents_may_only_take_sessions_of_their_pool_for_themselves() {
    let refused = [
        (agent("a1", &["billing"]), Some("a2")),
        (agent("a3", &["sales"]), None),
        (customer("c1"), None),
    ];
    for (someone, named) in refused {
        let mut batch = Batch::new(snapshot([pending("s1", "billing", 0)], &[&someone]));
        let decision = batch.apply(&someone, assign("s1", named));
        assert_eq!(
            error_code(&decision),
            ErrorCode::Forbidden,
            "{}",
            someone.user_id
        );
        assert!(decision.deliveries.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
}

#[test]
fn an_admin_assigns_any_agent_by_id() {
    let root = admin("root");
    let mut snap = snapshot([pending("s1", "billing", 0)], &[&root]);
    in_directory(&mut snap, "a2", "Bea", &["billing".into()]);
    let mut batch = Batch::new(snap);
    let session = session_reply(&batch.apply(&root, assign("s1", Some("a2"))));
    assert_eq!(session.agent_id.as_deref(), Some("a2"));
    assert_eq!(session.agent_name.as_deref(), Some("Bea"));
    assert_eq!(session.status, SessionStatus::Active);

    // Without an id, the admin takes it themselves.
    let mut batch = Batch::new(snapshot([pending("s1", "billing", 0)], &[&root]));
    let session = session_reply(&batch.apply(&root, assign("s1", None)));
    assert_eq!(session.agent_id.as_deref(), Some("root"));

    // Without an agent id the admin takes it.
    let mut batch = Batch::new(snapshot([pending("s1", "billing", 0)], &[&root]));
    let session = session_reply(&batch.apply(&root, assign("s1", None)));
    assert_eq!(session.agent_id.as_deref(), Some("root"));
    assert_eq!(session.agent_name.as_deref(), Some("Name of root"));
}

#[test]
fn only_a_pending_session_can_be_assigned() {
    let ann = agent("a1", &["default"]);
    let root = admin("root");
    for someone in [&ann, &root] {
        let mut batch = Batch::new(snapshot([active("s1", "default", 0, "a2")], &[someone]));
        let decision = batch.apply(someone, assign("s1", None));
        assert_eq!(error_code(&decision), ErrorCode::Conflict);
        assert_eq!(batch.mutations(), vec![]);

        let mut batch = Batch::new(snapshot([closed("s1", "default", 0, "a2")], &[someone]));
        let decision = batch.apply(someone, assign("s1", None));
        assert_eq!(error_code(&decision), ErrorCode::SessionClosed);
        assert_eq!(batch.mutations(), vec![]);
    }
}

#[test]
fn of_two_assigns_in_one_batch_the_second_is_a_conflict() {
    let ann = agent("a1", &["default"]);
    let bea = agent("a2", &["default"]);
    let mut batch = Batch::new(snapshot([pending("s1", "default", 0)], &[&ann, &bea]));
    let first = batch.apply(&ann, assign("s1", None));
    let second = batch.apply(&bea, assign("s1", None));
    assert_eq!(session_reply(&first).agent_id.as_deref(), Some("a1"));
    assert_eq!(error_code(&second), ErrorCode::Conflict);
    assert!(second.deliveries.is_empty());
    let mutations = batch.mutations();
    let (record, expected_version) = the_update(&mutations);
    assert_eq!(record.session.agent_id.as_deref(), Some("a1"));
    assert_eq!(expected_version, LOADED_VERSION);
}

#[test]
fn a_reassignment_keeps_the_first_assignment_time() {
    let ann = agent("a1", &["default"]);
    let mut returned = pending("s1", "default", 3);
    returned.first_assigned_at = Some(ASSIGNED);
    let mut batch = Batch::new(snapshot([returned], &[&ann]));
    batch.apply(&ann, assign("s1", None));
    let (record, _) = the_update(&batch.mutations());
    assert_eq!(record.session.assigned_at, Some(NOW));
    assert_eq!(record.first_assigned_at, Some(ASSIGNED));
}

// ---------------------------------------------------------------------------
// Transfer

#[test]
fn an_empty_transfer_returns_the_session_to_its_pool_queue() {
    let ann = agent("a1", &["billing"]);
    let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[&ann]));
    let decision = batch.apply(&ann, transfer("s1", None, None));
    let session = session_reply(&decision);
    assert_eq!(session.status, SessionStatus::Pending);
    assert_eq!(session.pool, "billing");
    assert_eq!(session.agent_id, None);
    assert_eq!(session.agent_name, None);
    assert_eq!(session.assigned_at, None);
    assert_eq!(decision.stats_pools, vec!["billing".to_owned()]);

    assert_eq!(decision.deliveries.len(), 3);
    assert_timeline(&decision, "returned");
    let updated = &decision.deliveries[0];
    assert_eq!(
        updated.audience,
        vec![
            names().session_channel("s1"),
            names().pool_channel("billing"),
            names().admin_channel(),
            names().user_channel("c1"),
            names().user_channel("a1"),
        ]
    );
    let event = payload(updated, server_events::SESSION_UPDATED);
    assert_eq!(event["session"]["status"], json!("pending"));
    assert_eq!(event["session"]["agentId"], json!(null));

    let announced = &decision.deliveries[1];
    assert_eq!(
        announced.audience,
        vec![names().pool_channel("billing"), names().admin_channel()]
    );
    let event = payload(announced, server_events::NEW_PENDING_SESSION);
    assert_eq!(event["session"]["id"], json!("s1"));
    assert_eq!(event["session"]["status"], json!("pending"));

    let (record, _) = the_update(&batch.mutations());
    assert_eq!(record.session, session);
    // The wait statistics still see the first assignment.
    assert_eq!(record.first_assigned_at, Some(ASSIGNED));
}

#[test]
fn only_the_assigned_agent_or_an_admin_transfers() {
    let refused = [agent("a2", &["billing"]), customer("c1")];
    for someone in &refused {
        let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[someone]));
        let decision = batch.apply(someone, transfer("s1", None, None));
        assert_eq!(
            error_code(&decision),
            ErrorCode::Forbidden,
            "{}",
            someone.user_id
        );
        assert!(decision.deliveries.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
    let root = admin("root");
    let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[&root]));
    let decision = batch.apply(&root, transfer("s1", None, None));
    assert_eq!(session_reply(&decision).status, SessionStatus::Pending);
}

#[test]
fn a_transfer_to_an_agent_keeps_the_session_active_and_restarts_assignment() {
    let root = admin("root");
    let mut snap = snapshot([active("s1", "billing", 3, "a1")], &[&root]);
    in_directory(&mut snap, "a2", "Bea", &["billing".into()]);
    let mut batch = Batch::new(snap);
    let decision = batch.apply(&root, transfer("s1", Some("a2"), None));
    let session = session_reply(&decision);
    assert_eq!(session.status, SessionStatus::Active);
    assert_eq!(session.agent_id.as_deref(), Some("a2"));
    assert_eq!(session.agent_name.as_deref(), Some("Bea"));
    assert_eq!(session.assigned_at, Some(NOW));
    assert_eq!(session.pool, "billing");

    // session-updated only: nothing is pending.
    assert_eq!(decision.deliveries.len(), 2);
    assert_timeline(&decision, "transferred");
    let delivery = &decision.deliveries[0];
    let audience = &delivery.audience;
    assert_no_duplicates(audience);
    for channel in [
        names().session_channel("s1"),
        names().pool_channel("billing"),
        names().admin_channel(),
        names().user_channel("c1"),
        names().user_channel("a1"),
        names().user_channel("a2"),
    ] {
        assert!(
            audience.contains(&channel),
            "{channel} missing from {audience:?}"
        );
    }
    let event = payload(delivery, server_events::SESSION_UPDATED);
    assert_eq!(event["session"]["agentId"], json!("a2"));
    assert_eq!(event["session"]["assignedAt"], json!(NOW.to_rfc3339()));

    let (record, _) = the_update(&batch.mutations());
    assert_eq!(record.first_assigned_at, Some(ASSIGNED));
}

#[test]
fn a_transfer_or_assignment_goes_only_to_a_known_agent_of_the_target_pool() {
    let ann = agent("a1", &["billing"]);
    let root = admin("root");
    let mut snap = snapshot([active("s1", "billing", 3, "a1")], &[&ann, &root]);
    in_directory(&mut snap, "a2", "Bea", &["sales".into()]);
    snap.sessions
        .insert("s2".into(), pending("s2", "billing", 0));
    let refusals = [
        (
            &ann,
            transfer("s1", Some("nobody"), None),
            ErrorCode::NotFound,
        ),
        (
            &root,
            transfer("s1", Some("nobody"), Some("sales")),
            ErrorCode::NotFound,
        ),
        // Bea serves sales, not billing.
        (
            &ann,
            transfer("s1", Some("a2"), None),
            ErrorCode::InvalidPayload,
        ),
        (&root, assign("s2", Some("nobody")), ErrorCode::NotFound),
        (&root, assign("s2", Some("a2")), ErrorCode::InvalidPayload),
        // Known only as a user (a customer, say), not as an agent.
        (&root, assign("s2", Some("c1")), ErrorCode::NotFound),
        // Ann may not keep it when it moves to a pool she does not serve.
        (
            &ann,
            transfer("s1", Some("a1"), Some("sales")),
            ErrorCode::InvalidPayload,
        ),
    ];
    for (who, command, code) in refusals {
        let mut batch = Batch::new(snap.clone());
        let decision = batch.apply(who, command.clone());
        assert_eq!(error_code(&decision), code, "{command:?}");
        assert!(decision.deliveries.is_empty(), "{command:?}");
        assert_eq!(batch.mutations(), vec![], "{command:?}: nothing changes");
    }
    // The same agent, to the pool she serves.
    let mut batch = Batch::new(snap.clone());
    let decision = batch.apply(&ann, transfer("s1", Some("a2"), Some("sales")));
    let session = session_reply(&decision);
    assert_eq!(session.agent_id.as_deref(), Some("a2"));
    assert_eq!(session.agent_name.as_deref(), Some("Bea"));
    assert_eq!(session.pool, "sales");
}

#[test]
fn a_transfer_to_the_same_agent_names_them_once() {
    let ann = agent("a1", &["billing"]);
    let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[&ann]));
    let decision = batch.apply(&ann, transfer("s1", Some("a1"), None));
    let audience = &decision.deliveries[0].audience;
    assert_no_duplicates(audience);
    assert!(audience.contains(&names().user_channel("a1")));
}

#[test]
fn a_transfer_to_another_pool_queues_it_there_and_tells_both_pools() {
    let ann = agent("a1", &["billing"]);
    let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[&ann]));
    let decision = batch.apply(&ann, transfer("s1", None, Some("sales")));
    let session = session_reply(&decision);
    assert_eq!(session.status, SessionStatus::Pending);
    assert_eq!(session.pool, "sales");
    assert_eq!(session.agent_id, None);
    assert_eq!(
        decision.stats_pools,
        vec!["billing".to_owned(), "sales".to_owned()]
    );

    assert_eq!(decision.deliveries.len(), 3);
    assert_timeline(&decision, "returned");
    let updated = &decision.deliveries[0];
    assert_eq!(
        updated.audience,
        vec![
            names().session_channel("s1"),
            names().pool_channel("billing"),
            names().pool_channel("sales"),
            names().admin_channel(),
            names().user_channel("c1"),
            names().user_channel("a1"),
        ]
    );
    let event = payload(updated, server_events::SESSION_UPDATED);
    assert_eq!(event["session"]["pool"], json!("sales"));

    let announced = &decision.deliveries[1];
    assert_eq!(
        announced.audience,
        vec![names().pool_channel("sales"), names().admin_channel()]
    );
    let event = payload(announced, server_events::NEW_PENDING_SESSION);
    assert_eq!(event["session"]["pool"], json!("sales"));
}

#[test]
fn a_transfer_to_an_agent_of_another_pool_moves_it_active() {
    let root = admin("root");
    let mut snap = snapshot([active("s1", "billing", 3, "a1")], &[&root]);
    in_directory(&mut snap, "a5", "Eve", &["sales".into()]);
    let mut batch = Batch::new(snap);
    let decision = batch.apply(&root, transfer("s1", Some("a5"), Some("sales")));
    let session = session_reply(&decision);
    assert_eq!(session.status, SessionStatus::Active);
    assert_eq!(session.pool, "sales");
    assert_eq!(session.agent_id.as_deref(), Some("a5"));
    assert_eq!(decision.deliveries.len(), 2);
    assert_timeline(&decision, "transferred");
    let audience = &decision.deliveries[0].audience;
    assert_no_duplicates(audience);
    for channel in [
        names().pool_channel("billing"),
        names().pool_channel("sales"),
        names().user_channel("a1"),
        names().user_channel("a5"),
    ] {
        assert!(
            audience.contains(&channel),
            "{channel} missing from {audience:?}"
        );
    }
}

#[test]
fn a_closed_session_cannot_be_transferred() {
    let ann = agent("a1", &["billing"]);
    let root = admin("root");
    for someone in [&ann, &root] {
        let mut batch = Batch::new(snapshot([closed("s1", "billing", 3, "a1")], &[someone]));
        let decision = batch.apply(someone, transfer("s1", None, None));
        assert_eq!(error_code(&decision), ErrorCode::SessionClosed);
        assert!(decision.deliveries.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
}

// ---------------------------------------------------------------------------
// Close

#[test]
fn a_participant_closes_and_everyone_concerned_hears_who_and_why() {
    let carla = customer("c1");
    let record = active("s1", "billing", 3, "a1");
    let mut batch = Batch::new(snapshot([record.clone()], &[&carla]));
    let decision = batch.apply(&carla, close("s1", Some("solved")));
    let session = session_reply(&decision);
    assert_eq!(session.status, SessionStatus::Closed);
    assert_eq!(session.closed_at, Some(NOW));
    assert_eq!(decision.stats_pools, vec!["billing".to_owned()]);

    assert_eq!(decision.deliveries.len(), 2);
    assert_timeline(&decision, "closed");
    let delivery = &decision.deliveries[0];
    assert_eq!(
        delivery.audience,
        vec![
            names().session_channel("s1"),
            names().pool_channel("billing"),
            names().admin_channel(),
            names().user_channel("c1"),
            names().user_channel("a1"),
        ]
    );
    assert_eq!(
        payload(delivery, server_events::SESSION_CLOSED),
        json!({
            "sessionId": "s1",
            "closedBy": {"userId": "c1", "role": "customer"},
            "reason": "solved",
            "closedAt": NOW.to_rfc3339()
        })
    );

    let mut expected = record;
    expected.session.status = SessionStatus::Closed;
    expected.session.closed_at = Some(NOW);
    expected.version = LOADED_VERSION + 1;
    assert_eq!(
        batch.mutations(),
        vec![
            Mutation::UpdateSession {
                record: expected,
                expected_version: LOADED_VERSION
            },
            Mutation::RecordSessionEvent(SessionEvent {
                session_id: "s1".to_owned(),
                kind: SessionEventKind::Closed,
                at: NOW,
                by: Some(ClosedBy {
                    user_id: "c1".to_owned(),
                    role: Role::Customer,
                }),
                agent_id: Some("a1".to_owned()),
                agent_name: Some("Name of a1".to_owned()),
                pool: "billing".to_owned(),
                after_seq: 3,
            }),
            Mutation::AdjustAgentLoad {
                agent_id: "a1".to_owned(),
                delta: -1,
                at_most: None,
                assigned_at: None,
            }
        ]
    );
}

#[test]
fn the_assigned_agent_and_admins_close_too_others_may_not() {
    for (someone, role) in [
        (agent("a1", &["billing"]), "agent"),
        (admin("root"), "admin"),
    ] {
        let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[&someone]));
        let decision = batch.apply(&someone, close("s1", None));
        let event = payload(&decision.deliveries[0], server_events::SESSION_CLOSED);
        assert_eq!(
            event["closedBy"],
            json!({"userId": someone.user_id, "role": role})
        );
        assert_eq!(event["reason"], json!(null));
    }
    for someone in [agent("a2", &["billing"]), customer("c2")] {
        let mut batch = Batch::new(snapshot([active("s1", "billing", 3, "a1")], &[&someone]));
        let decision = batch.apply(&someone, close("s1", None));
        assert_eq!(
            error_code(&decision),
            ErrorCode::Forbidden,
            "{}",
            someone.user_id
        );
        assert_eq!(batch.mutations(), vec![]);
    }
}

#[test]
fn closing_twice_is_session_closed() {
    let carla = customer("c1");
    let ann = agent("a1", &["billing"]);
    let mut batch = Batch::new(snapshot(
        [active("s1", "billing", 3, "a1")],
        &[&carla, &ann],
    ));
    let first = batch.apply(&carla, close("s1", None));
    let second = batch.apply(&ann, close("s1", Some("me too")));
    assert_eq!(session_reply(&first).status, SessionStatus::Closed);
    assert_eq!(error_code(&second), ErrorCode::SessionClosed);
    assert!(second.deliveries.is_empty());
    assert_eq!(session_writes(&batch.mutations()).len(), 1);

    let mut batch = Batch::new(snapshot([closed("s1", "billing", 3, "a1")], &[&carla]));
    let decision = batch.apply(&carla, close("s1", None));
    assert_eq!(error_code(&decision), ErrorCode::SessionClosed);
    assert_eq!(batch.mutations(), vec![]);
}

// ---------------------------------------------------------------------------
// Mark read

fn read_snapshot(reader: &Identity, position: Option<i64>) -> BatchSnapshot {
    let mut snap = snapshot([active("s1", "default", 10, "a1")], &[reader]);
    if let Some(up_to_seq) = position {
        snap.read_positions
            .insert(("s1".into(), reader.user_id.clone()), up_to_seq);
    }
    snap
}

#[test]
fn a_read_position_moves_forward_and_is_announced() {
    let carla = customer("c1");
    let mut batch = Batch::new(read_snapshot(&carla, Some(2)));
    let decision = batch.apply(&carla, mark_read("s1", 7));
    let position = ReadPosition {
        user_id: "c1".into(),
        role: Role::Customer,
        up_to_seq: 7,
    };
    assert_eq!(
        decision.reply,
        Ok(ReplyBody::ReadPosition(position.clone()))
    );
    assert!(decision.stats_pools.is_empty());
    assert_eq!(decision.deliveries.len(), 1);
    let delivery = &decision.deliveries[0];
    assert_eq!(delivery.audience, vec![names().session_channel("s1")]);
    assert_eq!(
        payload(delivery, server_events::MESSAGES_READ),
        json!({
            "sessionId": "s1", "userId": "c1", "role": "customer",
            "upToSeq": 7, "readAt": NOW.to_rfc3339()
        })
    );
    // The session row is not touched.
    assert_eq!(
        batch.mutations(),
        vec![Mutation::SetReadPosition {
            session_id: "s1".into(),
            position,
            read_at: NOW,
        }]
    );
}

#[test]
fn a_read_position_past_the_last_message_is_clamped() {
    let ann = agent("a1", &["default"]);
    let mut batch = Batch::new(read_snapshot(&ann, None));
    let decision = batch.apply(&ann, mark_read("s1", 99));
    let expected = ReadPosition {
        user_id: "a1".into(),
        role: Role::Agent,
        up_to_seq: 10,
    };
    assert_eq!(decision.reply, Ok(ReplyBody::ReadPosition(expected)));
    let event = payload(&decision.deliveries[0], server_events::MESSAGES_READ);
    assert_eq!(event["upToSeq"], json!(10));
    assert_eq!(event["role"], json!("agent"));
}

#[test]
fn a_read_position_never_moves_back() {
    let carla = customer("c1");
    for asked in [0, 3, 5] {
        let mut batch = Batch::new(read_snapshot(&carla, Some(5)));
        let decision = batch.apply(&carla, mark_read("s1", asked));
        // The answer tells where the reader actually is.
        let current = ReadPosition {
            user_id: "c1".into(),
            role: Role::Customer,
            up_to_seq: 5,
        };
        assert_eq!(decision.reply, Ok(ReplyBody::ReadPosition(current)));
        assert!(decision.deliveries.is_empty(), "asked {asked}");
        assert_eq!(batch.mutations(), vec![], "asked {asked}");
    }
    // Nothing read yet and nothing to read up to: position 0, no event.
    let mut batch = Batch::new(read_snapshot(&carla, None));
    let decision = batch.apply(&carla, mark_read("s1", 0));
    assert!(matches!(
        decision.reply,
        Ok(ReplyBody::ReadPosition(ReadPosition { up_to_seq: 0, .. }))
    ));
    assert!(decision.deliveries.is_empty());
    assert_eq!(batch.mutations(), vec![]);
}

#[test]
fn read_positions_of_one_batch_build_on_each_other() {
    let carla = customer("c1");
    let mut batch = Batch::new(read_snapshot(&carla, Some(2)));
    let moved = batch.apply(&carla, mark_read("s1", 6));
    let back = batch.apply(&carla, mark_read("s1", 4));
    let further = batch.apply(&carla, mark_read("s1", 8));
    assert_eq!(moved.deliveries.len(), 1);
    assert!(back.deliveries.is_empty());
    assert!(matches!(
        back.reply,
        Ok(ReplyBody::ReadPosition(ReadPosition { up_to_seq: 6, .. }))
    ));
    assert_eq!(further.deliveries.len(), 1);
    let written: Vec<i64> = batch
        .mutations()
        .iter()
        .filter_map(|m| match m {
            Mutation::SetReadPosition { position, .. } => Some(position.up_to_seq),
            _ => None,
        })
        .collect();
    assert_eq!(written, vec![6, 8]);
}

#[test]
fn only_participants_mark_read() {
    for someone in [agent("a2", &["default"]), customer("c2")] {
        let mut batch = Batch::new(read_snapshot(&someone, None));
        let decision = batch.apply(&someone, mark_read("s1", 3));
        assert_eq!(
            error_code(&decision),
            ErrorCode::Forbidden,
            "{}",
            someone.user_id
        );
        assert!(decision.deliveries.is_empty());
        assert_eq!(batch.mutations(), vec![]);
    }
}

// ---------------------------------------------------------------------------
// Across commands

#[test]
fn every_command_on_an_unknown_session_is_not_found() {
    let root = admin("root");
    let carla = customer("c1");
    let commands = [
        (&carla, send("nope", "hi", Some("k-1"))),
        (&root, send("nope", "hi", None)),
        (&root, assign("nope", Some("a1"))),
        (&root, transfer("nope", None, None)),
        (&root, transfer("nope", Some("a1"), Some("sales"))),
        (&root, close("nope", None)),
        (&carla, mark_read("nope", 1)),
    ];
    for (someone, command) in commands {
        let kind = command.kind();
        let mut batch = Batch::new(snapshot([pending("s1", "default", 0)], &[&root, &carla]));
        let decision = batch.apply(someone, command);
        assert_eq!(error_code(&decision), ErrorCode::NotFound, "{kind}");
        assert!(decision.deliveries.is_empty(), "{kind}");
        assert!(decision.stats_pools.is_empty(), "{kind}");
        assert_eq!(batch.mutations(), vec![], "{kind}");
    }
}

#[test]
fn refresh_stats_only_marks_the_pool() {
    let ann = agent("a1", &["sales"]);
    let mut batch = Batch::new(snapshot([], &[&ann]));
    let decision = batch.apply(
        &ann,
        Command::RefreshStats {
            pool: "sales".into(),
        },
    );
    assert_eq!(decision.reply, Ok(ReplyBody::Done));
    assert!(decision.deliveries.is_empty());
    assert_eq!(decision.stats_pools, vec!["sales".to_owned()]);
    assert_eq!(batch.mutations(), vec![]);
}

#[test]
fn user_names_are_remembered_only_when_new_or_changed() {
    let carla = customer("c1");
    let remember = |user_id: &str, name: &str| Mutation::RememberUser {
        user_id: user_id.into(),
        name: name.into(),
    };

    // Known under the same name: nothing to write.
    let mut batch = Batch::new(snapshot([active("s1", "default", 0, "a1")], &[&carla]));
    batch.apply(&carla, mark_read("s1", 0));
    assert_eq!(batch.mutations(), vec![]);

    // Never seen: remembered once, however many commands they send.
    let mut batch = Batch::new(snapshot([active("s1", "default", 0, "a1")], &[]));
    batch.apply(&carla, mark_read("s1", 0));
    batch.apply(&carla, mark_read("s1", 0));
    assert_eq!(batch.mutations(), vec![remember("c1", "Name of c1")]);

    // Renamed: the new name is stored, and used within the batch.
    let mut snap = snapshot([pending("s1", "default", 0)], &[]);
    snap.user_names.insert("a1".into(), "Old name".into());
    let ann = agent("a1", &["default"]);
    let mut batch = Batch::new(snap);
    let session = session_reply(&batch.apply(&ann, assign("s1", None)));
    assert_eq!(session.agent_name.as_deref(), Some("Name of a1"));
    let mutations = batch.mutations();
    assert_eq!(mutations[0], remember("a1", "Name of a1"));
    assert_eq!(
        mutations
            .iter()
            .filter(|m| matches!(m, Mutation::RememberUser { .. }))
            .count(),
        1
    );
}

/// A batch over many sessions, decided from a snapshot built afresh (so
/// with its own hash order) each time.
fn mixed_batch() -> Vec<Mutation> {
    let root = admin("root");
    let carla = customer("c1");
    let ids = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];
    let mut batch = Batch::new(snapshot(
        ids.iter().map(|id| active(id, "default", 2, "a1")),
        &[],
    ));
    batch.apply(&carla, mark_read("s3", 2));
    batch.apply(&root, send("s5", "five", None));
    batch.apply(&carla, send("s2", "two", Some("k-2")));
    batch.apply(&root, close("s7", None));
    batch.apply(&root, send("s0", "zero", None));
    batch.apply(&carla, send("s5", "five again", None));
    batch.apply(&carla, create("s9", "default", Some("new")));
    batch.mutations()
}

#[test]
fn mutations_come_in_a_deterministic_order() {
    let mutations = mixed_batch();
    for _ in 0..5 {
        assert_eq!(mixed_batch(), mutations);
    }
    let kinds: Vec<String> = mutations
        .iter()
        .map(|m| match m {
            Mutation::RememberUser { user_id, .. } => format!("user {user_id}"),
            Mutation::InsertSession(r) => format!("insert {}", r.session.id),
            Mutation::UpdateSession { record, .. } => format!("update {}", record.session.id),
            Mutation::InsertMessage(m) => format!("message {} {}", m.session_id, m.seq),
            Mutation::SetReadPosition { session_id, .. } => format!("read {session_id}"),
            Mutation::AdjustAgentLoad {
                agent_id, delta, ..
            } => format!("load {agent_id} {delta:+}"),
            Mutation::RecordSessionEvent(event) => {
                format!("event {} {}", event.session_id, event.kind.as_str())
            }
            // Reactions and delivery positions.
            Mutation::SetReaction {
                session_id, seq, ..
            } => {
                format!("reaction {session_id} {seq}")
            }
            Mutation::SetDeliveryPosition { session_id, .. } => format!("delivered {session_id}"),
            // Internal notes and invited colleagues.
            Mutation::InsertNote(n) => format!("note {} {}", n.session_id, n.seq),
            Mutation::SetParticipants { session_id, .. } => format!("colleagues {session_id}"),
            Mutation::ReferenceAttachment {
                attachment_id, seq, ..
            } => format!("file {attachment_id} {seq}"),
        })
        .collect();
    // Users first, then sessions in the order the batch first touched
    // them, then messages in the order sent, then read positions, then
    // timeline entries, then agents' loads.
    assert_eq!(
        kinds,
        [
            "user c1",
            "user root",
            "update s5",
            "update s2",
            "update s7",
            "update s0",
            "insert s9",
            "message s5 3",
            "message s2 3",
            "message s0 3",
            "message s5 4",
            "message s9 1",
            "read s3",
            "event s7 closed",
            "load a1 -1",
        ]
    );
}

// ---------------------------------------------------------------------------
// Keys and participants

#[test]
fn keys_name_everything_a_batch_reads() {
    let carla = customer("c1");
    let dave = customer("c2");
    let ann = agent("a1", &["default"]);
    let root = admin("root");
    let envelopes: Vec<CommandEnvelope> = [
        (&carla, create("s1", "default", None)),
        (&carla, send("s2", "hi", Some("k-1"))),
        (&ann, send("s2", "hello", None)),
        (&root, assign("s3", Some("a2"))),
        (&ann, transfer("s4", Some("a3"), None)),
        (&ann, transfer("s4", None, Some("sales"))),
        (&carla, close("s5", None)),
        (&dave, mark_read("s6", 4)),
        (&carla, send("s2", "again", Some("k-1"))),
        (
            &ann,
            Command::RefreshStats {
                pool: "default".into(),
            },
        ),
    ]
    .into_iter()
    .map(|(actor, command)| CommandEnvelope {
        reply_to: None,
        actor: actor.clone(),
        issued_at: NOW,
        command,
    })
    .collect();
    let refs: Vec<&CommandEnvelope> = envelopes.iter().collect();
    let keys = keys_for(&refs);
    let owned = |items: &[&str]| -> Vec<String> { items.iter().map(|s| (*s).to_owned()).collect() };
    assert_eq!(
        keys.session_ids,
        owned(&["s1", "s2", "s3", "s4", "s5", "s6"])
    );
    assert_eq!(
        keys.client_messages,
        vec![("s2".to_owned(), "c1".to_owned(), "k-1".to_owned())]
    );
    assert_eq!(
        keys.read_positions,
        vec![("s6".to_owned(), "c2".to_owned())]
    );
    assert_eq!(
        keys.user_ids,
        owned(&["a1", "a2", "a3", "c1", "c2", "root"])
    );
    // Only the targets of assign and transfer are looked up in the directory.
    assert_eq!(keys.agent_ids, owned(&["a2", "a3"]));
}
