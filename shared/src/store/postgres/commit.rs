//! The write path: one batch of mutations, one statement, all or nothing.
//!
//! A batch from the worker can carry hundreds of changes, and each round
//! trip to the server costs more than the rows themselves. So a batch is
//! sorted into columns of values (one array per column) and handed to one
//! server-side function, `chat_commit_batch` (migration 2), in one call:
//! one round trip and one commit whatever the number of rows, a fixed
//! statement that stays in the statement cache, and no limit on
//! parameters. Outside a transaction block a statement is its own
//! transaction, so the function's writes are atomic, and the call returns
//! once the commit is on disk.
//!
//! The order of a batch is kept where it matters. Mutations of one session
//! are folded into one row before anything is sent: the first one's
//! expected version (none for an insert) and the last one's record. That
//! is exactly what applying them in turn would do, provided each one
//! expects the version the previous one wrote; a batch that breaks that
//! chain (or inserts a session twice, or after updating it) would fail
//! when applied in turn, so it fails here with `StoreError::Conflict`
//! without a round trip. For read positions and user names the last
//! mutation of a key wins, as if each had been applied in turn.
//!
//! Races fail the whole batch, which rolls back and reaches the caller as
//! `StoreError::Conflict`: session updates check the expected version in
//! their WHERE clause, and fewer rows written than asked (like a session
//! insert that found its id taken) raises SQLSTATE `CH001`; a message
//! colliding with a stored one raises a unique violation (23505).

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::reactions::{Delivery, DeliveryKey, ReactionChange, ReactionKey};
use crate::protocol::{Message, ReadPosition};
use crate::store::{Mutation, SessionRecord, StoreError};
use crate::Timestamp;

/// The statement that applies a batch: `chat_commit_batch` over the 38
/// column arrays, in the order `Columns::params` lists them.
const COMMIT_BATCH: &str = "SELECT chat_commit_batch(\
     $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], \
     $15::int8[], $16::int8[], $17::int8[], $18::int8[], \
     $19::text[], $20::text[], $21::int8[], $22::text[], $23::text[], $24::text[], $25::text[], \
     $26::text[], $27::int8[], \
     $28::text[], $29::text[], $30::text[], $31::int8[], $32::int8[], \
     $33::text[], $34::text[], \
     $35::text[], $36::int8[], $37::int8[], $38::text[])";

/// Applies `mutations` in one transaction.
pub(super) async fn commit(client: &mut Object, mutations: &[Mutation]) -> Result<(), StoreError> {
    let plan = Plan::new(mutations)?;
    let statement = client.prepare_cached(COMMIT_BATCH).await?;
    let columns = Columns::of(&plan);
    if !plan.carries.any() {
        client.execute(&statement, &columns.params()).await?;
        return Ok(());
    }
    // The rest of a batch runs in the same transaction, after the batch's
    // statement, and only the kinds it carries: a batch that gives or
    // takes away sessions moves agents' loads and writes timeline entries
    // (one round trip per agent and entry; assignments are rare next to
    // messages), and notes, reactions and files have statements of their
    // own.
    let tx = client.transaction().await?;
    tx.execute(&statement, &columns.params()).await?;
    if plan.carries.routing {
        super::routing::record_events(&tx, mutations).await?;
    }
    if plan.carries.notes {
        super::notes::write(&tx, mutations).await?;
    }
    if plan.carries.reactions {
        super::reactions::write(
            &tx,
            &plan.reactions.entries,
            &plan.delivery_positions.entries,
        )
        .await?;
    }
    if plan.carries.attachments {
        super::attachments::reference(&tx, mutations).await?;
    }
    if plan.carries.routing {
        super::routing::adjust_loads(&tx, mutations).await?;
    }
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Sorting a batch

/// A batch sorted into what the function writes.
#[derive(Debug, Default)]
struct Plan<'a> {
    sessions: LastWins<&'a str, SessionWrite<'a>>,
    messages: Vec<&'a Message>,
    read_positions: LastWins<(&'a str, &'a str), (&'a ReadPosition, Timestamp)>,
    users: LastWins<&'a str, &'a str>,
    reactions: LastWins<ReactionKey<'a>, ReactionChange>,
    delivery_positions: LastWins<DeliveryKey<'a>, Delivery<'a>>,
    /// What else the batch writes, found in the same pass.
    carries: Carries,
}

/// What a batch writes besides the function's rows: each kind runs as
/// statements of its own after the batch's, in one transaction with it,
/// and only for the batches that carry it.
#[derive(Debug, Default, Clone, Copy)]
struct Carries {
    /// Agents' loads or timeline entries.
    routing: bool,
    /// Internal notes or invited colleagues.
    notes: bool,
    /// Reactions or delivery positions.
    reactions: bool,
    /// Files that messages come to carry.
    attachments: bool,
}

impl Carries {
    /// Whether the batch needs a transaction around its statements.
    fn any(self) -> bool {
        self.routing || self.notes || self.reactions || self.attachments
    }
}

/// The net effect of a batch on one session row.
#[derive(Debug, Clone, Copy)]
struct SessionWrite<'a> {
    /// The version the row must have now; None when the batch creates it.
    expected_version: Option<i64>,
    /// What the row becomes.
    record: &'a SessionRecord,
}

