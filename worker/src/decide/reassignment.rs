//! What `Assign` and `Transfer` share: who may be given a session of a pool,
//! and who hears that a session changed hands. Kept apart from both
//! commands so that the two can never disagree on either rule.

use chat_shared::auth::Identity;
use chat_shared::envelope::Delivery;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::{
    server_events, ClosedBy, Session, SessionEnvelope, SessionEvent, SessionEventKind,
    SessionStatus,
};
use chat_shared::store::{Mutation, SessionRecord};
use chat_shared::ChatError;

use super::{BatchState, Decision};

impl BatchState {
    /// Stores an assignment change and tells everyone concerned: the
    /// session's sockets, the agents of the old and new pool, admins, and
    /// the customer and the agents before and after.
    pub(super) fn finish_reassignment(
        &mut self,
        record: SessionRecord,
        previous_agent: Option<String>,
        old_pool: &str,
        by: Option<&Identity>,
    ) -> Decision {
        let mut record = record;
        // A colleague who now holds the session is no longer a guest in it.
        if let Some(agent) = record.session.agent_id.clone() {
            record.session.participants.retain(|p| p.user_id != agent);
        }
        let session = record.session.clone();
        let was_active = self
            .snapshot
            .sessions
            .get(&session.id)
            .is_some_and(|before| before.session.status == SessionStatus::Active);
        self.store_session(record);
        let kind = match (was_active, session.status) {
            (_, SessionStatus::Pending) => SessionEventKind::Returned,
            (true, _) => SessionEventKind::Transferred,
            (false, _) => SessionEventKind::Assigned,
        };
        let timeline = self.timeline_entry(&session, kind, by);
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
            decision
                .deliveries
                .push(self.pending_announcement(&session));
            self.dispatch_if_auto(session.pool.clone());
        }
        // Last: clients that know the entry learn of it after the change.
        decision.deliveries.push(timeline);
        decision.stats_pools.push(old_pool.to_owned());
        if session.pool != old_pool {
            decision.stats_pools.push(session.pool.clone());
        }
        decision
    }

    /// Records a system entry of `session`'s timeline as it now is and
    /// returns its live `session-event` for the session's sockets.
    pub(super) fn timeline_entry(
        &mut self,
        session: &Session,
        kind: SessionEventKind,
        by: Option<&Identity>,
    ) -> Delivery {
        let event = SessionEvent {
            session_id: session.id.clone(),
            kind,
            at: self.now.unwrap_or(session.created_at),
            by: by.map(|actor| ClosedBy {
                user_id: actor.user_id.clone(),
                role: actor.role,
            }),
            agent_id: session.agent_id.clone(),
            agent_name: session.agent_name.clone(),
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

    /// Whether `target` may be given a session of `pool`: an agent of the
    /// directory who serves it (as of their last connection), or the actor
    /// themselves when their own token lets them hold it (an admin, or an
    /// agent of the pool), directory or not. Checked here, as the command
    /// is applied, so that it holds whichever gateway took the request.
    pub(super) fn check_target(
        &self,
        actor: &Identity,
        target: &str,
        pool: &str,
    ) -> Result<(), ChatError> {
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
}
