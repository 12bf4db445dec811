//! The store seam: the durable record of sessions, messages, read positions,
//! known user names and the agent directory. `sqlite` implements it for
//! standalone mode; `postgres` serves the cluster. What the two share is
//! written once: the SQL (`sql`, spelled per dialect), the schema's
//! migrations and their runner (`migrations`), and the decoding of rows
//! (`rows`).
//!
//! The store holds no business rules. The worker loads what a batch of
//! commands touches (`load_batch`), decides every outcome in memory, and
//! writes the result in one transaction (`commit`). Each session row carries
//! a `version`; a commit whose expected versions no longer match, or whose
//! message collides with an existing one, fails as a whole with
//! `StoreError::Conflict`, so that two workers that ever overlap on a
//! partition can never assign the same `seq` twice or skip one.
//!
//! Every implementation must pass the suite in `conformance`.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::protocol::{Message, MessagePage, ReadPosition, Session, SessionStatus};
use crate::Timestamp;

mod attachments_sql;
mod migrations;
mod notes_sql;
mod reactions_sql;
mod routing_sql;
mod rows;
mod sql;
pub mod sqlite;
mod supervisor_sql;
mod timeline_sql;

#[cfg(feature = "postgres")]
pub mod postgres;

pub use attachments_sql::AttachmentRecord;

pub use reactions_sql::{reaction_list, ReactionRow};

#[cfg(any(test, feature = "conformance"))]
pub mod attachment_conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod notes_conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod reaction_conformance;

#[cfg(test)]
mod test_records;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The batch raced another writer; reload and decide again.
    #[error("write conflict: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

/// A session row: the public `Session` plus what the store keeps for
/// concurrency control and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session: Session,
    /// Bumped by one on every update of the row.
    pub version: i64,
    /// When an agent first took the session (waits are measured to it).
    pub first_assigned_at: Option<Timestamp>,
    /// When an agent first answered, and how long after assignment.
    pub first_response_at: Option<Timestamp>,
    pub first_response_ms: Option<i64>,
}

impl SessionRecord {
    /// A session as it is opened: pending, unassigned, without messages,
    /// at version 1.
    pub fn opened(
        id: String,
        customer_id: String,
        customer_name: String,
        pool: String,
        subject: Option<String>,
        created_at: Timestamp,
    ) -> SessionRecord {
        SessionRecord {
            session: Session {
                id,
                customer_id,
                customer_name,
                agent_id: None,
                agent_name: None,
                pool,
                status: SessionStatus::Pending,
                subject,
                created_at,
                assigned_at: None,
                closed_at: None,
                last_seq: 0,
                last_message_at: None,
                participants: Vec::new(),
            },
            version: 1,
            first_assigned_at: None,
            first_response_at: None,
            first_response_ms: None,
        }
    }
}

/// What a batch of commands needs to read before deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    pub session_ids: Vec<String>,
    /// (session id, sender id, client message id) of messages to send.
    pub client_messages: Vec<(String, String, String)>,
    /// (session id, user id) of read positions to move.
    pub read_positions: Vec<(String, String)>,
    /// Users whose stored display name is needed.
    pub user_ids: Vec<String>,
    /// Agents whose directory entry is needed (targets of assign and
    /// transfer).
    pub agent_ids: Vec<String>,
    /// Internal notes: sessions whose latest note number is needed, and
    /// (session id, sender id, client message id) of notes to send.
    pub note_sessions: Vec<String>,
    pub client_notes: Vec<(String, String, String)>,
    /// Reactions and delivery positions: (session id, seq) of messages
    /// whose reactions may change, and (session id, user id) of delivery
    /// positions to move.
    pub reactions: Vec<(String, i64)>,
    pub delivery_positions: Vec<(String, String)>,
    /// Attachments: uploaded files a message of the batch would carry.
    pub attachment_ids: Vec<String>,
}

impl BatchKeys {
    /// Whether nothing is named, so there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.session_ids.is_empty()
            && self.client_messages.is_empty()
            && self.read_positions.is_empty()
            && self.user_ids.is_empty()
            && self.agent_ids.is_empty()
            && self.note_sessions.is_empty()
            && self.client_notes.is_empty()
            && self.reactions.is_empty()
            && self.attachment_ids.is_empty()
            && self.delivery_positions.is_empty()
    }
}

