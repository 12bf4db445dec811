-- The system entries of a session's timeline: who gave it to whom, moved
-- it, returned it to the queue or closed it, and after which message.
CREATE TABLE session_events (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('assigned', 'transferred', 'returned', 'closed')),
    by_id      TEXT,
    by_role    TEXT CHECK (by_role IN ('customer', 'agent', 'admin')),
    agent_id   TEXT,
    agent_name TEXT,
    pool       TEXT NOT NULL,
    after_seq  INTEGER NOT NULL
);
CREATE INDEX session_events_by_session ON session_events (session_id, at);
