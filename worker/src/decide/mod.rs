//! The business rules of every write, as a pure step: given what the store
//! holds (a `BatchSnapshot`) and one command, decide the reply, the
//! mutations and the events. Nothing here does I/O, so every rule is tested
//! directly and the same rules serve every store.
//!
//! This file owns what every command shares: the `Decision` a command
//! produces, the keys a batch must load (`keys_for`), the `BatchState` that
//! carries one command's effects to the next, and the dispatcher that hands
//! each command to its own file. Each command's rules live in the file named
//! after it, so a rule is read, changed and reviewed in one place; the rules
//! that assigning and transferring share live in `reassignment`.

mod assign;
mod auto_assign;
mod close;
mod create_session;
mod mark_delivered;
mod mark_read;
mod notes;
mod participants;
mod react;
mod reassignment;
mod refresh_stats;
mod routing;
mod send_message;
mod transfer;

use std::collections::{BTreeSet, HashMap};

use chat_shared::auth::Identity;
use chat_shared::envelope::{Command, CommandEnvelope, Delivery, ReplyBody};
use chat_shared::names::Names;
use chat_shared::permissions::may_write;
use chat_shared::protocol::{
    frames, server_events, Message, ReadPosition, Session, SessionEnvelope,
};
use chat_shared::routing::RoutingConfig;
use chat_shared::store::{BatchKeys, BatchSnapshot, Mutation, SessionRecord};
use chat_shared::{ChatError, Timestamp};

pub use routing::{routing_keys_for, RoutingKeys, RoutingView};

/// The pool every session lands in when the customer names none. Re-exported
/// so that the worker and the gateway can never disagree on it.
pub use chat_shared::protocol::DEFAULT_POOL;

/// What one command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub reply: Result<ReplyBody, ChatError>,
    pub deliveries: Vec<Delivery>,
    /// Pools whose stats this command changed.
    pub stats_pools: Vec<String>,
    /// Pools of automatic assignment whose queue may now move: room
    /// opened, or a session came back to it.
    pub dispatch_pools: Vec<String>,
    /// Agents whose open chats this command changed.
    pub agents_changed: Vec<String>,
    /// Pools whose queue this command changed (a session joined or left
    /// it): their waiting customers hear their new place.
    pub queue_pools: Vec<String>,
}

impl Decision {
    fn fail(error: ChatError) -> Self {
        Decision {
            reply: Err(error),
            deliveries: Vec::new(),
            stats_pools: Vec::new(),
            dispatch_pools: Vec::new(),
            agents_changed: Vec::new(),
            queue_pools: Vec::new(),
        }
    }

    fn reply(body: ReplyBody) -> Self {
        Decision {
            reply: Ok(body),
            deliveries: Vec::new(),
            stats_pools: Vec::new(),
            dispatch_pools: Vec::new(),
            agents_changed: Vec::new(),
            queue_pools: Vec::new(),
        }
    }
}

