//! The SQL text both stores run, written once and spelled per dialect.
//!
//! SQLite and PostgreSQL hold the same tables and answer the same reads,
//! so the column lists, the session list with its filters, order and
//! limit, the message page windows, the upserts of the agent directory and
//! the record of applied migrations are one shape each. What differs is
//! spelling only: placeholders (`?1` against `$1`), integer type names,
//! `MAX` against `GREATEST`, how a list is bound (one parameter per item
//! against one array) and how an agent's pools are stored (a JSON text
//! against a `text[]`). A change to a query is then made once and holds
//! for both stores, which the conformance suite checks.
//!
//! Statements are built as text on each call; both stores cache prepared
//! statements by their text, and each shape has only a few variants.

use std::fmt;

use crate::protocol::{Message, MessagePage};
use crate::store::{MessageRange, SessionQuery, SessionScope};

/// Which database a statement is spelled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    // Spelled for even when the PostgreSQL store is not built, so that
    // both spellings stay side by side.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

impl Dialect {
    /// The placeholder of parameter `n`, counted from 1.
    pub(crate) fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The 64-bit integer column type.
    fn integer(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    }

    /// The larger of two values (SQLite's two-argument `MAX`).
    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The mean of an integer expression as a float: PostgreSQL's AVG of a
    /// BIGINT is NUMERIC, which the client does not read as `f64`.
    pub(crate) fn float_avg(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("AVG({expr})"),
            Dialect::Postgres => format!("AVG(({expr})::float8)"),
        }
    }
}

/// A list of columns, written out as `a, b, c` wherever SQL needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnList(&'static [&'static str]);

