-- Internal notes: written by staff for staff, numbered in their own
-- sequence per session (seq 1, 2, 3, ... of the notes) and placed in the
-- conversation by after_seq, the message they follow. Kept apart from
-- messages so that no read of messages can ever return one, and so that
-- message numbers stay without gaps.
CREATE TABLE session_notes (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    seq           INTEGER NOT NULL,
    after_seq     INTEGER NOT NULL,
    sender_id     TEXT NOT NULL,
    sender_name   TEXT NOT NULL,
    sender_role   TEXT NOT NULL CHECK (sender_role IN ('agent', 'admin')),
    content       TEXT NOT NULL,
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    -- Also the notes' history index, as for messages.
    UNIQUE (session_id, seq)
);

-- Idempotent sends of notes, as for messages.
CREATE UNIQUE INDEX session_notes_by_client_id
    ON session_notes (session_id, sender_id, client_msg_id);

-- The colleagues invited into a session, a JSON array of
-- { userId, name, role, joinedAt } in the order they joined: read and
-- written with the row it belongs to, under the row's version.
ALTER TABLE sessions ADD COLUMN participants TEXT NOT NULL DEFAULT '[]';

-- Timeline entries of colleagues joining and leaving. SQLite cannot change
-- a CHECK constraint in place, so the table is rebuilt with the same rows.
CREATE TABLE session_events_with_colleagues (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('assigned', 'transferred', 'returned', 'closed',
                                             'invited', 'left')),
    by_id      TEXT,
    by_role    TEXT CHECK (by_role IN ('customer', 'agent', 'admin')),
    agent_id   TEXT,
    agent_name TEXT,
    pool       TEXT NOT NULL,
    after_seq  INTEGER NOT NULL
);
INSERT INTO session_events_with_colleagues
    (session_id, at, kind, by_id, by_role, agent_id, agent_name, pool, after_seq)
    SELECT session_id, at, kind, by_id, by_role, agent_id, agent_name, pool, after_seq
    FROM session_events;
DROP TABLE session_events;
ALTER TABLE session_events_with_colleagues RENAME TO session_events;
CREATE INDEX session_events_by_session ON session_events (session_id, at);
