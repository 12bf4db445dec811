//! The rules of internal notes and invited colleagues, one at a time:
//! who may write a note, that a note never touches the session row nor
//! goes where a customer's socket listens, the notes' own numbering and
//! retries, and who may invite and remove colleagues, with the limits,
//! the timeline entries and the audiences of those changes.

use chat_shared::auth::Identity;
use chat_shared::envelope::{Command, CommandEnvelope, Delivery, ReplyBody};
use chat_shared::names::Names;
use chat_shared::protocol::{
    server_events, Message, Participant, Role, Session, SessionEvent, SessionEventKind,
    SessionStatus,
};
use chat_shared::store::{AgentRecord, BatchSnapshot, Mutation, SessionRecord};
use chat_shared::{ErrorCode, Timestamp};
use serde_json::Value;

use super::{keys_for, BatchState, Decision};

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const CREATED: Timestamp = Timestamp(1_699_999_000_000);
const VERSION: i64 = 3;

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

fn customer() -> Identity {
    actor("c1", Role::Customer, &[])
}

fn agent(id: &str) -> Identity {
    actor(id, Role::Agent, &["default"])
}

/// Session `s1` of customer `c1`, active with `a1`, after `last_seq`
/// messages.
fn active(last_seq: i64) -> SessionRecord {
    SessionRecord {
        session: Session {
            id: "s1".to_owned(),
            customer_id: "c1".to_owned(),
            customer_name: "Name of c1".to_owned(),
            agent_id: Some("a1".to_owned()),
            agent_name: Some("Name of a1".to_owned()),
            pool: "default".to_owned(),
            status: SessionStatus::Active,
            subject: None,
            created_at: CREATED,
            assigned_at: Some(CREATED),
            closed_at: None,
            last_seq,
            last_message_at: Some(CREATED),
            participants: Vec::new(),
        },
        version: VERSION,
        first_assigned_at: Some(CREATED),
        first_response_at: None,
        first_response_ms: None,
    }
}

fn colleague(id: &str) -> Participant {
    Participant {
        user_id: id.to_owned(),
        name: format!("Name of {id}"),
        role: Role::Agent,
        joined_at: CREATED,
    }
}

/// A snapshot of `record` where the users named are known by their
/// names and the agents named are in the directory.
fn snapshot(record: SessionRecord, agents: &[&str]) -> BatchSnapshot {
    let mut snapshot = BatchSnapshot::default();
    snapshot
        .sessions
        .insert(record.session.id.clone(), record.clone());
    for user in ["c1", "root"].iter().chain(agents) {
        snapshot
            .user_names
            .insert((*user).to_owned(), format!("Name of {user}"));
    }
    for id in agents {
        snapshot.agents.insert(
            (*id).to_owned(),
            AgentRecord {
                id: (*id).to_owned(),
                name: format!("Name of {id}"),
                pools: vec!["default".to_owned()],
                last_seen_at: CREATED,
            },
        );
    }
    snapshot
}

fn envelope(actor: &Identity, command: Command) -> CommandEnvelope {
    CommandEnvelope {
        reply_to: None,
        actor: actor.clone(),
        issued_at: NOW,
        command,
    }
}

fn note(client_id: &str, content: &str) -> Command {
    Command::SendNote {
        session_id: "s1".to_owned(),
        content: content.to_owned(),
        client_msg_id: Some(client_id.to_owned()),
    }
}

fn message(client_id: &str) -> Command {
    Command::SendMessage {
        session_id: "s1".to_owned(),
        content: "hello".to_owned(),
        client_msg_id: Some(client_id.to_owned()),
        attachment_ids: Vec::new(),
    }
}

fn invite(agent_id: &str) -> Command {
    Command::InviteParticipant {
        session_id: "s1".to_owned(),
        agent_id: agent_id.to_owned(),
    }
}

fn remove(agent_id: &str) -> Command {
    Command::RemoveParticipant {
        session_id: "s1".to_owned(),
        agent_id: agent_id.to_owned(),
    }
}