impl ColumnList {
    /// The columns prefixed with a table alias: `m.a, m.b`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn of(self, alias: &str) -> String {
        self.0
            .iter()
            .map(|column| format!("{alias}.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for ColumnList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// Columns of `sessions` as read: those a session write sets, in the
/// order rows are written (`id` first), then `participants`.
pub(crate) const SESSION_COLUMNS: ColumnList = ColumnList(&SESSION_COLUMN_NAMES);

/// Columns of `sessions` that `InsertSession` and `UpdateSession` write:
/// all but `participants`, which `SetParticipants` writes in both stores
/// (PostgreSQL's batch function, released before the column, cannot).
pub(crate) const SESSION_WRITTEN_COLUMNS: ColumnList = ColumnList(
    SESSION_COLUMN_NAMES
        .split_at(SESSION_COLUMN_NAMES.len() - 1)
        .0,
);

const SESSION_COLUMN_NAMES: [&str; 18] = [
    "id",
    "customer_id",
    "customer_name",
    "agent_id",
    "agent_name",
    "pool",
    "status",
    "subject",
    "created_at",
    "assigned_at",
    "closed_at",
    "last_seq",
    "last_message_at",
    "version",
    "first_assigned_at",
    "first_response_at",
    "first_response_ms",
    "participants",
];

/// Columns of `messages`, in the order rows are written.
pub(crate) const MESSAGE_COLUMNS: ColumnList = ColumnList(&[
    "id",
    "session_id",
    "seq",
    "sender_id",
    "sender_name",
    "sender_role",
    "content",
    "client_msg_id",
    "created_at",
]);

/// Columns of `agents`, in the order rows are written.
pub(crate) const AGENT_COLUMNS: ColumnList =
    ColumnList(&["agent_id", "name", "pools", "last_seen_at"]);

/// What a caller learns of a read position (not when it was set).
const READ_POSITION_COLUMNS: ColumnList = ColumnList(&["user_id", "role", "up_to_seq"]);

/// Rows read beyond a page's limit: one more than asked tells whether more
/// exist, without counting them.
const PAGE_LOOKAHEAD: usize = 1;

/// The seqs a page of messages spans, for one range read of what its
/// messages carry (reactions, files); `None` for an empty page.
pub(crate) fn page_span(messages: &[Message]) -> Option<(i64, i64)> {
    let first = messages.iter().map(|m| m.seq).min()?;
    let last = messages.iter().map(|m| m.seq).max()?;
    Some((first, last))
}

/// The LIMIT of a statement, which both databases take as a 64-bit
/// integer; a larger request is as good as unlimited.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `INSERT INTO table (columns) VALUES (placeholders)`.
pub(crate) fn insert(dialect: Dialect, table: &str, columns: ColumnList) -> String {
    let values: Vec<String> = (1..=columns.0.len()).map(|n| dialect.param(n)).collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        values.join(", ")
    )
}

/// A session row replaced if its version is still the expected one: the
/// parameters are the row in `SESSION_WRITTEN_COLUMNS` order (`id` first,
/// the key), then the expected version.
pub(crate) fn update_session(dialect: Dialect) -> String {
    let set: Vec<String> = SESSION_WRITTEN_COLUMNS
        .0
        .iter()
        .enumerate()
        .skip(1)
        .map(|(at, column)| format!("{column} = {}", dialect.param(at + 1)))
        .collect();
    format!(
        "UPDATE sessions SET {} WHERE id = {} AND version = {}",
        set.join(", "),
        dialect.param(1),
        dialect.param(SESSION_WRITTEN_COLUMNS.0.len() + 1)
    )
}

/// Columns of `sessions` that its indexes (and primary key) are built on.
/// An UPDATE maintains only the indexes whose columns it sets, so one that
/// leaves these out rewrites the row alone.
const SESSION_INDEXED_COLUMNS: [&str; 5] = ["id", "customer_id", "pool", "status", "created_at"];

/// `update_session` for a row whose indexed columns keep their values: the
/// same parameters, the other columns set and the indexed ones compared in
/// the WHERE clause instead. It changes no row when any of them moved (or
/// the version did); the caller then runs `update_session`, whose outcome
/// decides.
pub(crate) fn update_session_in_place(dialect: Dialect) -> String {
    let assign = |at: usize, column: &str| format!("{column} = {}", dialect.param(at + 1));
    let (mut set, mut kept) = (Vec::new(), Vec::new());
    for (at, column) in SESSION_WRITTEN_COLUMNS.0.iter().enumerate() {
        if SESSION_INDEXED_COLUMNS.contains(column) {
            kept.push(assign(at, column));
        } else {
            set.push(assign(at, column));
        }
    }
    format!(
        "UPDATE sessions SET {} WHERE {} AND version = {}",
        set.join(", "),
        kept.join(" AND "),
        dialect.param(SESSION_WRITTEN_COLUMNS.0.len() + 1)
    )
}

/// One session by id (the parameter).
pub(crate) fn session_by_id(dialect: Dialect) -> String {
    format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = {}",
        dialect.param(1)
    )
}

/// The read positions of one session (the parameter), by user id.
pub(crate) fn read_positions(dialect: Dialect) -> String {
    format!(
        "SELECT {READ_POSITION_COLUMNS} FROM read_positions \
         WHERE session_id = {} ORDER BY user_id",
        dialect.param(1)
    )
}

/// Records an agent (id, name, pools, last seen) in the directory, moving
/// `last_seen_at` forward only: a late disconnect must not undo a newer
/// connect.
pub(crate) fn upsert_agent(dialect: Dialect) -> String {
    format!(
        "{} ON CONFLICT (agent_id) DO UPDATE SET name = excluded.name, \
         pools = excluded.pools, \
         last_seen_at = {}(agents.last_seen_at, excluded.last_seen_at)",
        insert(dialect, "agents", AGENT_COLUMNS),
        dialect.greatest()
    )
}

/// Records a user's display name (user id, name). PostgreSQL leaves a name
/// that did not change alone: every update there is a new row version to
/// write and vacuum, for every join of a known user.
pub(crate) fn upsert_user(dialect: Dialect) -> String {
    let unchanged = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " WHERE users.name IS DISTINCT FROM excluded.name",
    };
    format!(
        "INSERT INTO users (user_id, name) VALUES ({}, {}) \
         ON CONFLICT (user_id) DO UPDATE SET name = excluded.name{unchanged}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// The directory, or those agents serving the pool in the parameter when
/// it is not NULL, by name then id. Names compare bytewise, as in Rust
/// (SQLite's default, the "C" collation in PostgreSQL).
pub(crate) fn list_agents(dialect: Dialect) -> String {
    agents_serving(dialect, &AGENT_COLUMNS.to_string())
}

/// `columns` of the directory's agents, filtered and ordered as
/// `list_agents`.
pub(crate) fn agents_serving(dialect: Dialect, columns: &str) -> String {
    let (pool, serves) = match dialect {
        Dialect::Sqlite => (
            "?1",
            "EXISTS (SELECT 1 FROM json_each(agents.pools) WHERE value = ?1)",
        ),
        // The cast gives the parameter a type where NULL alone has none;
        // `@>` is what the GIN index on pools serves.
        Dialect::Postgres => ("$1::text", "pools @> ARRAY[$1::text]"),
    };
    format!(
        "SELECT {columns} FROM agents WHERE {pool} IS NULL OR {serves} \
         ORDER BY name, agent_id"
    )
}

/// Today's figures of a pool (parameters: the pool, the start of the
/// day), one column per figure named as in `PoolFigures`, averages still
/// in milliseconds. One statement, so that every figure comes from the
/// same snapshot.
pub(crate) fn pool_figures(dialect: Dialect) -> String {
    let pool = dialect.param(1);
    let since = dialect.param(2);
    // Both stores count messages per pool and day as they write them
    // (SQLite's migration 3, PostgreSQL's 2), so that stats pushed every
    // second read a few rows.
    let sum = match dialect {
        Dialect::Sqlite => "COALESCE(SUM(messages), 0)",
        Dialect::Postgres => "COALESCE(SUM(messages), 0)::int8",
    };
    let messages_today =
        format!("SELECT {sum} FROM pool_message_counts WHERE pool = {pool} AND day >= {since}");
    let avg_wait = dialect.float_avg("first_assigned_at - created_at");
    let avg_first_response = dialect.float_avg("first_response_ms");
    format!(
        "SELECT
        (SELECT COUNT(*) FROM sessions WHERE pool = {pool} AND status = 'pending')
          AS pending_sessions,
        (SELECT COUNT(*) FROM sessions WHERE pool = {pool} AND status = 'active')
          AS active_sessions,
        (SELECT COUNT(*) FROM sessions
          WHERE pool = {pool} AND status = 'closed' AND closed_at >= {since})
          AS closed_today,
        (SELECT MIN(created_at) FROM sessions WHERE pool = {pool} AND status = 'pending')
          AS oldest_pending_created_at,
        (SELECT {avg_wait} FROM sessions
          WHERE pool = {pool} AND first_assigned_at >= {since})
          AS avg_wait_ms,
        (SELECT {avg_first_response} FROM sessions
          WHERE pool = {pool} AND first_response_at >= {since}
            AND first_response_ms IS NOT NULL)
          AS avg_first_response_ms,
        ({messages_today}) AS messages_today"
    )
}

// ---------------------------------------------------------------------------
// Session lists

/// A value bound to a statement built here; each store turns it into its
/// own parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param<'q> {
    Text(&'q str),
    Int(i64),
    /// One array parameter (PostgreSQL only: SQLite gets one `Text` per
    /// item).
    Texts(&'q [String]),
}

/// A statement and its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement<'q> {
    pub sql: String,
    pub params: Vec<Param<'q>>,
}

/// Parameters collected while a statement's text is written.
struct Binder<'q> {
    dialect: Dialect,
    params: Vec<Param<'q>>,
}

impl<'q> Binder<'q> {
    /// Adds a parameter and returns its placeholder.
    fn bind(&mut self, param: Param<'q>) -> String {
        self.params.push(param);
        self.dialect.param(self.params.len())
    }

