//! `Assign`: a pending session is given to an agent. Owns who may assign
//! whom (an agent of the pool takes it for themselves, an admin gives it to
//! anyone) and that only a waiting session can be taken, so two agents
//! racing for one session cannot both get it.

use chat_shared::auth::Identity;
use chat_shared::protocol::{Role, SessionStatus};
use chat_shared::{ChatError, Timestamp};

use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn assign(
        &mut self,
        actor: &Identity,
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
        self.finish_reassignment(updated, None, &old_pool, Some(actor))
    }
}
