CREATE TABLE agents (
    agent_id     TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL,
    pools        TEXT[] NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX agents_by_pool ON agents USING GIN (pools);