/// The keys a batch of commands needs loaded before deciding.
pub fn keys_for(commands: &[&CommandEnvelope]) -> BatchKeys {
    let mut sessions = BTreeSet::new();
    let mut client_messages = BTreeSet::new();
    let mut read_positions = BTreeSet::new();
    let mut users = BTreeSet::new();
    let mut agents = BTreeSet::new();
    let mut reactions = BTreeSet::new();
    let mut delivery_positions = BTreeSet::new();
    let mut note_sessions = BTreeSet::new();
    let mut client_notes = BTreeSet::new();
    let mut attachments = BTreeSet::new();
    for envelope in commands {
        let actor = &envelope.actor;
        users.insert(actor.user_id.clone());
        match &envelope.command {
            Command::CreateSession { session_id, .. }
            | Command::Close { session_id, .. }
            | Command::AutoAssign { session_id, .. }
            | Command::ReturnToQueue { session_id, .. } => {
                sessions.insert(session_id.clone());
            }
            Command::SendMessage {
                session_id,
                client_msg_id,
                attachment_ids,
                ..
            } => {
                sessions.insert(session_id.clone());
                if let Some(id) = client_msg_id {
                    client_messages.insert((session_id.clone(), actor.user_id.clone(), id.clone()));
                }
                attachments.extend(attachment_ids.iter().cloned());
            }
            Command::Assign {
                session_id,
                agent_id,
            }
            | Command::Transfer {
                session_id,
                agent_id,
                ..
            } => {
                sessions.insert(session_id.clone());
                if let Some(agent) = agent_id {
                    users.insert(agent.clone());
                    agents.insert(agent.clone());
                }
            }
            Command::MarkRead { session_id, .. } => {
                sessions.insert(session_id.clone());
                read_positions.insert((session_id.clone(), actor.user_id.clone()));
            }
            Command::RefreshStats { .. } | Command::Dispatch { .. } => {}
            // Reactions and delivery positions.
            Command::React {
                session_id, seq, ..
            } => {
                sessions.insert(session_id.clone());
                reactions.insert((session_id.clone(), *seq));
            }
            Command::MarkDelivered { session_id, .. } => {
                sessions.insert(session_id.clone());
                delivery_positions.insert((session_id.clone(), actor.user_id.clone()));
            }
            // Internal notes and invited colleagues.
            Command::SendNote {
                session_id,
                client_msg_id,
                ..
            } => {
                sessions.insert(session_id.clone());
                note_sessions.insert(session_id.clone());
                if let Some(id) = client_msg_id {
                    client_notes.insert((session_id.clone(), actor.user_id.clone(), id.clone()));
                }
            }
            Command::InviteParticipant {
                session_id,
                agent_id,
            }
            | Command::RemoveParticipant {
                session_id,
                agent_id,
            } => {
                sessions.insert(session_id.clone());
                agents.insert(agent_id.clone());
            }
        }
    }
    BatchKeys {
        session_ids: sessions.into_iter().collect(),
        client_messages: client_messages.into_iter().collect(),
        read_positions: read_positions.into_iter().collect(),
        user_ids: users.into_iter().collect(),
        agent_ids: agents.into_iter().collect(),
        reactions: reactions.into_iter().collect(),
        delivery_positions: delivery_positions.into_iter().collect(),
        note_sessions: note_sessions.into_iter().collect(),
        client_notes: client_notes.into_iter().collect(),
        attachment_ids: attachments.into_iter().collect(),
    }
}

/// The state of one batch while its commands are decided in order. Later
/// commands see the effects of earlier ones; `into_mutations` turns the
/// result into the writes of one transaction.
pub struct BatchState {
    snapshot: BatchSnapshot,
    names: Names,
    /// Version each touched session had when loaded (None: created here).
    loaded_versions: HashMap<String, Option<i64>>,
    /// Touched sessions in first-touch order, so writes are deterministic.
    touched_order: Vec<String>,
    messages: Vec<Message>,
    read_positions: Vec<(String, ReadPosition, Timestamp)>,
    users: Vec<(String, String)>,
    routing: RoutingConfig,
    routing_view: RoutingView,
    /// Agents' load changes, written after the sessions.
    load_changes: Vec<Mutation>,
    /// Timeline entries, written after the messages.
    timeline: Vec<Mutation>,
    /// When the command being decided is applied.
    now: Option<Timestamp>,
    /// Reactions and delivery positions changed, written after the
    /// messages (a reaction may be to a message of the same batch).
    reaction_changes: Vec<Mutation>,
    /// Per pool, the queue places this batch has moved so far (a session
    /// by its place, -1 given out, +1 created or sent back), correcting
    /// the places read before the batch.
    queue_moves: HashMap<String, Vec<routing::QueueMove>>,
    /// The current command's pools to dispatch and agents changed, moved
    /// into its decision once it is decided.
    dispatch_pools: Vec<String>,
    agents_changed: Vec<String>,
    queue_pools: Vec<String>,
    /// Internal notes and invited colleagues: the batch's notes, the
    /// latest note number per session so far, and each touched session's
    /// colleagues as loaded (a change is written with the session).
    notes: Vec<Message>,
    note_seqs: HashMap<String, i64>,
    loaded_participants: HashMap<String, Vec<chat_shared::protocol::Participant>>,
}