/// Applies `commands` in one batch; the decisions and the batch's writes.
fn run(
    snapshot: BatchSnapshot,
    commands: &[(Identity, Command)],
) -> (Vec<Decision>, Vec<Mutation>) {
    let mut state = BatchState::new(snapshot, names());
    let mut ids = 0;
    let mut new_id = || {
        ids += 1;
        format!("id-{ids}")
    };
    let decisions = commands
        .iter()
        .map(|(who, command)| state.apply(&envelope(who, command.clone()), NOW, &mut new_id))
        .collect();
    (decisions, state.into_mutations())
}

fn error_code(decision: &Decision) -> ErrorCode {
    match &decision.reply {
        Err(error) => error.code,
        Ok(body) => panic!("expected a refusal, got {body:?}"),
    }
}

fn replied_message(decision: &Decision) -> (Message, bool) {
    match &decision.reply {
        Ok(ReplyBody::Message { message, duplicate }) => (message.clone(), *duplicate),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn replied_session(decision: &Decision) -> Session {
    match &decision.reply {
        Ok(ReplyBody::Session(session)) => session.clone(),
        other => panic!("expected a session, got {other:?}"),
    }
}

/// The JSON payload of a delivery's Socket.IO frame.
fn payload(delivery: &Delivery) -> Value {
    let json = delivery
        .frame
        .strip_prefix("42/chat,")
        .expect("an event frame");
    let (_, payload): (String, Value) = serde_json::from_str(json).expect("[event, payload]");
    payload
}

fn writes_of_customer_channels(delivery: &Delivery) -> bool {
    delivery
        .audience
        .iter()
        .any(|channel| channel == "t:session:s1" || channel == "t:user:c1")
}

#[test]
fn a_note_goes_to_the_staff_channel_only_and_leaves_the_session_row_alone() {
    let (decisions, mutations) = run(
        snapshot(active(4), &["a1"]),
        &[(agent("a1"), note("n-1", "check the refund"))],
    );
    let (sent, duplicate) = replied_message(&decisions[0]);
    assert!(!duplicate);
    assert!(sent.internal);
    assert_eq!(sent.seq, 1, "the notes' own numbering");
    assert_eq!(sent.after_seq, Some(4), "placed after the latest message");
    assert_eq!(decisions[0].deliveries.len(), 1);
    let delivery = &decisions[0].deliveries[0];
    assert_eq!(delivery.event, server_events::NEW_NOTE);
    assert_eq!(delivery.audience, vec!["t:session-staff:s1".to_owned()]);
    assert_eq!(delivery.seq, None, "message cursors never see a note");
    assert!(!writes_of_customer_channels(delivery));
    assert_eq!(payload(delivery)["internal"], Value::Bool(true));
    assert_eq!(payload(delivery)["afterSeq"], 4);
    assert!(decisions[0].stats_pools.is_empty(), "notes are no message");
    assert_eq!(mutations, vec![Mutation::InsertNote(sent)]);
}

#[test]
fn notes_are_numbered_apart_and_messages_keep_running_without_gaps() {
    let mut snap = snapshot(active(2), &["a1"]);
    snap.last_note_seqs.insert("s1".to_owned(), 5);
    let (decisions, mutations) = run(
        snap,
        &[
            (agent("a1"), message("m-3")),
            (agent("a1"), note("n-6", "first")),
            (customer(), message("m-4")),
            (agent("a1"), note("n-7", "second")),
            (agent("a1"), message("m-5")),
        ],
    );
    let seqs: Vec<(bool, i64, Option<i64>)> = decisions
        .iter()
        .map(|d| {
            let (m, _) = replied_message(d);
            (m.internal, m.seq, m.after_seq)
        })
        .collect();
    assert_eq!(
        seqs,
        vec![
            (false, 3, None),
            (true, 6, Some(3)),
            (false, 4, None),
            (true, 7, Some(4)),
            (false, 5, None),
        ]
    );
    let last_seq = mutations.iter().find_map(|m| match m {
        Mutation::UpdateSession { record, .. } => Some(record.session.last_seq),
        _ => None,
    });
    assert_eq!(last_seq, Some(5));
    let messages: Vec<i64> = mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::InsertMessage(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(messages, vec![3, 4, 5]);
    for decision in &decisions {
        for delivery in &decision.deliveries {
            if delivery.event == server_events::NEW_MESSAGE {
                assert_eq!(payload(delivery)["internal"], Value::Bool(false));
            } else {
                assert_eq!(delivery.event, server_events::NEW_NOTE);
                assert!(!writes_of_customer_channels(delivery));
            }
        }
    }
}

#[test]
fn a_customer_may_not_write_a_note_and_nothing_is_stored() {
    let (decisions, mutations) = run(
        snapshot(active(1), &["a1"]),
        &[(customer(), note("n-1", "let me in"))],
    );
    assert_eq!(error_code(&decisions[0]), ErrorCode::Forbidden);
    assert!(decisions[0].deliveries.is_empty());
    assert!(mutations.is_empty(), "{mutations:?}");
}

#[test]
fn a_customer_learns_nothing_of_a_note_by_its_client_id() {
    let mut snap = snapshot(active(1), &["a1"]);
    let stored = Message {
        id: "n".into(),
        session_id: "s1".into(),
        seq: 1,
        sender_id: "c1".into(),
        sender_name: "x".into(),
        sender_role: Role::Agent,
        content: "secret".into(),
        client_msg_id: Some("n-1".into()),
        created_at: CREATED,
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: true,
        after_seq: Some(0),
    };
    snap.notes_by_client_id
        .insert(("s1".into(), "c1".into(), "n-1".into()), stored);
    let (decisions, _) = run(snap, &[(customer(), note("n-1", "again"))]);
    assert_eq!(error_code(&decisions[0]), ErrorCode::Forbidden);
    assert!(decisions[0].deliveries.is_empty());
}

#[test]
fn only_staff_who_may_write_add_notes() {
    // A pool agent who is neither assigned nor invited may read, not write.
    let (decisions, _) = run(
        snapshot(active(1), &["a1", "a2"]),
        &[(agent("a2"), note("n-1", "hi"))],
    );
    assert_eq!(error_code(&decisions[0]), ErrorCode::Forbidden);
    // Admins and invited colleagues may.
    let mut record = active(1);
    record.session.participants.push(colleague("a3"));
    let (decisions, _) = run(
        snapshot(record, &["a1", "a3"]),
        &[
            (actor("root", Role::Admin, &[]), note("n-1", "admin")),
            (
                actor("a3", Role::Agent, &["elsewhere"]),
                note("n-2", "guest"),
            ),
        ],
    );
    assert_eq!(replied_message(&decisions[0]).0.seq, 1);
    assert_eq!(replied_message(&decisions[1]).0.seq, 2);
    // Nothing goes to a closed session.
    let mut closed = active(1);
    closed.session.status = SessionStatus::Closed;
    let (decisions, mutations) = run(
        snapshot(closed, &["a1"]),
        &[(agent("a1"), note("n-1", "late"))],
    );
    assert_eq!(error_code(&decisions[0]), ErrorCode::SessionClosed);
    assert!(mutations.is_empty());
    // An unknown session.
    let (decisions, _) = run(
        BatchSnapshot::default(),
        &[(agent("a1"), note("n-1", "where"))],
    );
    assert_eq!(error_code(&decisions[0]), ErrorCode::NotFound);
}

#[test]
fn a_resent_note_returns_the_original_and_stores_nothing() {
    let (first, _) = run(
        snapshot(active(1), &["a1"]),
        &[(agent("a1"), note("n-1", "once"))],
    );
    let (original, _) = replied_message(&first[0]);
    let mut snap = snapshot(active(1), &["a1"]);
    snap.last_note_seqs.insert("s1".into(), 1);
    snap.notes_by_client_id
        .insert(("s1".into(), "a1".into(), "n-1".into()), original.clone());
    let (decisions, mutations) = run(snap, &[(agent("a1"), note("n-1", "once"))]);
    assert_eq!(replied_message(&decisions[0]), (original.clone(), true));
    assert!(mutations.is_empty(), "{mutations:?}");
    assert_eq!(decisions[0].deliveries[0].event, server_events::NEW_NOTE);
    assert!(!writes_of_customer_channels(&decisions[0].deliveries[0]));
    // Within one batch, too.
    let (decisions, mutations) = run(
        snapshot(active(1), &["a1"]),
        &[
            (agent("a1"), note("n-1", "twice")),
            (agent("a1"), note("n-1", "twice")),
        ],
    );
    assert!(replied_message(&decisions[1]).1);
    assert_eq!(
        replied_message(&decisions[1]).0,
        replied_message(&decisions[0]).0
    );
    assert_eq!(mutations.len(), 1);
}

#[test]
fn a_batch_of_notes_names_what_it_must_load() {
    let a1 = agent("a1");
    let commands = [envelope(&a1, note("n-1", "x")), envelope(&a1, invite("a2"))];
    let refs: Vec<&CommandEnvelope> = commands.iter().collect();
    let keys = keys_for(&refs);
    assert_eq!(keys.note_sessions, vec!["s1".to_owned()]);
    assert_eq!(
        keys.client_notes,
        vec![("s1".to_owned(), "a1".to_owned(), "n-1".to_owned())]
    );
    assert!(keys.client_messages.is_empty());
    assert_eq!(keys.agent_ids, vec!["a2".to_owned()]);
}

#[test]
fn the_assigned_agent_invites_a_colleague_of_the_directory() {
    let (decisions, mutations) = run(
        snapshot(active(2), &["a1", "a2"]),
        &[(agent("a1"), invite("a2"))],
    );
    let session = replied_session(&decisions[0]);
    assert_eq!(
        session.participants,
        vec![Participant {
            joined_at: NOW,
            ..colleague("a2")
        }]
    );
    let updated = decisions[0]
        .deliveries
        .iter()
        .find(|d| d.event == server_events::SESSION_UPDATED)
        .expect("session-updated");
    assert_eq!(
        updated.audience,
        vec!["t:session:s1".to_owned(), "t:user:a2".to_owned()]
    );
    let entry = decisions[0]
        .deliveries
        .iter()
        .find(|d| d.event == server_events::SESSION_EVENT)
        .expect("a timeline entry");
    let event: SessionEvent = serde_json::from_value(payload(entry)).expect("an entry");
    assert_eq!(event.kind, SessionEventKind::Invited);
    assert_eq!(event.agent_id.as_deref(), Some("a2"));
    assert_eq!(event.agent_name.as_deref(), Some("Name of a2"));
    assert_eq!(event.after_seq, 2);
    assert_eq!(event.by.as_ref().map(|b| b.user_id.as_str()), Some("a1"));
    // The row is written under its version, then the colleagues with it.
    assert!(matches!(
        &mutations[0],
        Mutation::UpdateSession { expected_version: VERSION, record }
            if record.session.participants == session.participants
    ));
    assert_eq!(
        mutations[1],
        Mutation::SetParticipants {
            session_id: "s1".into(),
            participants: session.participants.clone(),
        }
    );
    assert!(
        matches!(&mutations[2], Mutation::RecordSessionEvent(e) if e.kind == SessionEventKind::Invited)
    );
}

#[test]
fn who_may_invite_and_whom() {
    let cases: Vec<(&str, Identity, &str, SessionRecord, ErrorCode)> = vec![
        (
            "a pool agent",
            agent("a3"),
            "a2",
            active(1),
            ErrorCode::Forbidden,
        ),
        (
            "the customer",
            customer(),
            "a2",
            active(1),
            ErrorCode::Forbidden,
        ),
        (
            "unknown agent",
            agent("a1"),
            "nobody",
            active(1),
            ErrorCode::NotFound,
        ),
        (
            "the assigned agent",
            agent("a1"),
            "a1",
            active(1),
            ErrorCode::Conflict,
        ),
        (
            "already invited",
            agent("a1"),
            "a2",
            {
                let mut r = active(1);
                r.session.participants.push(colleague("a2"));
                r
            },
            ErrorCode::Conflict,
        ),
        (
            "more than five",
            agent("a1"),
            "a2",
            {
                let mut r = active(1);
                for id in ["b1", "b2", "b3", "b4", "b5"] {
                    r.session.participants.push(colleague(id));
                }
                r
            },
            ErrorCode::Conflict,
        ),
        (
            "closed",
            agent("a1"),
            "a2",
            {
                let mut r = active(1);
                r.session.status = SessionStatus::Closed;
                r
            },
            ErrorCode::SessionClosed,
        ),
    ];
    for (case, who, target, record, code) in cases {
        let (decisions, mutations) = run(
            snapshot(record, &["a1", "a2", "a3"]),
            &[(who, invite(target))],
        );
        assert_eq!(error_code(&decisions[0]), code, "{case}");
        assert!(mutations.is_empty(), "{case}: {mutations:?}");
    }
    // An admin may invite.
    let (decisions, _) = run(
        snapshot(active(1), &["a1", "a2"]),
        &[(actor("root", Role::Admin, &[]), invite("a2"))],
    );
    assert_eq!(replied_session(&decisions[0]).participants.len(), 1);
}

#[test]
fn a_colleague_leaves_or_is_removed_and_hears_it_on_their_own_channel() {
    let mut record = active(3);
    record.session.participants = vec![colleague("a2"), colleague("a3")];
    for who in [agent("a2"), agent("a1"), actor("root", Role::Admin, &[])] {
        let (decisions, mutations) = run(
            snapshot(record.clone(), &["a1", "a2", "a3"]),
            &[(who.clone(), remove("a2"))],
        );
        let session = replied_session(&decisions[0]);
        assert_eq!(session.participants, vec![colleague("a3")], "{who:?}");
        let updated = &decisions[0].deliveries[0];
        assert_eq!(updated.event, server_events::SESSION_UPDATED);
        assert_eq!(
            updated.audience,
            vec!["t:session:s1".to_owned(), "t:user:a2".to_owned()]
        );
        let entry: SessionEvent =
            serde_json::from_value(payload(&decisions[0].deliveries[1])).expect("entry");
        assert_eq!(entry.kind, SessionEventKind::Left);
        assert_eq!(entry.agent_id.as_deref(), Some("a2"));
        assert!(mutations
            .iter()
            .any(|m| matches!(m, Mutation::SetParticipants { participants, .. } if participants == &vec![colleague("a3")])));
    }
    // Another colleague may not remove one, nor the customer.
    for who in [actor("a3", Role::Agent, &["default"]), customer()] {
        let (decisions, _) = run(
            snapshot(record.clone(), &["a1", "a2", "a3"]),
            &[(who, remove("a2"))],
        );
        assert_eq!(error_code(&decisions[0]), ErrorCode::Forbidden);
    }
    // Someone not invited is not found.
    let (decisions, _) = run(
        snapshot(record, &["a1", "a2", "a3"]),
        &[(agent("a1"), remove("a9"))],
    );
    assert_eq!(error_code(&decisions[0]), ErrorCode::NotFound);
}

#[test]
fn an_invited_colleague_writes_until_removed() {
    let mut record = active(1);
    record.session.participants = vec![colleague("a2")];
    let guest = actor("a2", Role::Agent, &["elsewhere"]);
    let (decisions, _) = run(
        snapshot(record, &["a1", "a2"]),
        &[
            (guest.clone(), message("m-1")),
            (guest.clone(), remove("a2")),
            (guest.clone(), message("m-2")),
            (guest, note("n-1", "after leaving")),
        ],
    );
    assert_eq!(replied_message(&decisions[0]).0.seq, 2);
    assert!(decisions[1].reply.is_ok());
    assert_eq!(error_code(&decisions[2]), ErrorCode::Forbidden);
    assert_eq!(error_code(&decisions[3]), ErrorCode::Forbidden);
}

#[test]
fn a_colleague_given_the_session_is_no_longer_a_guest_in_it() {
    let mut record = active(1);
    record.session.participants = vec![colleague("a2"), colleague("a3")];
    let (decisions, mutations) = run(
        snapshot(record, &["a1", "a2", "a3"]),
        &[(
            agent("a1"),
            Command::Transfer {
                session_id: "s1".into(),
                agent_id: Some("a2".into()),
                pool: None,
            },
        )],
    );
    let session = replied_session(&decisions[0]);
    assert_eq!(session.agent_id.as_deref(), Some("a2"));
    assert_eq!(session.participants, vec![colleague("a3")]);
    assert!(mutations
        .iter()
        .any(|m| matches!(m, Mutation::SetParticipants { .. })));
}
