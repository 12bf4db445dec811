//! The business rules of every write, as a pure step: given what the store
//! holds (a `BatchSnapshot`) and one command, decide the reply, the
//! mutations and the events. Nothing here does I/O, so every rule is tested
//! directly and the same rules serve every store.

use std::collections::{BTreeSet, HashMap};

use chat_shared::envelope::{event_frame, Actor, Command, CommandEnvelope, Delivery, ReplyBody};
use chat_shared::names::Names;
use chat_shared::permissions::may_write;
use chat_shared::protocol::{
    server_events, ClosedBy, Message, MessagesRead, ReadPosition, Role, Session, SessionClosed,
    SessionEnvelope, SessionStatus,
};
use chat_shared::store::{BatchKeys, BatchSnapshot, Mutation, SessionRecord};
use chat_shared::{ChatError, Timestamp};

/// The pool every session lands in when the customer names none.
pub const DEFAULT_POOL: &str = "default";

/// What one command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub reply: Result<ReplyBody, ChatError>,
    pub deliveries: Vec<Delivery>,
    /// Pools whose stats this command changed.
    pub stats_pools: Vec<String>,
}

impl Decision {
    fn fail(error: ChatError) -> Self {
        Decision {
            reply: Err(error),
            deliveries: Vec::new(),
            stats_pools: Vec::new(),
        }
    }

    fn reply(body: ReplyBody) -> Self {
        Decision {
            reply: Ok(body),
            deliveries: Vec::new(),
            stats_pools: Vec::new(),
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
    for envelope in commands {
        let actor = &envelope.actor;
        users.insert(actor.user_id.clone());
        match &envelope.command {
            Command::CreateSession { session_id, .. } | Command::Close { session_id, .. } => {
                sessions.insert(session_id.clone());
            }
            Command::SendMessage {
                session_id,
                client_msg_id,
                ..
            } => {
                sessions.insert(session_id.clone());
                if let Some(id) = client_msg_id {
                    client_messages.insert((session_id.clone(), actor.user_id.clone(), id.clone()));
                }
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
            Command::RefreshStats { .. } => {}
        }
    }
    BatchKeys {
        session_ids: sessions.into_iter().collect(),
        client_messages: client_messages.into_iter().collect(),
        read_positions: read_positions.into_iter().collect(),
        user_ids: users.into_iter().collect(),
        agent_ids: agents.into_iter().collect(),
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
        }
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
        }
        for message in self.messages {
            mutations.push(Mutation::InsertMessage(message));
        }
        for (session_id, position, read_at) in self.read_positions {
            mutations.push(Mutation::SetReadPosition {
                session_id,
                position,
                read_at,
            });
        }
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
        self.remember(actor);
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
            } => self.send_message(
                actor,
                session_id,
                content,
                client_msg_id.as_deref(),
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
            Command::RefreshStats { pool } => Decision {
                reply: Ok(ReplyBody::Done),
                deliveries: Vec::new(),
                stats_pools: vec![pool.clone()],
            },
        }
    }

