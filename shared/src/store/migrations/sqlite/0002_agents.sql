CREATE TABLE agents (
    agent_id     TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    pools        TEXT NOT NULL,
    last_seen_at INTEGER NOT NULL
);
