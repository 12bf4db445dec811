//! Who may read and who may write a session: the one place that decides,
//! used by the gateway (joins, REST reads, dropping sockets whose rights
//! changed) and by the worker (every command, when it is applied).

use crate::auth::Identity;
use crate::protocol::{Role, Session, SessionStatus};

/// The session's customer, the agents of its pool, its assigned agent, the
/// colleagues invited into it while it is open, and admins may read it
/// (join, history, live events).
pub fn may_read(who: &Identity, session: &Session) -> bool {
    match who.role {
        Role::Admin => true,
        Role::Customer => session.customer_id == who.user_id,
        Role::Agent => {
            who.pools.contains(&session.pool)
                || session.agent_id.as_deref() == Some(who.user_id.as_str())
                || is_invited(who, session)
        }
    }
}

/// The session's customer, its assigned agent, the colleagues invited into
/// it while it is open, and admins may write to it (messages, read
/// positions, closing).
pub fn may_write(who: &Identity, session: &Session) -> bool {
    match who.role {
        Role::Admin => true,
        Role::Customer => session.customer_id == who.user_id,
        Role::Agent => {
            session.agent_id.as_deref() == Some(who.user_id.as_str()) || is_invited(who, session)
        }
    }
}

/// Staff who may read the session's internal notes: agents and admins who
/// may read it. Customers never may.
pub fn may_read_notes(who: &Identity, session: &Session) -> bool {
    who.role != Role::Customer && may_read(who, session)
}

/// Staff who may write internal notes: agents and admins who may write to
/// the session. Customers never may.
pub fn may_write_notes(who: &Identity, session: &Session) -> bool {
    who.role != Role::Customer && may_write(who, session)
}

/// Whether `who` is an agent invited into the session and it is still
/// open: a colleague's rights end when they leave or the session closes.
pub fn is_invited(who: &Identity, session: &Session) -> bool {
    who.role == Role::Agent
        && session.status != SessionStatus::Closed
        && session
            .participants
            .iter()
            .any(|participant| participant.user_id == who.user_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Participant;
    use crate::Timestamp;

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

    fn with_colleague(mut session: Session, user_id: &str) -> Session {
        session.participants.push(Participant {
            user_id: user_id.to_owned(),
            name: user_id.to_owned(),
            role: Role::Agent,
            joined_at: Timestamp(1),
        });
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

    #[test]
    fn an_invited_colleague_reads_and_writes_until_the_session_closes() {
        let s = with_colleague(session("default", Some("a1")), "a9");
        let colleague = who("a9", Role::Agent, &["elsewhere"]);
        assert!(may_read(&colleague, &s));
        assert!(may_write(&colleague, &s));
        assert!(may_write_notes(&colleague, &s));
        // Nobody else gains anything from the list.
        assert!(!may_write(&who("a3", Role::Agent, &["default"]), &s));
        // A customer whose id happens to be listed is still no colleague.
        assert!(!may_write(&who("a9", Role::Customer, &[]), &s));
        let mut closed = s.clone();
        closed.status = SessionStatus::Closed;
        assert!(!may_read(&colleague, &closed));
        assert!(!may_write(&colleague, &closed));
    }

    #[test]
    fn notes_are_for_staff_only() {
        let s = session("default", Some("a1"));
        let customer = who("c1", Role::Customer, &[]);
        assert!(may_write(&customer, &s));
        assert!(!may_write_notes(&customer, &s));
        assert!(!may_read_notes(&customer, &s));
        assert!(may_read_notes(&who("a2", Role::Agent, &["default"]), &s));
        assert!(!may_write_notes(&who("a2", Role::Agent, &["default"]), &s));
        assert!(may_write_notes(&who("a1", Role::Agent, &[]), &s));
        assert!(may_write_notes(&who("root", Role::Admin, &[]), &s));
        assert!(!may_read_notes(&who("a3", Role::Agent, &["other"]), &s));
    }
}
