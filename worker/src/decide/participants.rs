//! `InviteParticipant` and `RemoveParticipant`: colleagues the assigned
//! agent brings into a session, who may then read and write it like the
//! assigned agent until they leave or it closes. Owns who may invite and
//! remove, the limits of the list, the timeline entries `invited` and
//! `left`, and who hears of the change: the session's sockets (where a
//! colleague removed loses the session on every gateway, as an agent
//! transferred away does) and the colleague's own sockets.
//!
//! The list is part of the session row and changes under its version, like
//! any other change of the session.

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::{
    server_events, ClosedBy, Participant, Role, Session, SessionEnvelope, SessionEvent,
    SessionEventKind, SessionStatus,
};
use chat_shared::store::Mutation;
use chat_shared::{ChatError, Timestamp};

use super::{BatchState, Decision};

/// Colleagues a session holds at once.
pub const MAX_PARTICIPANTS: usize = 5;

impl BatchState {
    pub(super) fn invite_participant(
        &mut self,
        actor: &Identity,
        session_id: &str,
        agent_id: &str,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        let session = &record.session;
        if !(actor.is_admin() || is_assigned_agent(actor, session)) {
            return Decision::fail(ChatError::forbidden(
                "only the assigned agent or an admin may invite a colleague",
            ));
        }
        let Some(agent) = self.snapshot.agents.get(agent_id).cloned() else {
            return Decision::fail(ChatError::not_found(format!(
                "no agent {agent_id:?} is known"
            )));
        };
        if session.status == SessionStatus::Closed {
            return Decision::fail(ChatError::session_closed());
        }
        if session.agent_id.as_deref() == Some(agent_id) {
            return Decision::fail(ChatError::conflict(
                "the assigned agent is in the session already",
            ));
        }
        if session.participants.iter().any(|p| p.user_id == agent_id) {
            return Decision::fail(ChatError::conflict("the colleague is invited already"));
        }
        if session.participants.len() >= MAX_PARTICIPANTS {
            return Decision::fail(ChatError::conflict(format!(
                "a session holds at most {MAX_PARTICIPANTS} colleagues"
            )));
        }
        let participant = Participant {
            user_id: agent.id.clone(),
            name: agent.name.clone(),
            role: Role::Agent,
            joined_at: now,
        };
        let mut updated = record;
        updated.session.participants.push(participant.clone());
        self.participants_changed(updated, &participant, SessionEventKind::Invited, actor)
    }

    pub(super) fn remove_participant(
        &mut self,
        actor: &Identity,
        session_id: &str,
        agent_id: &str,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        let session = &record.session;
        let themself = actor.role == Role::Agent && actor.user_id == agent_id;
        if !(themself || actor.is_admin() || is_assigned_agent(actor, session)) {
            return Decision::fail(ChatError::forbidden(
                "only the colleague, the assigned agent or an admin may remove a colleague",
            ));
        }
        let Some(at) = session
            .participants
            .iter()
            .position(|p| p.user_id == agent_id)
        else {
            return Decision::fail(ChatError::not_found(format!(
                "{agent_id:?} is not invited into this session"
            )));
        };
        if session.status == SessionStatus::Closed {
            return Decision::fail(ChatError::session_closed());
        }
        let mut updated = record;
        let participant = updated.session.participants.remove(at);
        self.participants_changed(updated, &participant, SessionEventKind::Left, actor)
    }

    /// Stores the session with its new list, records the timeline entry and
    /// tells the session's sockets and the colleague's.
    fn participants_changed(
        &mut self,
        record: chat_shared::store::SessionRecord,
        colleague: &Participant,
        kind: SessionEventKind,
        actor: &Identity,
    ) -> Decision {
        let session = record.session.clone();
        self.store_session(record);
        let entry = self.colleague_entry(&session, kind, actor, colleague);
        let audience = vec![
            self.names.session_channel(&session.id),
            self.names.user_channel(&colleague.user_id),
        ];
        let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
        decision.deliveries.push(self.delivery(
            server_events::SESSION_UPDATED,
            &SessionEnvelope {
                session: session.clone(),
            },
            audience,
            Some(&session.id),
            None,
        ));
        // Last, as for a change of hands: after the change itself.
        decision.deliveries.push(entry);
        decision
    }

    /// The `invited` or `left` entry, naming the colleague.
    fn colleague_entry(
        &mut self,
        session: &Session,
        kind: SessionEventKind,
        actor: &Identity,
        colleague: &Participant,
    ) -> chat_shared::envelope::Delivery {
        let event = SessionEvent {
            session_id: session.id.clone(),
            kind,
            at: self.now.unwrap_or(session.created_at),
            by: Some(ClosedBy {
                user_id: actor.user_id.clone(),
                role: actor.role,
            }),
            agent_id: Some(colleague.user_id.clone()),
            agent_name: Some(colleague.name.clone()),
            pool: session.pool.clone(),
            after_seq: session.last_seq,
        };
        let delivery = self.delivery(
            server_events::SESSION_EVENT,
            &event,
            vec![self.names.session_channel(&session.id)],
            Some(&session.id),
            None,
        );
        self.timeline.push(Mutation::RecordSessionEvent(event));
        delivery
    }
}

fn is_assigned_agent(actor: &Identity, session: &Session) -> bool {
    actor.role == Role::Agent && session.agent_id.as_deref() == Some(actor.user_id.as_str())
}