    /// `column` is one of `values` (not empty).
    fn any_of(&mut self, column: &str, values: &'q [String]) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                let each: Vec<String> = values
                    .iter()
                    .map(|value| self.bind(Param::Text(value)))
                    .collect();
                format!("{column} IN ({})", each.join(", "))
            }
            // One array whatever the number of pools: one statement text,
            // which stays in the statement cache.
            Dialect::Postgres => format!("{column} = ANY({})", self.bind(Param::Texts(values))),
        }
    }
}

/// A session list: newest first by (created_at, id), after the cursor if
/// there is one. `None` when the query can match nothing (no pools in
/// scope, or a zero limit), so that no statement needs to run.
pub(crate) fn session_list(dialect: Dialect, query: &SessionQuery) -> Option<Statement<'_>> {
    if query.limit == 0 {
        return None;
    }
    let mut binder = Binder {
        dialect,
        params: Vec::new(),
    };
    let mut conditions: Vec<String> = Vec::new();
    match &query.scope {
        SessionScope::Customer(customer_id) => {
            let p = binder.bind(Param::Text(customer_id));
            conditions.push(format!("customer_id = {p}"));
        }
        SessionScope::Pools(pools) if pools.is_empty() => return None,
        SessionScope::Pools(pools) => conditions.push(binder.any_of("pool", pools)),
        SessionScope::All => {}
    }
    if let Some(status) = query.status {
        let p = binder.bind(Param::Text(status.as_str()));
        conditions.push(format!("status = {p}"));
    }
    if let Some(pool) = &query.pool {
        let p = binder.bind(Param::Text(pool));
        conditions.push(format!("pool = {p}"));
    }
    if let Some(cursor) = &query.after {
        let created_at = binder.bind(Param::Int(cursor.created_at.millis()));
        let id = binder.bind(Param::Text(&cursor.id));
        conditions.push(format!("(created_at, id) < ({created_at}, {id})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let limit = binder.bind(Param::Int(sql_limit(query.limit)));
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions {filter} \
         ORDER BY created_at DESC, id DESC LIMIT {limit}"
    );
    Some(Statement {
        sql,
        params: binder.params,
    })
}

// ---------------------------------------------------------------------------
// Message pages

/// One read of a session's history: which seqs (strictly between `lower`
/// and `upper`), from which end, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageWindow {
    pub lower: i64,
    pub upper: i64,
    newest_first: bool,
    limit: usize,
}

