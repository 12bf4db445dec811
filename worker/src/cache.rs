//! What the worker remembers of the sessions and users it loaded or wrote,
//! so that a steady stream of messages costs the store one write per batch
//! and no reads.
//!
//! The worker owning a partition is the only writer of its sessions, so
//! what it last wrote is what the store holds. Where that could be wrong
//! (another worker held the partition for a while, a commit failed
//! half-way through the network), nothing wrong can follow from it:
//! - every session write checks the version it was decided on, so a stale
//!   entry makes the commit fail as a conflict, and the batch is decided
//!   again on what the store holds;
//! - a refusal decided on remembered state is not given until the store
//!   confirms it (the processor decides again without the cache);
//! - a message's client id is not looked up for a remembered session: a
//!   resend of a stored message then collides with it on the store's
//!   unique index, which is again a conflict and a fresh decision.
//!
//! Entries of a session are dropped when a commit touching it fails, when
//! it closes, and all of them when the worker takes a partition. A
//! bound on the number of entries keeps memory flat whatever the traffic.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chat_shared::protocol::SessionStatus;
use chat_shared::store::{BatchKeys, BatchSnapshot, Mutation, SessionRecord};

/// Sessions remembered at most; past it the cache starts over.
pub const DEFAULT_CAPACITY: usize = 50_000;

pub struct StateCache {
    capacity: usize,
    state: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    sessions: HashMap<String, SessionRecord>,
    user_names: HashMap<String, String>,
}

/// A lookup: what the cache knows, and the keys left for the store.
pub struct Lookup {
    pub known: BatchSnapshot,
    pub to_load: BatchKeys,
}

impl Lookup {
    /// Whether any session state came from the cache rather than the store.
    pub fn used_remembered_sessions(&self) -> bool {
        !self.known.sessions.is_empty()
    }
}

/// What a batch's commit makes true, taken before the mutations go to the
/// store.
pub struct Written {
    sessions: Vec<SessionRecord>,
    user_names: Vec<(String, String)>,
}

impl Written {
    pub fn of(mutations: &[Mutation]) -> Self {
        let mut written = Written {
            sessions: Vec::new(),
            user_names: Vec::new(),
        };
        for mutation in mutations {
            match mutation {
                Mutation::InsertSession(record) | Mutation::UpdateSession { record, .. } => {
                    written.sessions.push(record.clone())
                }
                Mutation::RememberUser { user_id, name } => {
                    written.user_names.push((user_id.clone(), name.clone()))
                }
                Mutation::InsertMessage(_)
                | Mutation::SetReadPosition { .. }
                | Mutation::AdjustAgentLoad { .. }
                | Mutation::RecordSessionEvent(_)
                | Mutation::SetReaction { .. }
                | Mutation::SetDeliveryPosition { .. } => {}
                // The note is not session state, and the colleagues are in
                // the session's own record, written above.
                Mutation::InsertNote(_) | Mutation::SetParticipants { .. } => {}
                Mutation::ReferenceAttachment { .. } => {}
            }
        }
        written
    }
}