impl BatchState {
    pub fn new(snapshot: BatchSnapshot, names: Names) -> Self {
        BatchState {
            snapshot,
            names,
            loaded_versions: HashMap::new(),
            touched_order: Vec::new(),
            messages: Vec::new(),
            read_positions: Vec::new(),
            users: Vec::new(),
            routing: RoutingConfig::default(),
            routing_view: RoutingView::default(),
            load_changes: Vec::new(),
            timeline: Vec::new(),
            now: None,
            reaction_changes: Vec::new(),
            queue_moves: HashMap::new(),
            dispatch_pools: Vec::new(),
            agents_changed: Vec::new(),
            queue_pools: Vec::new(),
            notes: Vec::new(),
            note_seqs: HashMap::new(),
            loaded_participants: HashMap::new(),
        }
    }

    /// Decides under `config`, with `view` as what the batch's automatic
    /// pools look like now.
    pub fn with_routing(mut self, config: RoutingConfig, view: RoutingView) -> Self {
        self.routing = config;
        self.routing_view = view;
        self
    }

    /// The writes that make the store match this state, in one batch.
    pub fn into_mutations(self) -> Vec<Mutation> {
        let mut mutations = Vec::new();
        for (user_id, name) in self.users {
            mutations.push(Mutation::RememberUser { user_id, name });
        }
        for id in &self.touched_order {
            let Some(record) = self.snapshot.sessions.get(id) else {
                continue;
            };
            match self.loaded_versions.get(id).copied().flatten() {
                None => mutations.push(Mutation::InsertSession(record.clone())),
                Some(expected_version) => mutations.push(Mutation::UpdateSession {
                    record: record.clone(),
                    expected_version,
                }),
            }
            // Invited colleagues: written with the row, under its version.
            let loaded = self.loaded_participants.get(id);
            if loaded.is_some_and(|before| *before != record.session.participants) {
                mutations.push(Mutation::SetParticipants {
                    session_id: id.clone(),
                    participants: record.session.participants.clone(),
                });
            }
        }
        let mut references = Vec::new();
        for message in self.messages {
            // Attachments: each file is marked as the message's in the
            // same transaction that stores it.
            references.extend(message.attachments.iter().map(|file| {
                Mutation::ReferenceAttachment {
                    attachment_id: file.id.clone(),
                    session_id: message.session_id.clone(),
                    seq: message.seq,
                }
            }));
            mutations.push(Mutation::InsertMessage(message));
        }
        mutations.extend(references);
        // Internal notes.
        for note in self.notes {
            mutations.push(Mutation::InsertNote(note));
        }
        for (session_id, position, read_at) in self.read_positions {
            mutations.push(Mutation::SetReadPosition {
                session_id,
                position,
                read_at,
            });
        }
        mutations.extend(self.timeline);
        mutations.extend(self.reaction_changes);
        mutations.extend(self.load_changes);
        mutations
    }

    /// Applies one command at time `now`; `new_id` makes ids for new rows.
    pub fn apply(
        &mut self,
        envelope: &CommandEnvelope,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        let actor = &envelope.actor;
        self.now = Some(now);
        if !envelope.command.is_internal() {
            self.remember(actor);
        }
        let mut decision = self.decide(envelope, now, new_id);
        decision.dispatch_pools = std::mem::take(&mut self.dispatch_pools);
        decision.agents_changed = std::mem::take(&mut self.agents_changed);
        decision.queue_pools = std::mem::take(&mut self.queue_pools);
        decision
    }

