//! Who may read and who may write a session: the one place that decides,
//! used by the gateway (joins, REST reads, dropping sockets whose rights
//! changed) and by the worker (every command, when it is applied).

use crate::auth::Identity;
use crate::protocol::{Role, Session};

/// The session's customer, the agents of its pool, its assigned agent and
/// admins may read it (join, history, live events).
pub fn may_read(who: &Identity, session: &Session) -> bool {
    match who.role {
        Role::Admin => true,
        Role::Customer => session.customer_id == who.user_id,
        Role::Agent => {
            who.pools.contains(&session.pool)
                || session.agent_id.as_deref() == Some(who.user_id.as_str())
        }
    }
}

/// The session's customer, its assigned agent and admins may write to it
/// (messages, read positions, closing).
pub fn may_write(who: &Identity, session: &Session) -> bool {
    match who.role {
        Role::Admin => true,
        Role::Customer => session.customer_id == who.user_id,
        Role::Agent => session.agent_id.as_deref() == Some(who.user_id.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user_id: &str, role: Role, pools: &[&str]) -> Identity {
        Identity {
            user_id: user_id.to_owned(),
            name: user_id.to_owned(),
            role,
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn session(pool: &str, agent: Option<&str>) -> Session {
        let mut session: Session = serde_json::from_value(serde_json::json!({
            "id": "s1", "customerId": "c1", "customerName": "Carol", "agentId": null,
            "agentName": null, "pool": pool, "status": "active", "subject": null,
            "createdAt": "2026-01-01T00:00:00.000Z", "assignedAt": null, "closedAt": null,
            "lastMessageAt": null, "lastSeq": 0
        }))
        .expect("a session");
        session.agent_id = agent.map(str::to_owned);
        session
    }

    #[test]
    fn readers_are_the_customer_the_pool_the_assigned_agent_and_admins() {
        let s = session("default", Some("a1"));
        assert!(may_read(&who("c1", Role::Customer, &[]), &s));
        assert!(!may_read(&who("c2", Role::Customer, &[]), &s));
        assert!(may_read(&who("a2", Role::Agent, &["default"]), &s));
        assert!(may_read(&who("a1", Role::Agent, &["other"]), &s));
        assert!(!may_read(&who("a3", Role::Agent, &["other"]), &s));
        assert!(may_read(&who("root", Role::Admin, &[]), &s));
    }

    #[test]
    fn writers_are_the_customer_the_assigned_agent_and_admins() {
        let s = session("default", Some("a1"));
        assert!(may_write(&who("c1", Role::Customer, &[]), &s));
        assert!(may_write(&who("a1", Role::Agent, &["other"]), &s));
        assert!(may_write(&who("root", Role::Admin, &[]), &s));
        assert!(!may_write(&who("c2", Role::Customer, &[]), &s));
        assert!(!may_write(&who("a2", Role::Agent, &["default"]), &s));
        // An agent who shares the customer's id is still no customer.
        assert!(!may_write(&who("c1", Role::Agent, &["default"]), &s));
        let waiting = session("default", None);
        assert!(may_write(&who("c1", Role::Customer, &[]), &waiting));
        assert!(!may_write(&who("a1", Role::Agent, &["default"]), &waiting));
    }
}
