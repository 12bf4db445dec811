//! `Transfer`: a session changes hands, to another agent, another pool, or
//! back to its queue. Owns who may transfer (the assigned agent or an
//! admin) and how the session's pool, agent and status follow the request.

use chat_shared::auth::Identity;
use chat_shared::protocol::{Role, SessionStatus};
use chat_shared::{ChatError, Timestamp};

use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn transfer(
        &mut self,
        actor: &Identity,
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
        self.finish_reassignment(updated, previous_agent, &old_pool, Some(actor))
    }
}