    fn remember(&mut self, actor: &Actor) {
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

    /// Records `record` as the new state of its session (bumping its version
    /// once per batch, however many commands touch it).
    fn store_session(&mut self, mut record: SessionRecord) {
        let id = record.session.id.clone();
        if !self.loaded_versions.contains_key(&id) {
            let loaded = self.snapshot.sessions.get(&id).map(|r| r.version);
            self.loaded_versions.insert(id.clone(), loaded);
            self.touched_order.push(id.clone());
            record.version = loaded.map_or(1, |v| v + 1);
        }
        self.snapshot.sessions.insert(id, record);
    }

    #[allow(clippy::too_many_arguments)]
    fn create_session(
        &mut self,
        actor: &Actor,
        session_id: &str,
        pool: &str,
        subject: &Option<String>,
        first_message: &Option<String>,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        if actor.role != Role::Customer {
            return Decision::fail(ChatError::forbidden("only customers open sessions"));
        }
        if let Some(existing) = self.snapshot.sessions.get(session_id) {
            // A redelivered command: answer with what the first delivery made.
            // While the session still waits, announce it again: if the first
            // attempt committed but died before publishing, this is the
            // pool's only news of it (agents drop repeats by session id).
            if existing.session.customer_id == actor.user_id {
                let session = existing.session.clone();
                let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
                if session.status == SessionStatus::Pending {
                    decision.deliveries.push(self.delivery(
                        server_events::NEW_PENDING_SESSION,
                        &SessionEnvelope {
                            session: session.clone(),
                        },
                        vec![
                            self.names.pool_channel(&session.pool),
                            self.names.admin_channel(),
                        ],
                        Some(session_id),
                        None,
                    ));
                    decision.stats_pools.push(session.pool);
                }
                return decision;
            }
            return Decision::fail(ChatError::conflict("session id already in use"));
        }
        let mut record = SessionRecord {
            session: Session {
                id: session_id.to_owned(),
                customer_id: actor.user_id.clone(),
                customer_name: actor.name.clone(),
                agent_id: None,
                agent_name: None,
                pool: pool.to_owned(),
                status: SessionStatus::Pending,
                subject: subject.clone(),
                created_at: now,
                assigned_at: None,
                closed_at: None,
                last_seq: 0,
                last_message_at: None,
            },
            version: 1,
            first_assigned_at: None,
            first_response_at: None,
            first_response_ms: None,
        };
        if let Some(content) = first_message {
            let message = new_message(&record.session, actor, content, None, now, new_id());
            record.session.last_seq = message.seq;
            record.session.last_message_at = Some(now);
            self.messages.push(message);
        }
        let session = record.session.clone();
        self.store_session(record);
        let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
        decision.deliveries.push(self.delivery(
            server_events::NEW_PENDING_SESSION,
            &SessionEnvelope {
                session: session.clone(),
            },
            vec![self.names.pool_channel(pool), self.names.admin_channel()],
            Some(session_id),
            None,
        ));
        decision.stats_pools.push(pool.to_owned());
        decision
    }

    fn send_message(
        &mut self,
        actor: &Actor,
        session_id: &str,
        content: &str,
        client_msg_id: Option<&str>,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        if let Some(client_id) = client_msg_id {
            if let Some(original) = self.find_by_client_id(session_id, &actor.user_id, client_id) {
                // The event goes out again: if the first attempt stored the
                // message but died before publishing, this is its only
                // delivery. Sockets that saw it already drop it by `seq`.
                let mut decision = Decision::reply(ReplyBody::Message {
                    message: original.clone(),
                    duplicate: true,
                });
                decision.deliveries.push(self.delivery(
                    server_events::NEW_MESSAGE,
                    &original,
                    vec![self.names.session_channel(session_id)],
                    Some(session_id),
                    Some(original.seq),
                ));
                return decision;
            }
        }
        if !may_write(actor, &record.session) {
            return Decision::fail(ChatError::forbidden(
                "only the session's participants may send",
            ));
        }
        match record.session.status {
            SessionStatus::Closed => return Decision::fail(ChatError::session_closed()),
            SessionStatus::Pending if actor.role == Role::Agent => {
                return Decision::fail(ChatError::forbidden("the session is not assigned to you"))
            }
            _ => {}
        }
        let message = new_message(
            &record.session,
            actor,
            content,
            client_msg_id,
            now,
            new_id(),
        );
        let mut updated = record;
        updated.session.last_seq = message.seq;
        updated.session.last_message_at = Some(now);
        if actor.role == Role::Agent && updated.first_response_at.is_none() {
            if let Some(assigned_at) = updated.session.assigned_at {
                updated.first_response_at = Some(now);
                updated.first_response_ms = Some((now.millis() - assigned_at.millis()).max(0));
            }
        }
        let pool = updated.session.pool.clone();
        self.store_session(updated);
        self.messages.push(message.clone());
        let mut decision = Decision::reply(ReplyBody::Message {
            message: message.clone(),
            duplicate: false,
        });
        decision.deliveries.push(self.delivery(
            server_events::NEW_MESSAGE,
            &message,
            vec![self.names.session_channel(session_id)],
            Some(session_id),
            Some(message.seq),
        ));
        decision.stats_pools.push(pool);
        decision
    }

    fn find_by_client_id(
        &self,
        session_id: &str,
        sender: &str,
        client_id: &str,
    ) -> Option<Message> {
        let in_batch = self.messages.iter().find(|m| {
            m.session_id == session_id
                && m.sender_id == sender
                && m.client_msg_id.as_deref() == Some(client_id)
        });
        in_batch.cloned().or_else(|| {
            self.snapshot
                .messages_by_client_id
                .get(&(
                    session_id.to_owned(),
                    sender.to_owned(),
                    client_id.to_owned(),
                ))
                .cloned()
        })
    }

    fn assign(
        &mut self,
        actor: &Actor,
        session_id: &str,
        agent_id: Option<&str>,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        let target = match actor.role {
            Role::Admin => agent_id.unwrap_or(&actor.user_id).to_owned(),
            Role::Agent if actor.is_agent_of(&record.session.pool) => match agent_id {
                Some(other) if other != actor.user_id => {
                    return Decision::fail(ChatError::forbidden(
                        "agents may only assign themselves",
                    ))
                }
                _ => actor.user_id.clone(),
            },
            _ => {
                return Decision::fail(ChatError::forbidden(
                    "only agents of the session's pool may take it",
                ))
            }
        };
        if let Err(e) = self.check_target(actor, &target, &record.session.pool) {
            return Decision::fail(e);
        }
        match record.session.status {
            SessionStatus::Closed => return Decision::fail(ChatError::session_closed()),
            SessionStatus::Active => {
                return Decision::fail(ChatError::conflict("the session is already assigned"))
            }
            SessionStatus::Pending => {}
        }
        let mut updated = record;
        let old_pool = updated.session.pool.clone();
        updated.session.agent_name = Some(self.display_name(&target));
        updated.session.agent_id = Some(target);
        updated.session.status = SessionStatus::Active;
        updated.session.assigned_at = Some(now);
        updated.first_assigned_at.get_or_insert(now);
        self.finish_reassignment(updated, None, &old_pool)
    }

    fn transfer(
        &mut self,
        actor: &Actor,
        session_id: &str,
        agent_id: Option<&str>,
        pool: Option<&str>,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        let is_assigned_agent = record.session.agent_id.as_deref() == Some(actor.user_id.as_str());
        if !(actor.is_admin() || (actor.role == Role::Agent && is_assigned_agent)) {
            return Decision::fail(ChatError::forbidden(
                "only the assigned agent or an admin may transfer",
            ));
        }
        if let Some(agent) = agent_id {
            let target_pool = pool.unwrap_or(&record.session.pool);
            if let Err(e) = self.check_target(actor, agent, target_pool) {
                return Decision::fail(e);
            }
        }
        if record.session.status == SessionStatus::Closed {
            return Decision::fail(ChatError::session_closed());
        }
        let previous_agent = record.session.agent_id.clone();
        let old_pool = record.session.pool.clone();
        let mut updated = record;
        if let Some(pool) = pool {
            updated.session.pool = pool.to_owned();
        }
        match agent_id {
            Some(agent) => {
                updated.session.agent_name = Some(self.display_name(agent));
                updated.session.agent_id = Some(agent.to_owned());
                updated.session.status = SessionStatus::Active;
                updated.session.assigned_at = Some(now);
                updated.first_assigned_at.get_or_insert(now);
            }
            None => {
                updated.session.agent_id = None;
                updated.session.agent_name = None;
                updated.session.status = SessionStatus::Pending;
                updated.session.assigned_at = None;
            }
        }
        self.finish_reassignment(updated, previous_agent, &old_pool)
    }

    /// Stores an assignment change and tells everyone concerned: the
    /// session's sockets, the agents of the old and new pool, admins, and
    /// the customer and the agents before and after.
    fn finish_reassignment(
        &mut self,
        record: SessionRecord,
        previous_agent: Option<String>,
        old_pool: &str,
    ) -> Decision {
        let session = record.session.clone();
        self.store_session(record);
        let mut audience = vec![
            self.names.session_channel(&session.id),
            self.names.pool_channel(old_pool),
        ];
        if session.pool != old_pool {
            audience.push(self.names.pool_channel(&session.pool));
        }
        audience.push(self.names.admin_channel());
        audience.push(self.names.user_channel(&session.customer_id));
        for agent in previous_agent.iter().chain(session.agent_id.iter()) {
            let channel = self.names.user_channel(agent);
            if !audience.contains(&channel) {
                audience.push(channel);
            }
        }
        let payload = SessionEnvelope {
            session: session.clone(),
        };
        let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
        decision.deliveries.push(self.delivery(
            server_events::SESSION_UPDATED,
            &payload,
            audience,
            Some(&session.id),
            None,
        ));
        if session.status == SessionStatus::Pending {
            decision.deliveries.push(self.delivery(
                server_events::NEW_PENDING_SESSION,
                &payload,
                vec![
                    self.names.pool_channel(&session.pool),
                    self.names.admin_channel(),
                ],
                Some(&session.id),
                None,
            ));
        }
        decision.stats_pools.push(old_pool.to_owned());
        if session.pool != old_pool {
            decision.stats_pools.push(session.pool.clone());
        }
        decision
    }

    fn close(
        &mut self,
        actor: &Actor,
        session_id: &str,
        reason: &Option<String>,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        if !may_write(actor, &record.session) {
            return Decision::fail(ChatError::forbidden(
                "only the session's participants may close it",
            ));
        }
        if record.session.status == SessionStatus::Closed {
            return Decision::fail(ChatError::session_closed());
        }
        let mut updated = record;
        updated.session.status = SessionStatus::Closed;
        updated.session.closed_at = Some(now);
        let session = updated.session.clone();
        self.store_session(updated);
        let payload = SessionClosed {
            session_id: session.id.clone(),
            closed_by: ClosedBy {
                user_id: actor.user_id.clone(),
                role: actor.role,
            },
            reason: reason.clone(),
            closed_at: now,
        };
        let mut audience = vec![
            self.names.session_channel(&session.id),
            self.names.pool_channel(&session.pool),
            self.names.admin_channel(),
            self.names.user_channel(&session.customer_id),
        ];
        if let Some(agent) = &session.agent_id {
            audience.push(self.names.user_channel(agent));
        }
        let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
        decision.deliveries.push(self.delivery(
            server_events::SESSION_CLOSED,
            &payload,
            audience,
            Some(&session.id),
            None,
        ));
        decision.stats_pools.push(session.pool);
        decision
    }

    fn mark_read(
        &mut self,
        actor: &Actor,
        session_id: &str,
        up_to_seq: i64,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        if !may_write(actor, &record.session) {
            return Decision::fail(ChatError::forbidden(
                "only the session's participants may mark it read",
            ));
        }
        let key = (session_id.to_owned(), actor.user_id.clone());
        let current = self.snapshot.read_positions.get(&key).copied().unwrap_or(0);
        let wanted = up_to_seq.min(record.session.last_seq);
        let position = ReadPosition {
            user_id: actor.user_id.clone(),
            role: actor.role,
            up_to_seq: current.max(wanted),
        };
        let mut decision = Decision::reply(ReplyBody::ReadPosition(position.clone()));
        if wanted > current {
            self.snapshot.read_positions.insert(key, wanted);
            self.read_positions
                .push((session_id.to_owned(), position.clone(), now));
            let payload = MessagesRead {
                session_id: session_id.to_owned(),
                user_id: actor.user_id.clone(),
                role: actor.role,
                up_to_seq: wanted,
                read_at: now,
            };
            decision.deliveries.push(self.delivery(
                server_events::MESSAGES_READ,
                &payload,
                vec![self.names.session_channel(session_id)],
                Some(session_id),
                None,
            ));
        }
        decision
    }

    /// Whether `target` may be given a session of `pool`: an agent of the
    /// directory who serves it (as of their last connection), or the actor
    /// themselves when their own token lets them hold it (an admin, or an
    /// agent of the pool), directory or not. Checked here, as the command
    /// is applied, so that it holds whichever gateway took the request.
    fn check_target(&self, actor: &Actor, target: &str, pool: &str) -> Result<(), ChatError> {
        if target == actor.user_id && (actor.is_admin() || actor.is_agent_of(pool)) {
            return Ok(());
        }
        match self.snapshot.agents.get(target) {
            None => Err(ChatError::not_found(format!(
                "no agent {target:?} is known"
            ))),
            Some(agent) if !agent.serves(pool) => Err(ChatError::invalid(format!(
                "agent {target:?} does not serve the pool {pool:?}"
            ))),
            Some(_) => Ok(()),
        }
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
        // Serialising these plain structs cannot fail; an empty frame would
        // only ever be dropped by the gateway.
        let frame = event_frame(event, payload).unwrap_or_default();
        Delivery {
            event: event.to_owned(),
            audience,
            session_id: session_id.map(str::to_owned),
            seq,
            except_socket: None,
            frame,
            // Stamped by the processor once the batch has committed.
            committed_at_ms: None,
        }
    }
}

fn new_message(
    session: &Session,
    actor: &Actor,
    content: &str,
    client_msg_id: Option<&str>,
    now: Timestamp,
    id: String,
) -> Message {
    Message {
        id,
        session_id: session.id.clone(),
        seq: session.last_seq + 1,
        sender_id: actor.user_id.clone(),
        sender_name: actor.name.clone(),
        sender_role: actor.role,
        content: content.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        created_at: now,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