/// The current state of everything named in `BatchKeys`; absent keys are
/// simply missing from the maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSnapshot {
    pub sessions: HashMap<String, SessionRecord>,
    pub messages_by_client_id: HashMap<(String, String, String), Message>,
    pub read_positions: HashMap<(String, String), i64>,
    pub user_names: HashMap<String, String>,
    pub agents: HashMap<String, AgentRecord>,
    /// Internal notes: the latest note number of each session named (0,
    /// or absent, when it has none), and the notes found by client id.
    pub last_note_seqs: HashMap<String, i64>,
    pub notes_by_client_id: HashMap<(String, String, String), Message>,
    /// Reactions and delivery positions: the reaction rows of each message
    /// named (absent when it has none), in no particular order, and the
    /// delivery positions found.
    pub reactions: HashMap<(String, i64), Vec<ReactionRow>>,
    pub delivery_positions: HashMap<(String, String), i64>,
    /// Attachments: the uploaded files named, by id (absent when unknown).
    pub attachments: HashMap<String, AttachmentRecord>,
}

/// An entry of the agent directory: an agent who has connected at least
/// once, with the name and pools their token carried the last time, and
/// when they were last seen (connecting or disconnecting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    /// Sorted and without repeats.
    pub pools: Vec<String>,
    pub last_seen_at: Timestamp,
}

impl AgentRecord {
    pub fn serves(&self, pool: &str) -> bool {
        self.pools.iter().any(|p| p == pool)
    }
}

/// A directory entry with what routing keeps of the agent: the status
/// they last set, their own capacity, and their load, which every commit
/// that gives them a session or takes one away keeps current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedAgent {
    pub agent: AgentRecord,
    /// `Online` or `Away`, never `Offline` (presence says that).
    pub status: crate::protocol::AgentStatus,
    /// Set by an admin; `None` falls back to the pool's default.
    pub capacity: Option<i64>,
    /// Sessions active with the agent now.
    pub open_chats: i64,
    /// When a session was last given to them (ties go to the longest idle).
    pub last_assigned_at: Option<Timestamp>,
}

/// A change an agent or an admin makes to an agent's routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingChange {
    Status(crate::protocol::AgentStatus),
    Capacity(Option<i64>),
}

/// A session waiting in its pool's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSession {
    pub session_id: String,
    pub customer_id: String,
    pub created_at: Timestamp,
}

/// The head of a pool's queue and what the wait estimate needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueView {
    /// The first sessions of the queue, in queue order (creation, then id).
    pub waiting: Vec<QueuedSession>,
    /// Sessions first assigned since the time asked for.
    pub assigned_since: i64,
}

/// An active session held by an agent, for giving it back to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldChat {
    pub session_id: String,
    pub agent_id: String,
    pub pool: String,
}

/// Which open chats a read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenChats {
    /// Waiting and active.
    All,
    /// Waiting only: the queue.
    Waiting,
}

/// An open chat as the supervisor's view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisedChat {
    pub session: Session,
    /// When it last entered the queue: its creation, or its latest return.
    pub queued_at: Timestamp,
    /// Messages past its agent's read position; `None` without an agent.
    pub unread_by_agent: Option<i64>,
}

/// An agent's first responses since the start of the day.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDay {
    pub agent_id: String,
    pub answered: i64,
    pub avg_first_response_seconds: Option<f64>,
}