impl<'a> Plan<'a> {
    fn new(mutations: &'a [Mutation]) -> Result<Self, StoreError> {
        let mut plan = Plan::default();
        for mutation in mutations {
            match mutation {
                Mutation::InsertSession(record) => plan.add_session(record, None)?,
                Mutation::UpdateSession {
                    record,
                    expected_version,
                } => plan.add_session(record, Some(*expected_version))?,
                Mutation::InsertMessage(message) => plan.messages.push(message),
                Mutation::SetReadPosition {
                    session_id,
                    position,
                    read_at,
                } => plan.read_positions.set(
                    (session_id.as_str(), position.user_id.as_str()),
                    (position, *read_at),
                ),
                Mutation::RememberUser { user_id, name } => {
                    plan.users.set(user_id.as_str(), name.as_str())
                }
                Mutation::AdjustAgentLoad { .. } | Mutation::RecordSessionEvent(_) => {
                    plan.carries.routing = true
                }
                Mutation::InsertNote(_) | Mutation::SetParticipants { .. } => {
                    plan.carries.notes = true
                }
                Mutation::SetReaction {
                    session_id,
                    seq,
                    emoji,
                    user_id,
                    on,
                    at,
                } => {
                    let key = (session_id.as_str(), *seq, emoji.as_str(), user_id.as_str());
                    plan.add_reaction(key, ReactionChange::new(*on, *at));
                    plan.carries.reactions = true;
                }
                Mutation::SetDeliveryPosition {
                    session_id,
                    position,
                    delivered_at,
                } => {
                    plan.delivery_positions.set(
                        (session_id.as_str(), position.user_id.as_str()),
                        (position, *delivered_at),
                    );
                    plan.carries.reactions = true;
                }
                Mutation::ReferenceAttachment { .. } => plan.carries.attachments = true,
            }
        }
        Ok(plan)
    }

    /// Folds a reaction change into the batch's earlier changes of its key.
    fn add_reaction(&mut self, key: ReactionKey<'a>, change: ReactionChange) {
        match self.reactions.get_mut(&key) {
            Some(earlier) => earlier.then(change),
            None => self.reactions.set(key, change),
        }
    }

    /// Folds a session mutation into what the batch already does to that
    /// session.
    fn add_session(
        &mut self,
        record: &'a SessionRecord,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let id = record.session.id.as_str();
        let Some(earlier) = self.sessions.get_mut(&id) else {
            self.sessions.set(
                id,
                SessionWrite {
                    expected_version,
                    record,
                },
            );
            return Ok(());
        };
        match expected_version {
            Some(expected) if expected == earlier.record.version => {
                earlier.record = record;
                Ok(())
            }
            Some(expected) => Err(StoreError::Conflict(format!(
                "session {id} is updated from version {expected}, but the batch already \
                 made it version {}",
                earlier.record.version
            ))),
            None => Err(StoreError::Conflict(format!(
                "session {id} is created by a batch that already wrote it"
            ))),
        }
    }
}

/// Values by key in first-seen order, where setting a key again replaces
/// its value.
#[derive(Debug)]
struct LastWins<K, V> {
    index: HashMap<K, usize>,
    entries: Vec<(K, V)>,
}