impl StateCache {
    pub fn new(capacity: usize) -> Self {
        StateCache {
            capacity: capacity.max(1),
            state: Mutex::new(Remembered::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Splits `keys` into what is remembered and what must be loaded. Read
    /// positions and agents are always loaded; client ids only for sessions that are
    /// not remembered.
    pub fn lookup(&self, keys: &BatchKeys) -> Lookup {
        let state = self.state();
        let mut known = BatchSnapshot::default();
        // Directory entries are written by gateways, not by this worker, so
        // nothing remembered here could be trusted: always loaded.
        let mut to_load = BatchKeys {
            read_positions: keys.read_positions.clone(),
            agent_ids: keys.agent_ids.clone(),
            // Reactions and delivery positions are not remembered: a
            // message's reactions and a position are read each time, so
            // a commit that failed half-way can never leave them stale.
            reactions: keys.reactions.clone(),
            delivery_positions: keys.delivery_positions.clone(),
            // Internal notes are not remembered either: their numbers and
            // client ids are read for every batch that sends one.
            note_sessions: keys.note_sessions.clone(),
            client_notes: keys.client_notes.clone(),
            // Uploads are written by gateways: always loaded.
            attachment_ids: keys.attachment_ids.clone(),
            ..BatchKeys::default()
        };
        for id in &keys.session_ids {
            match state.sessions.get(id) {
                Some(record) => {
                    known.sessions.insert(id.clone(), record.clone());
                }
                None => to_load.session_ids.push(id.clone()),
            }
        }
        to_load.client_messages = keys
            .client_messages
            .iter()
            .filter(|(session_id, _, _)| !known.sessions.contains_key(session_id))
            .cloned()
            .collect();
        for id in &keys.user_ids {
            match state.user_names.get(id) {
                Some(name) => {
                    known.user_names.insert(id.clone(), name.clone());
                }
                None => to_load.user_ids.push(id.clone()),
            }
        }
        Lookup { known, to_load }
    }

    /// Remembers what was just read from the store.
    pub fn loaded(&self, snapshot: &BatchSnapshot) {
        let mut state = self.state();
        for record in snapshot.sessions.values() {
            self.keep_session(&mut state, record.clone());
        }
        for (id, name) in &snapshot.user_names {
            self.keep_user(&mut state, id.clone(), name.clone());
        }
    }

    /// Remembers what a commit that succeeded wrote.
    pub fn committed(&self, written: Written) {
        let mut state = self.state();
        for record in written.sessions {
            self.keep_session(&mut state, record);
        }
        for (id, name) in written.user_names {
            self.keep_user(&mut state, id, name);
        }
    }

    /// Drops what is remembered of these sessions.
    pub fn forget(&self, session_ids: &[String]) {
        let mut state = self.state();
        for id in session_ids {
            state.sessions.remove(id);
        }
    }

    /// Drops everything (the worker took a partition, whose sessions others
    /// may have written meanwhile).
    pub fn clear(&self) {
        *self.state() = Remembered::default();
    }

    pub fn len(&self) -> usize {
        self.state().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keep_session(&self, state: &mut Remembered, record: SessionRecord) {
        if record.session.status == SessionStatus::Closed {
            // Closed sessions take no more writes worth speeding up.
            state.sessions.remove(&record.session.id);
            return;
        }
        if state.sessions.len() >= self.capacity && !state.sessions.contains_key(&record.session.id)
        {
            state.sessions.clear();
        }
        state.sessions.insert(record.session.id.clone(), record);
    }

    fn keep_user(&self, state: &mut Remembered, id: String, name: String) {
        if state.user_names.len() >= self.capacity && !state.user_names.contains_key(&id) {
            state.user_names.clear();
        }
        state.user_names.insert(id, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::protocol::Session;
    use chat_shared::Timestamp;

    fn record(id: &str, version: i64, status: SessionStatus) -> SessionRecord {
        SessionRecord {
            session: Session {
                id: id.into(),
                customer_id: "c".into(),
                customer_name: "Carla".into(),
                agent_id: None,
                agent_name: None,
                pool: "p".into(),
                status,
                subject: None,
                created_at: Timestamp(0),
                assigned_at: None,
                closed_at: None,
                last_seq: 0,
                last_message_at: None,
                participants: Vec::new(),
            },
            version,
            first_assigned_at: None,
            first_response_at: None,
            first_response_ms: None,
        }
    }

    fn keys() -> BatchKeys {
        BatchKeys {
            session_ids: vec!["s1".into(), "s2".into()],
            client_messages: vec![
                ("s1".into(), "c".into(), "m1".into()),
                ("s2".into(), "c".into(), "m2".into()),
            ],
            read_positions: vec![("s1".into(), "c".into())],
            user_ids: vec!["c".into(), "a".into()],
            agent_ids: vec!["a".into()],
            reactions: vec![("s1".into(), 1)],
            delivery_positions: vec![("s1".into(), "c".into())],
            ..BatchKeys::default()
        }
    }

    #[test]
    fn remembered_sessions_skip_their_reads_and_client_id_lookups() {
        let cache = StateCache::new(10);
        cache.committed(Written::of(&[
            Mutation::InsertSession(record("s1", 1, SessionStatus::Pending)),
            Mutation::RememberUser {
                user_id: "c".into(),
                name: "Carla".into(),
            },
        ]));
        let lookup = cache.lookup(&keys());
        assert!(lookup.used_remembered_sessions());
        assert_eq!(lookup.known.sessions["s1"].version, 1);
        assert_eq!(lookup.known.user_names["c"], "Carla");
        assert_eq!(lookup.to_load.session_ids, vec!["s2".to_owned()]);
        assert_eq!(
            lookup.to_load.client_messages,
            vec![("s2".to_owned(), "c".to_owned(), "m2".to_owned())]
        );
        assert_eq!(lookup.to_load.read_positions, keys().read_positions);
        assert_eq!(lookup.to_load.reactions, keys().reactions);
        assert_eq!(lookup.to_load.delivery_positions, keys().delivery_positions);
        assert_eq!(lookup.to_load.user_ids, vec!["a".to_owned()]);
    }

    #[test]
    fn a_commit_replaces_what_a_load_found() {
        let cache = StateCache::new(10);
        let mut loaded = BatchSnapshot::default();
        loaded
            .sessions
            .insert("s1".into(), record("s1", 4, SessionStatus::Active));
        cache.loaded(&loaded);
        cache.committed(Written::of(&[Mutation::UpdateSession {
            record: record("s1", 5, SessionStatus::Active),
            expected_version: 4,
        }]));
        assert_eq!(cache.lookup(&keys()).known.sessions["s1"].version, 5);
    }

    #[test]
    fn closed_forgotten_and_cleared_sessions_are_loaded_again() {
        let cache = StateCache::new(10);
        cache.committed(Written::of(&[
            Mutation::InsertSession(record("s1", 1, SessionStatus::Active)),
            Mutation::InsertSession(record("s2", 1, SessionStatus::Active)),
        ]));
        cache.committed(Written::of(&[Mutation::UpdateSession {
            record: record("s1", 2, SessionStatus::Closed),
            expected_version: 1,
        }]));
        assert_eq!(cache.len(), 1);
        cache.forget(&["s2".to_owned()]);
        assert!(cache.is_empty());
        cache.committed(Written::of(&[Mutation::InsertSession(record(
            "s1",
            1,
            SessionStatus::Active,
        ))]));
        cache.clear();
        let lookup = cache.lookup(&keys());
        assert!(!lookup.used_remembered_sessions());
        assert_eq!(lookup.to_load.session_ids, keys().session_ids);
        assert_eq!(lookup.to_load.client_messages, keys().client_messages);
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = StateCache::new(3);
        for n in 0..10 {
            cache.committed(Written::of(&[Mutation::InsertSession(record(
                &format!("s{n}"),
                1,
                SessionStatus::Pending,
            ))]));
            assert!(cache.len() <= 3);
        }
        assert!(!cache.is_empty(), "the newest entry is kept");
    }
}