    fn decide(
        &mut self,
        envelope: &CommandEnvelope,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        let actor = &envelope.actor;
        match &envelope.command {
            Command::CreateSession {
                session_id,
                pool,
                subject,
                first_message,
            } => self.create_session(actor, session_id, pool, subject, first_message, now, new_id),
            Command::SendMessage {
                session_id,
                content,
                client_msg_id,
                attachment_ids,
            } => self.send_message(
                actor,
                session_id,
                send_message::Outgoing {
                    content,
                    client_msg_id: client_msg_id.as_deref(),
                    attachment_ids,
                },
                now,
                new_id,
            ),
            Command::Assign {
                session_id,
                agent_id,
            } => self.assign(actor, session_id, agent_id.as_deref(), now),
            Command::Transfer {
                session_id,
                agent_id,
                pool,
            } => self.transfer(actor, session_id, agent_id.as_deref(), pool.as_deref(), now),
            Command::Close { session_id, reason } => self.close(actor, session_id, reason, now),
            Command::MarkRead {
                session_id,
                up_to_seq,
            } => self.mark_read(actor, session_id, *up_to_seq, now),
            Command::RefreshStats { pool } => refresh_stats::refresh_stats(pool),
            Command::Dispatch { pool } => {
                self.dispatch_if_auto(pool.clone());
                Decision::reply(ReplyBody::Done)
            }
            Command::AutoAssign { session_id, pool } => self.auto_assign(session_id, pool, now),
            Command::ReturnToQueue {
                session_id,
                agent_id,
            } => self.return_to_queue(session_id, agent_id),
            // Reactions and delivery positions.
            Command::React {
                session_id,
                seq,
                emoji,
                on,
            } => self.react(actor, session_id, *seq, emoji, *on, now),
            Command::MarkDelivered {
                session_id,
                up_to_seq,
            } => self.mark_delivered(actor, session_id, *up_to_seq, now),
            // Internal notes and invited colleagues.
            Command::SendNote {
                session_id,
                content,
                client_msg_id,
            } => self.send_note(
                actor,
                session_id,
                content,
                client_msg_id.as_deref(),
                now,
                new_id,
            ),
            Command::InviteParticipant {
                session_id,
                agent_id,
            } => self.invite_participant(actor, session_id, agent_id, now),
            Command::RemoveParticipant {
                session_id,
                agent_id,
            } => self.remove_participant(actor, session_id, agent_id),
        }
    }

    fn remember(&mut self, actor: &Identity) {
        let known = self.snapshot.user_names.get(&actor.user_id);
        if known != Some(&actor.name) {
            self.snapshot
                .user_names
                .insert(actor.user_id.clone(), actor.name.clone());
            self.users.push((actor.user_id.clone(), actor.name.clone()));
        }
    }

    fn session(&self, id: &str) -> Result<&SessionRecord, ChatError> {
        self.snapshot
            .sessions
            .get(id)
            .ok_or_else(ChatError::session_not_found)
    }

    /// The session `actor` writes to, refused with `refusal` unless they
    /// take part in it.
    fn session_of_participant(
        &self,
        actor: &Identity,
        id: &str,
        refusal: &str,
    ) -> Result<SessionRecord, ChatError> {
        let record = self.session(id)?;
        if !may_write(actor, &record.session) {
            return Err(ChatError::forbidden(refusal));
        }
        Ok(record.clone())
    }

    /// Records `record` as the new state of its session (bumping its version
    /// once per batch, however many commands touch it).
    fn store_session(&mut self, mut record: SessionRecord) {
        let id = record.session.id.clone();
        let before = self.snapshot.sessions.get(&id).cloned();
        self.track_load(before.as_ref(), &record);
        self.track_queue(before.as_ref(), &record);
        if !self.loaded_versions.contains_key(&id) {
            let loaded = self.snapshot.sessions.get(&id).map(|r| r.version);
            self.loaded_versions.insert(id.clone(), loaded);
            let participants = self
                .snapshot
                .sessions
                .get(&id)
                .map(|r| r.session.participants.clone())
                .unwrap_or_default();
            self.loaded_participants.insert(id.clone(), participants);
            self.touched_order.push(id.clone());
            record.version = loaded.map_or(1, |v| v + 1);
        }
        self.snapshot.sessions.insert(id, record);
    }

    fn display_name(&self, user_id: &str) -> String {
        self.snapshot
            .user_names
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| user_id.to_owned())
    }

    fn delivery<T: serde::Serialize>(
        &self,
        event: &str,
        payload: &T,
        audience: Vec<String>,
        session_id: Option<&str>,
        seq: Option<i64>,
    ) -> Delivery {
        let frame = frames::event(event, payload);
        Delivery {
            event: event.to_owned(),
            audience,
            session_id: session_id.map(str::to_owned),
            seq,
            except_socket: None,
            frame,
            // Stamped by the processor once the batch has committed.
            committed_at_ms: None,
            reply: None,
        }
    }

    /// `new-pending-session` to the session's pool and the admins: a
    /// session waits there for an agent to take it.
    fn pending_announcement(&self, session: &Session) -> Delivery {
        self.delivery(
            server_events::NEW_PENDING_SESSION,
            &SessionEnvelope {
                session: session.clone(),
            },
            vec![
                self.names.pool_channel(&session.pool),
                self.names.admin_channel(),
            ],
            Some(&session.id),
            None,
        )
    }
}

#[cfg(test)]
mod notes_tests;
#[cfg(test)]
mod reactions_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;
