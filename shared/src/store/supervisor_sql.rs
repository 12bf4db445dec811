//! The SQL of the supervisor's live view, for both stores: the open chats
//! (waiting and active) with when each entered the queue and how many of
//! its messages its agent has not read, and each agent's first responses
//! of the day.

use crate::store::rows::{self, Columns};
use crate::store::sql::{Dialect, SESSION_COLUMNS};
use crate::store::{AgentDay, OpenChats, SupervisedChat};
use crate::Timestamp;

/// Open chats (all, or only the waiting ones) of a pool, or of all pools
/// when the parameter is NULL (parameters: the pool, the limit), oldest
/// first.
pub(crate) fn open_chats(dialect: Dialect, which: OpenChats) -> String {
    let pool = match dialect {
        Dialect::Sqlite => "?1".to_owned(),
        Dialect::Postgres => "$1::text".to_owned(),
    };
    let statuses = match which {
        OpenChats::All => "'pending', 'active'",
        OpenChats::Waiting => "'pending'",
    };
    format!(
        "SELECT {}, \
           COALESCE((SELECT max(e.at) FROM session_events e \
                     WHERE e.session_id = s.id AND e.kind = 'returned'), s.created_at) \
             AS queued_at, \
           CASE WHEN s.agent_id IS NULL THEN NULL ELSE s.last_seq - COALESCE( \
             (SELECT r.up_to_seq FROM read_positions r \
              WHERE r.session_id = s.id AND r.user_id = s.agent_id), 0) END \
             AS unread_by_agent \
         FROM sessions s \
         WHERE s.status IN ({statuses}) AND ({pool} IS NULL OR s.pool = {pool}) \
         ORDER BY s.created_at, s.id LIMIT {}",
        SESSION_COLUMNS.of("s"),
        dialect.param(2)
    )
}

/// Per agent, sessions first answered since a time and the mean time to
/// that answer in milliseconds (parameter: the time).
pub(crate) fn agent_days(dialect: Dialect) -> String {
    format!(
        "SELECT agent_id, count(*) AS answered, {} AS avg_first_response_ms \
         FROM sessions WHERE first_response_at >= {} AND agent_id IS NOT NULL \
         GROUP BY agent_id ORDER BY agent_id",
        dialect.float_avg("first_response_ms"),
        dialect.param(1)
    )
}

pub(crate) fn open_chat_row<R: Columns>(row: &R) -> Result<SupervisedChat, R::Error> {
    Ok(SupervisedChat {
        session: rows::session_record(row)?.session,
        queued_at: Timestamp(row.int("queued_at")?),
        unread_by_agent: row.optional_int("unread_by_agent")?,
    })
}

pub(crate) fn agent_day_row<R: Columns>(row: &R) -> Result<AgentDay, R::Error> {
    Ok(AgentDay {
        agent_id: row.text("agent_id")?,
        answered: row.int("answered")?,
        avg_first_response_seconds: row
            .optional_float("avg_first_response_ms")?
            .map(|ms| ms / 1000.0),
    })
}
