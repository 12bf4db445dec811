-- The system entries of a session's timeline: who gave it to whom, moved
-- it, returned it to the queue or closed it, and after which message.
CREATE TABLE session_events (
    session_id TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('assigned', 'transferred', 'returned', 'closed')),
    by_id      TEXT COLLATE "C",
    by_role    TEXT CHECK (by_role IN ('customer', 'agent', 'admin')),
    agent_id   TEXT COLLATE "C",
    agent_name TEXT COLLATE "C",
    pool       TEXT COLLATE "C" NOT NULL,
    after_seq  BIGINT NOT NULL
);
CREATE INDEX session_events_by_session ON session_events (session_id, at);