/// One change of a batch, applied in order within one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    InsertSession(SessionRecord),
    /// Replaces the row if its version is still `expected_version`; the
    /// record's own `version` is the new one.
    UpdateSession {
        record: SessionRecord,
        expected_version: i64,
    },
    /// Fails the batch with `Conflict` if (session, seq) or (session,
    /// sender, client message id) already exists.
    InsertMessage(Message),
    /// Sets a read position (insert or update).
    SetReadPosition {
        session_id: String,
        position: ReadPosition,
        read_at: Timestamp,
    },
    RememberUser {
        user_id: String,
        name: String,
    },
    /// Moves an agent's open chats by `delta` (applied after every session
    /// write of the batch; nothing happens to an agent outside the
    /// directory). With `at_most`, the batch fails with `Conflict` when the
    /// count would then exceed it: an automatic assignment that another
    /// writer's commit has made one too many. `assigned_at` sets when the
    /// agent was last given a session.
    AdjustAgentLoad {
        agent_id: String,
        delta: i64,
        at_most: Option<i64>,
        assigned_at: Option<Timestamp>,
    },
    /// Adds a system entry to a session's timeline.
    RecordSessionEvent(crate::protocol::SessionEvent),
    /// Internal notes and invited colleagues.
    ///
    /// Stores an internal note (`internal`, numbered in the notes' own
    /// sequence, placed by `after_seq`); fails the batch with `Conflict` if
    /// (session, seq) or (session, sender, client message id) of a note
    /// already exists. Messages and `last_seq` are left alone.
    InsertNote(Message),
    /// Writes a session's invited colleagues. The worker sends it with the
    /// version-checked `UpdateSession` of the same row, which decides
    /// whether the batch may write it.
    SetParticipants {
        session_id: String,
        participants: Vec<crate::protocol::Participant>,
    },
    /// Reactions and delivery positions: adds (`on`) or takes back one
    /// user's reaction to a message. Adding one already there keeps its
    /// time; taking back one never made changes nothing.
    SetReaction {
        session_id: String,
        seq: i64,
        emoji: String,
        user_id: String,
        on: bool,
        at: Timestamp,
    },
    /// Sets a delivery position (insert or update).
    SetDeliveryPosition {
        session_id: String,
        position: ReadPosition,
        delivered_at: Timestamp,
    },
    /// Attachments: marks an uploaded file as carried by message `seq` of
    /// its session. Fails the batch with `Conflict` when the file is not of
    /// that session or a message already carries it.
    ReferenceAttachment {
        attachment_id: String,
        session_id: String,
        seq: i64,
    },
}

/// Which sessions a `list_sessions` caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionScope {
    Customer(String),
    Pools(Vec<String>),
    All,
}

/// Position after which a session list continues: newest first, ordered by
/// (created_at, id) descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub created_at: Timestamp,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    pub scope: SessionScope,
    pub status: Option<crate::protocol::SessionStatus>,
    pub pool: Option<String>,
    pub limit: usize,
    pub after: Option<SessionCursor>,
}

/// Which slice of a session's messages to read; results are always
/// ascending by `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRange {
    /// The first `limit` with seq greater than this.
    After(i64),
    /// The last `limit` with seq less than this.
    Before(i64),
    /// The last `limit` of the session.
    Latest,
    /// The first `limit` with seq strictly between the two (a gap to fill).
    Between { after: i64, before: i64 },
}

impl MessageRange {
    /// The range as the SQL both stores run reads it: `seq > lower AND seq
    /// < upper`, and whether to take the newest first (then reversed, so
    /// that results stay ascending).
    pub fn bounds(self) -> (i64, i64, bool) {
        match self {
            MessageRange::After(seq) => (seq, i64::MAX, false),
            MessageRange::Before(seq) => (i64::MIN, seq, true),
            MessageRange::Latest => (i64::MIN, i64::MAX, true),
            MessageRange::Between { after, before } => (after, before, false),
        }
    }
}