impl MessageWindow {
    pub(crate) fn new(range: MessageRange, limit: usize) -> Self {
        let (lower, upper, newest_first) = range.bounds();
        MessageWindow {
            lower,
            upper,
            newest_first,
            limit,
        }
    }

    /// Parameters: session id, `lower`, `upper`, `fetch()`.
    pub(crate) fn sql(&self, dialect: Dialect) -> String {
        self.sql_over(dialect, "messages", MESSAGE_COLUMNS)
    }

    /// The same read of `columns` from another table numbered by `seq`
    /// within each session (the notes), with the same parameters.
    pub(crate) fn sql_over(
        &self,
        dialect: Dialect,
        table: &str,
        columns: impl fmt::Display,
    ) -> String {
        let order = if self.newest_first { "DESC" } else { "ASC" };
        format!(
            "SELECT {columns} FROM {table} \
             WHERE session_id = {} AND seq > {} AND seq < {} \
             ORDER BY seq {order} LIMIT {}",
            dialect.param(1),
            dialect.param(2),
            dialect.param(3),
            dialect.param(4)
        )
    }

    /// The statement's LIMIT: the page and the lookahead.
    pub(crate) fn fetch(&self) -> i64 {
        sql_limit(self.limit.saturating_add(PAGE_LOOKAHEAD))
    }

    /// The page from the rows read, ascending by seq whichever end was
    /// read.
    pub(crate) fn page(&self, mut items: Vec<Message>) -> MessagePage {
        let has_more = items.len() > self.limit;
        items.truncate(self.limit);
        if self.newest_first {
            items.reverse();
        }
        MessagePage { items, has_more }
    }
}

// ---------------------------------------------------------------------------
// Applied migrations

/// The table where each store records the migrations it has applied.
pub(crate) fn create_migrations_table(dialect: Dialect) -> String {
    // The layout of this text is kept as released: SQLite stores it
    // verbatim as the table's definition.
    let integer = dialect.integer();
    format!(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    {integer} PRIMARY KEY,
            applied_at {integer} NOT NULL
        )"
    )
}

pub(crate) const APPLIED_MIGRATIONS: &str =
    "SELECT version FROM schema_migrations ORDER BY version";

