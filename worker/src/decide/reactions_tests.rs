//! The rules of `react` and `mark_delivered`, one at a time: snapshots are
//! built by hand, commands applied to a `BatchState`, and each test looks
//! at the reply, the event (down to the frame a browser gets) and the
//! writes the batch would commit.

use chat_shared::auth::Identity;
use chat_shared::envelope::{Command, CommandEnvelope, Delivery, ReplyBody};
use chat_shared::names::Names;
use chat_shared::protocol::{server_events, Reaction, ReadPosition, Role, Session, SessionStatus};
use chat_shared::store::{BatchSnapshot, Mutation, ReactionRow, SessionRecord};
use chat_shared::{ErrorCode, Timestamp};
use serde_json::{json, Value};

use super::react::{MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER};
use super::{keys_for, BatchState, Decision};

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const CREATED: Timestamp = Timestamp(1_699_999_000_000);

fn names() -> Names {
    Names::new("t")
}

fn who(id: &str, role: Role, pools: &[&str]) -> Identity {
    Identity {
        user_id: id.to_owned(),
        name: format!("Name of {id}"),
        role,
        pools: pools.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn customer() -> Identity {
    who("c1", Role::Customer, &[])
}

fn assigned_agent() -> Identity {
    who("a1", Role::Agent, &["billing"])
}

/// Customer `c1`'s session `s1` in pool `billing`, active with agent `a1`,
/// holding `last_seq` messages.
fn session(status: SessionStatus, last_seq: i64) -> SessionRecord {
    SessionRecord {
        session: Session {
            id: "s1".into(),
            customer_id: "c1".into(),
            customer_name: "Name of c1".into(),
            agent_id: Some("a1".into()),
            agent_name: Some("Name of a1".into()),
            pool: "billing".into(),
            status,
            subject: None,
            created_at: CREATED,
            assigned_at: Some(CREATED),
            closed_at: (status == SessionStatus::Closed).then_some(CREATED),
            last_seq,
            last_message_at: Some(CREATED),
            participants: Vec::new(),
        },
        version: 3,
        first_assigned_at: Some(CREATED),
        first_response_at: None,
        first_response_ms: None,
    }
}

/// A snapshot of `record` where everyone named in the tests is known by
/// name (so no `RememberUser` is due).
fn snapshot(record: SessionRecord) -> BatchSnapshot {
    let mut snapshot = BatchSnapshot::default();
    snapshot.sessions.insert(record.session.id.clone(), record);
    for id in ["c1", "c2", "a1", "a2", "a3", "root"] {
        snapshot
            .user_names
            .insert(id.to_owned(), format!("Name of {id}"));
    }
    snapshot
}

fn row(emoji: &str, user: &str, at: i64) -> ReactionRow {
    ReactionRow {
        emoji: emoji.into(),
        user_id: user.into(),
        created_at: Timestamp(at),
    }
}

struct Batch {
    state: BatchState,
}

impl Batch {
    fn new(snapshot: BatchSnapshot) -> Self {
        Batch {
            state: BatchState::new(snapshot, names()),
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
        let mut new_id = || "m-new".to_owned();
        self.state.apply(&envelope, now, &mut new_id)
    }

    fn mutations(self) -> Vec<Mutation> {
        self.state.into_mutations()
    }
}

fn react(seq: i64, emoji: &str, on: bool) -> Command {
    Command::React {
        session_id: "s1".into(),
        seq,
        emoji: emoji.into(),
        on,
    }
}

fn mark_delivered(up_to_seq: i64) -> Command {
    Command::MarkDelivered {
        session_id: "s1".into(),
        up_to_seq,
    }
}

fn reaction(emoji: &str, users: &[&str]) -> Reaction {
    Reaction {
        emoji: emoji.into(),
        count: users.len() as i64,
        user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
    }
}

fn reactions_reply(decision: &Decision) -> (i64, Vec<Reaction>) {
    match &decision.reply {
        Ok(ReplyBody::Reactions { seq, reactions }) => (*seq, reactions.clone()),
        other => panic!("expected reactions, got {other:?}"),
    }
}

fn position_reply(decision: &Decision) -> ReadPosition {
    match &decision.reply {
        Ok(ReplyBody::ReadPosition(position)) => position.clone(),
        other => panic!("expected a position, got {other:?}"),
    }
}

fn error_code(decision: &Decision) -> ErrorCode {
    match &decision.reply {
        Err(error) => error.code,
        Ok(body) => panic!("expected an error, got {body:?}"),
    }
}

/// The one delivery of `decision`: `event` to the session's channel; its
/// payload as the browser reads it.
fn only_event(decision: &Decision, event: &str) -> Value {
    assert_eq!(decision.deliveries.len(), 1, "{:?}", decision.deliveries);
    let delivery: &Delivery = &decision.deliveries[0];
    assert_eq!(delivery.event, event);
    assert_eq!(delivery.audience, [names().session_channel("s1")]);
    assert_eq!(delivery.session_id.as_deref(), Some("s1"));
    assert_eq!(delivery.seq, None, "not a message: no gap repair by seq");
    let body = delivery
        .frame
        .strip_prefix("42/chat,")
        .expect("an event packet of /chat");
    let packet: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(packet[0], json!(event));
    packet[1].clone()
}

#[test]
fn a_reaction_is_stored_announced_and_acked_with_the_whole_list() {
    let mut snap = snapshot(session(SessionStatus::Active, 3));
    snap.reactions
        .insert(("s1".into(), 2), vec![row("❤️", "a1", 5)]);
    let mut batch = Batch::new(snap);
    let decision = batch.apply(&customer(), react(2, "👍", true));
    let expected = vec![reaction("❤️", &["a1"]), reaction("👍", &["c1"])];
    assert_eq!(reactions_reply(&decision), (2, expected));
    assert_eq!(
        only_event(&decision, server_events::MESSAGE_REACTIONS),
        json!({"sessionId": "s1", "seq": 2, "reactions": [
            {"emoji": "❤️", "count": 1, "userIds": ["a1"]},
            {"emoji": "👍", "count": 1, "userIds": ["c1"]},
        ]})
    );
    assert_eq!(
        batch.mutations(),
        vec![Mutation::SetReaction {
            session_id: "s1".into(),
            seq: 2,
            emoji: "👍".into(),
            user_id: "c1".into(),
            on: true,
            at: NOW,
        }]
    );
}

#[test]
fn reacting_twice_or_taking_back_nothing_changes_nothing() {
    let mut snap = snapshot(session(SessionStatus::Active, 3));
    snap.reactions
        .insert(("s1".into(), 1), vec![row("👍", "c1", 5)]);
    let mut batch = Batch::new(snap);
    let again = batch.apply(&customer(), react(1, "👍", true));
    assert_eq!(reactions_reply(&again), (1, vec![reaction("👍", &["c1"])]));
    assert!(again.deliveries.is_empty());
    let never = batch.apply(&assigned_agent(), react(1, "👍", false));
    assert_eq!(reactions_reply(&never), (1, vec![reaction("👍", &["c1"])]));
    assert!(never.deliveries.is_empty());
    let other = batch.apply(&customer(), react(3, "🎉", false));
    assert_eq!(reactions_reply(&other), (3, vec![]));
    assert!(batch.mutations().is_empty(), "nothing to write");
}

#[test]
fn taking_back_removes_the_user_and_an_emoji_nobody_holds() {
    let mut snap = snapshot(session(SessionStatus::Active, 3));
    snap.reactions.insert(
        ("s1".into(), 1),
        vec![row("👍", "c1", 1), row("❤️", "a1", 2), row("👍", "a1", 3)],
    );
    let mut batch = Batch::new(snap);
    let decision = batch.apply(&customer(), react(1, "👍", false));
    // 👍's first use is now a1's, after ❤️.
    assert_eq!(
        reactions_reply(&decision).1,
        vec![reaction("❤️", &["a1"]), reaction("👍", &["a1"])]
    );
    let decision = batch.apply(&assigned_agent(), react(1, "❤️", false));
    assert_eq!(reactions_reply(&decision).1, vec![reaction("👍", &["a1"])]);
    let payload = only_event(&decision, server_events::MESSAGE_REACTIONS);
    assert_eq!(
        payload["reactions"],
        json!([{"emoji": "👍", "count": 1, "userIds": ["a1"]}])
    );
    let written = batch.mutations();
    assert_eq!(written.len(), 2);
    assert!(written
        .iter()
        .all(|m| matches!(m, Mutation::SetReaction { on: false, .. })));
}

#[test]
fn later_commands_of_a_batch_see_earlier_reactions() {
    let mut batch = Batch::new(snapshot(session(SessionStatus::Active, 1)));
    batch.apply_at(&customer(), react(1, "👍", true), Timestamp(10));
    let second = batch.apply_at(&assigned_agent(), react(1, "👍", true), Timestamp(11));
    assert_eq!(
        reactions_reply(&second).1,
        vec![reaction("👍", &["c1", "a1"])]
    );
    let back = batch.apply_at(&customer(), react(1, "👍", false), Timestamp(12));
    assert_eq!(reactions_reply(&back).1, vec![reaction("👍", &["a1"])]);
    assert_eq!(batch.mutations().len(), 3, "each change is written in turn");
}

#[test]
fn only_writers_react_and_only_to_messages_of_an_open_session() {
    let cases: Vec<(Identity, SessionStatus, i64, ErrorCode)> = vec![
        // The pool's other agents may read, not write.
        (
            who("a2", Role::Agent, &["billing"]),
            SessionStatus::Active,
            1,
            ErrorCode::Forbidden,
        ),
        (
            who("c2", Role::Customer, &[]),
            SessionStatus::Active,
            1,
            ErrorCode::Forbidden,
        ),
        (
            customer(),
            SessionStatus::Closed,
            1,
            ErrorCode::SessionClosed,
        ),
        (customer(), SessionStatus::Active, 0, ErrorCode::NotFound),
        (customer(), SessionStatus::Active, 4, ErrorCode::NotFound),
    ];
    for (actor, status, seq, code) in cases {
        let mut batch = Batch::new(snapshot(session(status, 3)));
        let decision = batch.apply(&actor, react(seq, "👍", true));
        assert_eq!(error_code(&decision), code, "{} on {seq}", actor.user_id);
        assert!(decision.deliveries.is_empty());
        assert!(batch.mutations().is_empty());
    }
    // A closed session refuses even a take-back that would change nothing.
    let mut batch = Batch::new(snapshot(session(SessionStatus::Closed, 3)));
    let decision = batch.apply(&customer(), react(1, "👍", false));
    assert_eq!(error_code(&decision), ErrorCode::SessionClosed);
    // An unknown session is not_found; admins and the assigned agent may.
    let mut batch = Batch::new(snapshot(session(SessionStatus::Active, 3)));
    let mut unknown = react(1, "👍", true);
    if let Command::React { session_id, .. } = &mut unknown {
        *session_id = "nope".into();
    }
    assert_eq!(
        error_code(&batch.apply(&customer(), unknown)),
        ErrorCode::NotFound
    );
    assert!(batch
        .apply(&who("root", Role::Admin, &[]), react(3, "👍", true))
        .reply
        .is_ok());
    assert!(batch
        .apply(&assigned_agent(), react(3, "👍", true))
        .reply
        .is_ok());
}

#[test]
fn a_message_holds_twenty_emoji_and_ten_reactions_of_one_user() {
    let emoji: Vec<String> = ('\u{1F600}'..)
        .take(MAX_EMOJI_PER_MESSAGE + 1)
        .map(String::from)
        .collect();
    // 20 different emoji from other users: a 21st is refused, one of the
    // 20 is still welcome.
    let mut snap = snapshot(session(SessionStatus::Active, 1));
    let rows: Vec<ReactionRow> = emoji[..MAX_EMOJI_PER_MESSAGE]
        .iter()
        .enumerate()
        .map(|(at, e)| row(e, if at % 2 == 0 { "a1" } else { "root" }, at as i64))
        .collect();
    snap.reactions.insert(("s1".into(), 1), rows);
    let mut batch = Batch::new(snap);
    let refused = batch.apply(&customer(), react(1, &emoji[MAX_EMOJI_PER_MESSAGE], true));
    assert_eq!(error_code(&refused), ErrorCode::Conflict);
    let joined = batch.apply(&customer(), react(1, &emoji[0], true));
    assert_eq!(reactions_reply(&joined).1.len(), MAX_EMOJI_PER_MESSAGE);
    assert_eq!(reactions_reply(&joined).1[0].user_ids, ["a1", "c1"]);

    // Ten of one user: an eleventh is refused, a take-back makes room.
    let mut snap = snapshot(session(SessionStatus::Active, 1));
    let own: Vec<ReactionRow> = emoji[..MAX_REACTIONS_PER_USER]
        .iter()
        .enumerate()
        .map(|(at, e)| row(e, "c1", at as i64))
        .collect();
    snap.reactions.insert(("s1".into(), 1), own);
    let mut batch = Batch::new(snap);
    let eleventh = &emoji[MAX_REACTIONS_PER_USER];
    assert_eq!(
        error_code(&batch.apply(&customer(), react(1, eleventh, true))),
        ErrorCode::Conflict
    );
    // Someone else may still use it.
    assert!(batch
        .apply(&assigned_agent(), react(1, eleventh, true))
        .reply
        .is_ok());
    assert!(batch
        .apply(&customer(), react(1, &emoji[0], false))
        .reply
        .is_ok());
    let now_fits = batch.apply(&customer(), react(1, eleventh, true));
    assert_eq!(
        reactions_reply(&now_fits).1.last(),
        Some(&reaction(eleventh, &["a1", "c1"]))
    );
}

#[test]
fn a_reaction_to_a_message_sent_in_the_same_batch_follows_it() {
    let mut batch = Batch::new(snapshot(session(SessionStatus::Active, 2)));
    let sent = batch.apply(
        &customer(),
        Command::SendMessage {
            session_id: "s1".into(),
            content: "hello".into(),
            client_msg_id: Some("k1".into()),
            attachment_ids: Vec::new(),
        },
    );
    assert!(sent.reply.is_ok());
    let decision = batch.apply(&assigned_agent(), react(3, "👍", true));
    assert_eq!(
        reactions_reply(&decision),
        (3, vec![reaction("👍", &["a1"])])
    );
    let written = batch.mutations();
    let message_at = written
        .iter()
        .position(|m| matches!(m, Mutation::InsertMessage(message) if message.seq == 3))
        .expect("the message is written");
    let reaction_at = written
        .iter()
        .position(|m| matches!(m, Mutation::SetReaction { .. }))
        .expect("the reaction is written");
    assert!(message_at < reaction_at, "the message comes first");
}

#[test]
fn a_delivery_position_moves_forward_only_and_up_to_the_last_message() {
    let mut snap = snapshot(session(SessionStatus::Active, 5));
    snap.delivery_positions
        .insert(("s1".into(), "c1".into()), 2);
    snap.read_positions.insert(("s1".into(), "c1".into()), 4);
    let mut batch = Batch::new(snap);
    let decision = batch.apply(&customer(), mark_delivered(9));
    let expected = ReadPosition {
        user_id: "c1".into(),
        role: Role::Customer,
        up_to_seq: 5,
    };
    assert_eq!(position_reply(&decision), expected);
    assert_eq!(
        only_event(&decision, server_events::MESSAGES_DELIVERED),
        json!({"sessionId": "s1", "userId": "c1", "role": "customer", "upToSeq": 5,
               "deliveredAt": "2023-11-14T22:13:20.000Z"})
    );
    // Back, or the same again: the stored position, no event.
    for back in [3, 5] {
        let decision = batch.apply(&customer(), mark_delivered(back));
        assert_eq!(position_reply(&decision), expected);
        assert!(decision.deliveries.is_empty());
    }
    assert_eq!(
        batch.mutations(),
        vec![Mutation::SetDeliveryPosition {
            session_id: "s1".into(),
            position: expected,
            delivered_at: NOW,
        }],
        "one write; no read position moves"
    );
}

#[test]
fn readers_of_the_session_confirm_delivery_and_outsiders_may_not() {
    // The pool's other agents read the session: they may.
    for (actor, up_to_seq) in [
        (who("a2", Role::Agent, &["billing"]), 1),
        (assigned_agent(), 2),
        (who("root", Role::Admin, &[]), 3),
    ] {
        let mut batch = Batch::new(snapshot(session(SessionStatus::Active, 3)));
        let decision = batch.apply(&actor, mark_delivered(up_to_seq));
        assert_eq!(position_reply(&decision).up_to_seq, up_to_seq);
        assert_eq!(position_reply(&decision).role, actor.role);
    }
    // A closed session still takes it, as mark-read.
    let mut batch = Batch::new(snapshot(session(SessionStatus::Closed, 3)));
    assert_eq!(
        position_reply(&batch.apply(&customer(), mark_delivered(3))).up_to_seq,
        3
    );
    for outsider in [
        who("a3", Role::Agent, &["other"]),
        who("c2", Role::Customer, &[]),
    ] {
        let mut batch = Batch::new(snapshot(session(SessionStatus::Active, 3)));
        let decision = batch.apply(&outsider, mark_delivered(1));
        assert_eq!(error_code(&decision), ErrorCode::Forbidden);
        assert!(batch.mutations().is_empty());
    }
}

#[test]
fn the_batch_loads_what_reactions_and_deliveries_need() {
    let envelope = |actor: Identity, command: Command| CommandEnvelope {
        reply_to: None,
        actor,
        issued_at: NOW,
        command,
    };
    let commands = [
        envelope(customer(), react(2, "👍", true)),
        envelope(assigned_agent(), react(2, "❤️", true)),
        envelope(assigned_agent(), mark_delivered(2)),
    ];
    let keys = keys_for(&commands.iter().collect::<Vec<_>>());
    assert_eq!(keys.session_ids, ["s1"]);
    assert_eq!(keys.reactions, [("s1".to_owned(), 2)]);
    assert_eq!(
        keys.delivery_positions,
        [("s1".to_owned(), "a1".to_owned())]
    );
    assert!(keys.read_positions.is_empty());
}