/// The store's part of a pool's stats; the worker adds presence.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolFigures {
    pub pending_sessions: i64,
    pub active_sessions: i64,
    pub closed_today: i64,
    /// Creation time of the oldest session pending now.
    pub oldest_pending_created_at: Option<Timestamp>,
    /// Mean of (first_assigned_at - created_at) over sessions first assigned
    /// since `day_start`, in seconds.
    pub avg_wait_seconds: Option<f64>,
    /// Mean of first_response_ms over sessions first answered since
    /// `day_start`, in seconds.
    pub avg_first_response_seconds: Option<f64>,
    /// Messages of the pool created since `day_start`.
    pub messages_today: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn load_batch(&self, keys: &BatchKeys) -> Result<BatchSnapshot, StoreError>;

    /// Applies every mutation in one transaction, or none.
    async fn commit(&self, mutations: Vec<Mutation>) -> Result<(), StoreError>;

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError>;

    /// Up to `query.limit` sessions, newest first.
    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError>;

    /// Up to `limit` messages of the range, ascending by seq, with whether
    /// more exist beyond them in the direction read.
    async fn messages(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError>;

    /// Read positions of a session, ordered by user id.
    async fn read_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError>;

    /// Today's figures of a pool; `day_start` is the start of a UTC day
    /// (stores may count messages per UTC day).
    async fn pool_figures(
        &self,
        pool: &str,
        day_start: Timestamp,
    ) -> Result<PoolFigures, StoreError>;

    /// Records `agent` in the directory, replacing its name and pools (a
    /// token is the truth about them at the time it is used) and moving
    /// `last_seen_at` forward only; also stores the name as the user's
    /// display name. Gateways call it as agents connect and disconnect,
    /// outside any batch: the directory is not session state, so it needs
    /// no worker and no version check.
    async fn remember_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;

    /// The directory: every agent, or those serving `pool`, sorted by name
    /// then id.
    async fn list_agents(&self, pool: Option<&str>) -> Result<Vec<AgentRecord>, StoreError>;

    /// The latest `limit` timeline entries of a session, oldest first.
    async fn session_events(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<crate::protocol::SessionEvent>, StoreError>;

    /// Up to `limit` internal notes of the range (by the notes' own
    /// `seq`), ascending, with whether more exist in the direction read;
    /// the same windows as `messages`.
    async fn notes(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError>;

    /// Up to `limit` open chats (waiting and active, or only waiting) of
    /// `pool`, or of all pools, oldest first.
    async fn open_chats(
        &self,
        pool: Option<&str>,
        which: OpenChats,
        limit: usize,
    ) -> Result<Vec<SupervisedChat>, StoreError>;

    /// Every agent's first responses since `day_start`.
    async fn agent_days(&self, day_start: Timestamp) -> Result<Vec<AgentDay>, StoreError>;

    /// The directory with each agent's routing, in `list_agents`' order.
    async fn routed_agents(&self, pool: Option<&str>) -> Result<Vec<RoutedAgent>, StoreError>;

    /// One agent of the directory with their routing.
    async fn routed_agent(&self, agent_id: &str) -> Result<Option<RoutedAgent>, StoreError>;

    /// Applies `change` to an agent of the directory and returns the
    /// entry as it now is; `None` when the agent is not in the directory.
    /// Like `remember_agent`, outside any batch: no session changes.
    async fn change_routing(
        &self,
        agent_id: &str,
        change: RoutingChange,
    ) -> Result<Option<RoutedAgent>, StoreError>;

    /// The first `limit` sessions waiting in `pool`, and how many of the
    /// pool's sessions were first assigned since `assigned_since`.
    async fn queue(
        &self,
        pool: &str,
        limit: usize,
        assigned_since: Timestamp,
    ) -> Result<QueueView, StoreError>;

    /// How many sessions of `pool` wait ahead of `session_id` (all that
    /// wait, when it is not in the store yet).
    async fn waiting_ahead(&self, pool: &str, session_id: &str) -> Result<i64, StoreError>;

    /// The pools that have sessions waiting now.
    async fn waiting_pools(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` active sessions whose agent was last seen (connecting
    /// or disconnecting) before `seen_before`.
    async fn chats_of_agents_seen_before(
        &self,
        seen_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<HeldChat>, StoreError>;

    /// Reactions and delivery positions: the delivery positions of a
    /// session, ordered by user id. (Reactions come with the messages
    /// `messages` reads.)
    async fn delivery_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError>;

    /// Cheap liveness probe for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Appends the store's own Prometheus families, if it keeps any (the
    /// PostgreSQL store's replica reads); most stores keep none.
    fn render_metrics(&self, _out: &mut String) {}

    // Attachments: the metadata of uploaded files (their bytes are in the
    // blob store under the same id). Written and removed outside any
    // batch, like the directory: an upload changes no session.

    /// Records an uploaded file.
    async fn insert_attachment(&self, attachment: &AttachmentRecord) -> Result<(), StoreError>;

    async fn attachment(&self, id: &str) -> Result<Option<AttachmentRecord>, StoreError>;

    /// Up to `limit` files no message refers to, uploaded before `before`,
    /// oldest first.
    async fn unreferenced_attachments_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<AttachmentRecord>, StoreError>;

    /// Removes a file's row while no message refers to it; whether it did.
    async fn delete_attachment(&self, id: &str) -> Result<bool, StoreError>;
}