impl<K, V> Default for LastWins<K, V> {
    fn default() -> Self {
        LastWins {
            index: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V> LastWins<K, V> {
    fn set(&mut self, key: K, value: V) {
        match self.index.get(&key) {
            Some(&at) => {
                if let Some(entry) = self.entries.get_mut(at) {
                    entry.1 = value;
                }
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        let at = *self.index.get(key)?;
        self.entries.get(at).map(|entry| &entry.1)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = *self.index.get(key)?;
        self.entries.get_mut(at).map(|entry| &mut entry.1)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, value)| value)
    }
}

// ---------------------------------------------------------------------------
// Columns

/// A plan as one array per column, the parameters of `COMMIT_BATCH`.
#[derive(Debug, Default)]
struct Columns<'a> {
    session_id: Vec<&'a str>,
    customer_id: Vec<&'a str>,
    customer_name: Vec<&'a str>,
    agent_id: Vec<Option<&'a str>>,
    agent_name: Vec<Option<&'a str>>,
    pool: Vec<&'a str>,
    status: Vec<&'static str>,
    subject: Vec<Option<&'a str>>,
    session_created_at: Vec<i64>,
    assigned_at: Vec<Option<i64>>,
    closed_at: Vec<Option<i64>>,
    last_seq: Vec<i64>,
    last_message_at: Vec<Option<i64>>,
    version: Vec<i64>,
    first_assigned_at: Vec<Option<i64>>,
    first_response_at: Vec<Option<i64>>,
    first_response_ms: Vec<Option<i64>>,
    expected_version: Vec<Option<i64>>,

    message_id: Vec<&'a str>,
    message_session_id: Vec<&'a str>,
    seq: Vec<i64>,
    sender_id: Vec<&'a str>,
    sender_name: Vec<&'a str>,
    sender_role: Vec<&'static str>,
    content: Vec<&'a str>,
    client_msg_id: Vec<Option<&'a str>>,
    message_created_at: Vec<i64>,

    read_session_id: Vec<&'a str>,
    read_user_id: Vec<&'a str>,
    read_role: Vec<&'static str>,
    up_to_seq: Vec<i64>,
    read_at: Vec<i64>,

    user_id: Vec<&'a str>,
    user_name: Vec<&'a str>,

    /// Messages per pool and UTC day, where the batch writes the session.
    count_pool: Vec<&'a str>,
    count_day: Vec<i64>,
    count_messages: Vec<i64>,
    /// Sessions of the other messages, for the function to check and count.
    unwritten_session_id: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(plan: &Plan<'a>) -> Self {
        let mut c = Columns::default();
        for write in plan.sessions.values() {
            let record = write.record;
            let s = &record.session;
            c.session_id.push(&s.id);
            c.customer_id.push(&s.customer_id);
            c.customer_name.push(&s.customer_name);
            c.agent_id.push(s.agent_id.as_deref());
            c.agent_name.push(s.agent_name.as_deref());
            c.pool.push(&s.pool);
            c.status.push(s.status.as_str());
            c.subject.push(s.subject.as_deref());
            c.session_created_at.push(s.created_at.millis());
            c.assigned_at.push(millis(s.assigned_at));
            c.closed_at.push(millis(s.closed_at));
            c.last_seq.push(s.last_seq);
            c.last_message_at.push(millis(s.last_message_at));
            c.version.push(record.version);
            c.first_assigned_at.push(millis(record.first_assigned_at));
            c.first_response_at.push(millis(record.first_response_at));
            c.first_response_ms.push(record.first_response_ms);
            c.expected_version.push(write.expected_version);
        }
        for message in &plan.messages {
            c.message_id.push(&message.id);
            c.message_session_id.push(&message.session_id);
            c.seq.push(message.seq);
            c.sender_id.push(&message.sender_id);
            c.sender_name.push(&message.sender_name);
            c.sender_role.push(message.sender_role.as_str());
            c.content.push(&message.content);
            c.client_msg_id.push(message.client_msg_id.as_deref());
            c.message_created_at.push(message.created_at.millis());
        }
        for ((session_id, user_id), (position, at)) in &plan.read_positions.entries {
            c.read_session_id.push(session_id);
            c.read_user_id.push(user_id);
            c.read_role.push(position.role.as_str());
            c.up_to_seq.push(position.up_to_seq);
            c.read_at.push(at.millis());
        }
        for (user_id, name) in &plan.users.entries {
            c.user_id.push(user_id);
            c.user_name.push(name);
        }
        let mut counts: BTreeMap<(&str, i64), i64> = BTreeMap::new();
        let mut unwritten: HashSet<&str> = HashSet::new();
        for message in &plan.messages {
            let session_id = message.session_id.as_str();
            match plan.sessions.get(&session_id) {
                Some(write) => {
                    let key = (
                        write.record.session.pool.as_str(),
                        utc_day(message.created_at),
                    );
                    *counts.entry(key).or_insert(0) += 1;
                }
                None => {
                    if unwritten.insert(session_id) {
                        c.unwritten_session_id.push(session_id);
                    }
                }
            }
        }
        for ((pool, day), messages) in counts {
            c.count_pool.push(pool);
            c.count_day.push(day);
            c.count_messages.push(messages);
        }
        c
    }

    /// `$1..$38` in the order of `chat_commit_batch`'s arguments.
    fn params(&self) -> [&(dyn ToSql + Sync); 38] {
        [
            &self.session_id,
            &self.customer_id,
            &self.customer_name,
            &self.agent_id,
            &self.agent_name,
            &self.pool,
            &self.status,
            &self.subject,
            &self.session_created_at,
            &self.assigned_at,
            &self.closed_at,
            &self.last_seq,
            &self.last_message_at,
            &self.version,
            &self.first_assigned_at,
            &self.first_response_at,
            &self.first_response_ms,
            &self.expected_version,
            &self.message_id,
            &self.message_session_id,
            &self.seq,
            &self.sender_id,
            &self.sender_name,
            &self.sender_role,
            &self.content,
            &self.client_msg_id,
            &self.message_created_at,
            &self.read_session_id,
            &self.read_user_id,
            &self.read_role,
            &self.up_to_seq,
            &self.read_at,
            &self.user_id,
            &self.user_name,
            &self.count_pool,
            &self.count_day,
            &self.count_messages,
            &self.unwritten_session_id,
        ]
    }
}

/// The start of the UTC day of `time`, as the schema buckets message
/// counts (integer division, as SQL does it).
fn utc_day(time: Timestamp) -> i64 {
    const DAY: i64 = 86_400_000;
    time.millis() / DAY * DAY
}

fn millis(time: Option<Timestamp>) -> Option<i64> {
    time.map(Timestamp::millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Role;
    use crate::store::test_records;

    fn record(id: &str, version: i64) -> SessionRecord {
        let mut record = test_records::session(id);
        record.session.pool = "p".into();
        record.version = version;
        record
    }

    fn insert(id: &str) -> Mutation {
        Mutation::InsertSession(record(id, 1))
    }

    fn update(id: &str, from: i64) -> Mutation {
        Mutation::UpdateSession {
            record: record(id, from + 1),
            expected_version: from,
        }
    }

    /// (id, expected version, resulting version) per session row written.
    fn rows(mutations: &[Mutation]) -> Vec<(&str, Option<i64>, i64)> {
        Plan::new(mutations)
            .expect("a consistent batch")
            .sessions
            .values()
            .map(|w| {
                (
                    w.record.session.id.as_str(),
                    w.expected_version,
                    w.record.version,
                )
            })
            .collect()
    }

    #[test]
    fn each_session_becomes_one_row() {
        let batch = [insert("a"), update("b", 1), insert("c"), update("d", 4)];
        assert_eq!(
            rows(&batch),
            vec![
                ("a", None, 1),
                ("b", Some(1), 2),
                ("c", None, 1),
                ("d", Some(4), 5)
            ]
        );
    }

    #[test]
    fn a_chain_of_changes_to_one_session_folds_into_its_net_effect() {
        let batch = [insert("a"), update("a", 1), update("b", 1), update("a", 2)];
        assert_eq!(rows(&batch), vec![("a", None, 3), ("b", Some(1), 2)]);
        let batch = [update("b", 5), update("b", 6)];
        assert_eq!(rows(&batch), vec![("b", Some(5), 7)]);
    }

    #[test]
    fn a_broken_chain_is_a_conflict_before_any_write() {
        for batch in [
            vec![insert("a"), insert("a")],
            vec![update("a", 1), insert("a")],
            vec![insert("a"), update("a", 4)],
            vec![update("a", 1), update("a", 1)],
        ] {
            assert!(
                matches!(Plan::new(&batch), Err(StoreError::Conflict(_))),
                "{batch:?}"
            );
        }
    }

    #[test]
    fn messages_are_counted_per_pool_and_day_where_the_batch_writes_the_session() {
        let day = 1_700_006_400_000; // a UTC midnight
        let message = |session: &str, at: i64| {
            let mut message = test_records::message(session, at, None);
            message.created_at = Timestamp(at);
            Mutation::InsertMessage(message)
        };
        let batch = [
            update("a", 1),
            message("a", day - 1),
            message("a", day),
            message("a", day + 5),
            message("elsewhere", day),
            message("elsewhere", day + 1),
        ];
        let plan = Plan::new(&batch).expect("plan");
        let columns = Columns::of(&plan);
        assert_eq!(columns.count_pool, vec!["p", "p"]);
        assert_eq!(columns.count_day, vec![day - 86_400_000, day]);
        assert_eq!(columns.count_messages, vec![1, 2]);
        assert_eq!(columns.unwritten_session_id, vec!["elsewhere"]);
    }

    #[test]
    fn the_last_name_and_read_position_of_a_key_win() {
        let position = |user: &str, seq: i64| Mutation::SetReadPosition {
            session_id: "s".into(),
            position: ReadPosition {
                user_id: user.into(),
                role: Role::Agent,
                up_to_seq: seq,
            },
            read_at: Timestamp(seq),
        };
        let name = |user: &str, name: &str| Mutation::RememberUser {
            user_id: user.into(),
            name: name.into(),
        };
        let batch = [
            name("u1", "Ann"),
            position("u1", 1),
            name("u2", "Bob"),
            position("u2", 5),
            name("u1", "Anne"),
            position("u1", 3),
        ];
        let plan = Plan::new(&batch).expect("plan");
        assert_eq!(plan.users.entries, vec![("u1", "Anne"), ("u2", "Bob")]);
        let seqs: Vec<(&str, i64)> = plan
            .read_positions
            .entries
            .iter()
            .map(|((_, user), (position, _))| (*user, position.up_to_seq))
            .collect();
        assert_eq!(seqs, vec![("u1", 3), ("u2", 5)]);
    }

    #[test]
    fn one_pass_finds_what_else_a_batch_writes() {
        let carries = |batch: &[Mutation]| {
            let c = Plan::new(batch).expect("plan").carries;
            (c.routing, c.notes, c.reactions, c.attachments)
        };
        let file = Mutation::ReferenceAttachment {
            attachment_id: "f".into(),
            session_id: "s".into(),
            seq: 1,
        };
        let reaction = Mutation::SetReaction {
            session_id: "s".into(),
            seq: 1,
            emoji: "👍".into(),
            user_id: "u".into(),
            on: true,
            at: Timestamp(1),
        };
        let colleagues = Mutation::SetParticipants {
            session_id: "s".into(),
            participants: Vec::new(),
        };
        let load = Mutation::AdjustAgentLoad {
            agent_id: "a".into(),
            delta: 1,
            at_most: None,
            assigned_at: None,
        };
        assert_eq!(carries(&[insert("a")]), (false, false, false, false));
        assert!(!Plan::new(&[insert("a")]).expect("plan").carries.any());
        assert_eq!(
            carries(&[insert("a"), file.clone(), reaction.clone()]),
            (false, false, true, true)
        );
        assert_eq!(carries(&[colleagues, load]), (true, true, false, false));
        assert!(Plan::new(&[file]).expect("plan").carries.any());
    }

    #[test]
    fn reactions_and_delivery_positions_fold_per_key_in_first_seen_order() {
        let reaction = |user: &str, on: bool, at: i64| Mutation::SetReaction {
            session_id: "s".into(),
            seq: 1,
            emoji: "👍".into(),
            user_id: user.into(),
            on,
            at: Timestamp(at),
        };
        let delivered = |user: &str, seq: i64| Mutation::SetDeliveryPosition {
            session_id: "s".into(),
            position: ReadPosition {
                user_id: user.into(),
                role: Role::Customer,
                up_to_seq: seq,
            },
            delivered_at: Timestamp(seq),
        };
        let batch = [
            reaction("u1", true, 1),
            delivered("u1", 1),
            reaction("u2", true, 2),
            delivered("u2", 4),
            reaction("u1", false, 3),
            delivered("u1", 2),
        ];
        let plan = Plan::new(&batch).expect("plan");
        let mut u1 = ReactionChange::new(true, Timestamp(1));
        u1.then(ReactionChange::new(false, Timestamp(3)));
        assert_eq!(
            plan.reactions.entries,
            vec![
                (("s", 1, "👍", "u1"), u1),
                (
                    ("s", 1, "👍", "u2"),
                    ReactionChange::new(true, Timestamp(2))
                ),
            ]
        );
        let positions: Vec<(&str, i64, i64)> = plan
            .delivery_positions
            .entries
            .iter()
            .map(|((_, user), (position, at))| (*user, position.up_to_seq, at.millis()))
            .collect();
        assert_eq!(positions, vec![("u1", 2, 2), ("u2", 4, 4)]);
        assert!(plan.carries.reactions);
    }
}
