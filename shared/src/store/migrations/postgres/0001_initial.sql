CREATE TABLE sessions (
    id                TEXT COLLATE "C" PRIMARY KEY,
    customer_id       TEXT COLLATE "C" NOT NULL,
    customer_name     TEXT NOT NULL,
    agent_id          TEXT COLLATE "C",
    agent_name        TEXT,
    pool              TEXT COLLATE "C" NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'active', 'closed')),
    subject           TEXT,
    created_at        BIGINT NOT NULL,
    assigned_at       BIGINT,
    closed_at         BIGINT,
    last_seq          BIGINT NOT NULL,
    last_message_at   BIGINT,
    version           BIGINT NOT NULL,
    first_assigned_at BIGINT,
    first_response_at BIGINT,
    first_response_ms BIGINT
)
-- Every message updates its session's row (last_seq, version); room on the
-- page lets those updates stay on it (HOT) without touching the indexes.
WITH (fillfactor = 80);

-- Agents' lists and pool stats filter by pool and status, newest first.
CREATE INDEX sessions_by_pool ON sessions (pool, status, created_at, id);
-- Customers list their own sessions, newest first.
CREATE INDEX sessions_by_customer ON sessions (customer_id, created_at, id);
-- Admins list everything, newest first, paged by (created_at, id).
CREATE INDEX sessions_by_created ON sessions (created_at, id);
-- Today's figures of a pool, recomputed every second or so, must not scan
-- every session the pool ever had.
CREATE INDEX sessions_closed_by_pool ON sessions (pool, closed_at);
CREATE INDEX sessions_assigned_by_pool ON sessions (pool, first_assigned_at);
CREATE INDEX sessions_answered_by_pool ON sessions (pool, first_response_at);

CREATE TABLE messages (
    id            TEXT COLLATE "C" PRIMARY KEY,
    session_id    TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    seq           BIGINT NOT NULL,
    sender_id     TEXT COLLATE "C" NOT NULL,
    sender_name   TEXT NOT NULL,
    sender_role   TEXT NOT NULL CHECK (sender_role IN ('customer', 'agent', 'admin')),
    content       TEXT NOT NULL,
    client_msg_id TEXT COLLATE "C",
    created_at    BIGINT NOT NULL,
    -- Also the history index: every page is a range of seq in one session.
    CONSTRAINT messages_seq_unique UNIQUE (session_id, seq)
);

-- Idempotent sends: one message per client id and sender in a session.
-- NULLs are distinct, so messages without a client id never clash.
CREATE UNIQUE INDEX messages_by_client_id ON messages (session_id, sender_id, client_msg_id);
-- Messages-today figures scan by creation time.
CREATE INDEX messages_by_created ON messages (created_at);

CREATE TABLE read_positions (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    user_id    TEXT COLLATE "C" NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    up_to_seq  BIGINT NOT NULL,
    read_at    BIGINT NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE users (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    name    TEXT NOT NULL
);
