CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL,
    customer_name     TEXT NOT NULL,
    agent_id          TEXT,
    agent_name        TEXT,
    pool              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'active', 'closed')),
    subject           TEXT,
    created_at        INTEGER NOT NULL,
    assigned_at       INTEGER,
    closed_at         INTEGER,
    last_seq          INTEGER NOT NULL,
    last_message_at   INTEGER,
    version           INTEGER NOT NULL,
    first_assigned_at INTEGER,
    first_response_at INTEGER,
    first_response_ms INTEGER
);

-- Agents' lists and pool stats filter by pool and status, newest first.
CREATE INDEX sessions_by_pool ON sessions (pool, status, created_at);
-- Customers list their own sessions, newest first.
CREATE INDEX sessions_by_customer ON sessions (customer_id, created_at);
-- Admins list everything, newest first, paged by (created_at, id).
CREATE INDEX sessions_by_created ON sessions (created_at, id);

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    seq           INTEGER NOT NULL,
    sender_id     TEXT NOT NULL,
    sender_name   TEXT NOT NULL,
    sender_role   TEXT NOT NULL CHECK (sender_role IN ('customer', 'agent', 'admin')),
    content       TEXT NOT NULL,
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    -- Also the history index: every page is a range of seq in one session.
    UNIQUE (session_id, seq)
);

-- Idempotent sends: one message per client id and sender in a session.
-- SQL treats NULLs as distinct, so messages without a client id never clash.
CREATE UNIQUE INDEX messages_by_client_id ON messages (session_id, sender_id, client_msg_id);
-- Messages-today figures scan by creation time.
CREATE INDEX messages_by_created ON messages (created_at);

CREATE TABLE read_positions (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    up_to_seq  INTEGER NOT NULL,
    read_at    INTEGER NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    name    TEXT NOT NULL
);
