-- Routing: what an agent last said (online or away), their own capacity
-- (NULL: the pool's default), how many sessions are active with them now
-- and when one was last given to them. The count starts from the sessions
-- active at upgrade and is kept by every commit that changes a session's
-- agent or status.
ALTER TABLE agents ADD COLUMN status TEXT NOT NULL DEFAULT 'online'
    CHECK (status IN ('online', 'away'));
ALTER TABLE agents ADD COLUMN capacity INTEGER;
ALTER TABLE agents ADD COLUMN open_chats INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_assigned_at INTEGER;
UPDATE agents SET open_chats = (
    SELECT count(*) FROM sessions
    WHERE sessions.agent_id = agents.agent_id AND sessions.status = 'active'
);

-- A pool's queue, oldest first, and the pools that have one.
CREATE INDEX sessions_waiting ON sessions (pool, created_at, id) WHERE status = 'pending';
-- The chats of agents who have gone, to give back to the queue.
CREATE INDEX sessions_active_by_agent ON sessions (agent_id) WHERE status = 'active';