/// Records a migration (version, applied at).
pub(crate) fn record_migration(dialect: Dialect) -> String {
    format!(
        "INSERT INTO schema_migrations (version, applied_at) VALUES ({}, {})",
        dialect.param(1),
        dialect.param(2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SessionStatus;
    use crate::store::SessionCursor;
    use crate::Timestamp;

    fn query(scope: SessionScope) -> SessionQuery {
        SessionQuery {
            scope,
            status: Some(SessionStatus::Pending),
            pool: Some("p".into()),
            limit: 20,
            after: Some(SessionCursor {
                created_at: Timestamp(7),
                id: "s-7".into(),
            }),
        }
    }

    #[test]
    fn a_session_list_numbers_its_parameters_in_order() {
        let pools = vec!["a".to_owned(), "b".to_owned()];
        let query = query(SessionScope::Pools(pools.clone()));
        let sqlite = session_list(Dialect::Sqlite, &query).expect("a statement");
        assert!(
            sqlite.sql.contains(
                "WHERE pool IN (?1, ?2) AND status = ?3 AND pool = ?4 \
                 AND (created_at, id) < (?5, ?6) ORDER BY created_at DESC, id DESC LIMIT ?7"
            ),
            "{}",
            sqlite.sql
        );
        assert_eq!(
            sqlite.params,
            [
                Param::Text("a"),
                Param::Text("b"),
                Param::Text("pending"),
                Param::Text("p"),
                Param::Int(7),
                Param::Text("s-7"),
                Param::Int(20),
            ]
        );
        let postgres = session_list(Dialect::Postgres, &query).expect("a statement");
        assert!(
            postgres.sql.contains(
                "WHERE pool = ANY($1) AND status = $2 AND pool = $3 \
                 AND (created_at, id) < ($4, $5) ORDER BY created_at DESC, id DESC LIMIT $6"
            ),
            "{}",
            postgres.sql
        );
        assert_eq!(postgres.params.first(), Some(&Param::Texts(&pools)));
        assert_eq!(postgres.params.len(), 6);
    }

    #[test]
    fn a_session_list_that_can_match_nothing_runs_no_statement() {
        let no_pools = query(SessionScope::Pools(Vec::new()));
        let mut no_rows = query(SessionScope::All);
        no_rows.limit = 0;
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            assert_eq!(session_list(dialect, &no_pools), None);
            assert_eq!(session_list(dialect, &no_rows), None);
        }
    }

    #[test]
    fn a_session_update_sets_every_column_but_the_key() {
        assert_eq!(
            update_session(Dialect::Sqlite),
            "UPDATE sessions SET customer_id = ?2, customer_name = ?3, agent_id = ?4, \
             agent_name = ?5, pool = ?6, status = ?7, subject = ?8, created_at = ?9, \
             assigned_at = ?10, closed_at = ?11, last_seq = ?12, last_message_at = ?13, \
             version = ?14, first_assigned_at = ?15, first_response_at = ?16, \
             first_response_ms = ?17 WHERE id = ?1 AND version = ?18"
        );
    }

    #[test]
    fn session_writes_leave_the_participants_to_their_own_statement() {
        assert_eq!(SESSION_COLUMNS.0.last(), Some(&"participants"));
        assert_eq!(SESSION_WRITTEN_COLUMNS.0, &SESSION_COLUMNS.0[..17]);
        assert!(
            !insert(Dialect::Sqlite, "sessions", SESSION_WRITTEN_COLUMNS).contains("participants")
        );
        assert!(!update_session_in_place(Dialect::Sqlite).contains("participants"));
    }

    #[test]
    fn an_update_in_place_sets_no_indexed_column() {
        assert_eq!(
            update_session_in_place(Dialect::Sqlite),
            "UPDATE sessions SET customer_name = ?3, agent_id = ?4, agent_name = ?5, \
             subject = ?8, assigned_at = ?10, closed_at = ?11, last_seq = ?12, \
             last_message_at = ?13, version = ?14, first_assigned_at = ?15, \
             first_response_at = ?16, first_response_ms = ?17 \
             WHERE id = ?1 AND customer_id = ?2 AND pool = ?6 AND status = ?7 AND \
             created_at = ?9 AND version = ?18"
        );
    }

    #[test]
    fn a_message_window_reads_one_beyond_its_limit() {
        let window = MessageWindow::new(MessageRange::Latest, 3);
        assert_eq!(window.fetch(), 4);
        assert!(window
            .sql(Dialect::Postgres)
            .ends_with("ORDER BY seq DESC LIMIT $4"));
        let huge = MessageWindow::new(MessageRange::After(0), usize::MAX);
        assert_eq!(huge.fetch(), i64::MAX);
        assert!(huge
            .sql(Dialect::Sqlite)
            .ends_with("ORDER BY seq ASC LIMIT ?4"));
    }
}
