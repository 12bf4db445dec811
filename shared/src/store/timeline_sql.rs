//! The SQL of a session's timeline (its system entries), for both stores:
//! the insert a commit runs and the read of the latest entries, and the
//! rows they decode to.

use crate::protocol::{ClosedBy, Role, SessionEvent, SessionEventKind};
use crate::store::rows::Columns;
use crate::store::sql::Dialect;
use crate::Timestamp;

/// Parameters in order: session id, at, kind, by id, by role, agent id,
/// agent name, pool, after seq.
pub(crate) fn insert_event(dialect: Dialect) -> String {
    let params: Vec<String> = (1..=9).map(|n| dialect.param(n)).collect();
    format!(
        "INSERT INTO session_events (session_id, at, kind, by_id, by_role, agent_id, \
         agent_name, pool, after_seq) VALUES ({})",
        params.join(", ")
    )
}

/// The latest entries of a session, newest first (parameters: the
/// session, the limit); callers reverse them.
pub(crate) fn latest_events(dialect: Dialect) -> String {
    format!(
        "SELECT session_id, at, kind, by_id, by_role, agent_id, agent_name, pool, after_seq \
         FROM session_events WHERE session_id = {} ORDER BY at DESC, after_seq DESC LIMIT {}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// The values an entry is written with, in `insert_event`'s order.
pub(crate) struct EventRow<'a> {
    pub session_id: &'a str,
    pub at: i64,
    pub kind: &'static str,
    pub by_id: Option<&'a str>,
    pub by_role: Option<&'static str>,
    pub agent_id: Option<&'a str>,
    pub agent_name: Option<&'a str>,
    pub pool: &'a str,
    pub after_seq: i64,
}

impl<'a> EventRow<'a> {
    pub(crate) fn of(event: &'a SessionEvent) -> Self {
        EventRow {
            session_id: &event.session_id,
            at: event.at.0,
            kind: event.kind.as_str(),
            by_id: event.by.as_ref().map(|by| by.user_id.as_str()),
            by_role: event.by.as_ref().map(|by| by.role.as_str()),
            agent_id: event.agent_id.as_deref(),
            agent_name: event.agent_name.as_deref(),
            pool: &event.pool,
            after_seq: event.after_seq,
        }
    }
}

/// A row of `latest_events`.
pub(crate) fn event_row<R: Columns>(row: &R) -> Result<SessionEvent, R::Error> {
    let kind = row.text("kind")?;
    let by = match (row.optional_text("by_id")?, row.optional_text("by_role")?) {
        (Some(user_id), Some(role)) => Some(ClosedBy {
            role: Role::parse(&role).ok_or_else(|| row.unknown("by_role", &role))?,
            user_id,
        }),
        _ => None,
    };
    Ok(SessionEvent {
        session_id: row.text("session_id")?,
        kind: SessionEventKind::parse(&kind).ok_or_else(|| row.unknown("kind", &kind))?,
        at: Timestamp(row.int("at")?),
        by,
        agent_id: row.optional_text("agent_id")?,
        agent_name: row.optional_text("agent_name")?,
        pool: row.text("pool")?,
        after_seq: row.int("after_seq")?,
    })
}
