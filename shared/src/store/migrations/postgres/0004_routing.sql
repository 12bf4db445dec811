-- Routing: what an agent last said (online or away), their own capacity
-- (NULL: the pool's default), how many sessions are active with them now
-- and when one was last given to them. The count starts from the sessions
-- active at upgrade and is kept by every commit that changes a session's
-- agent or status; its row lock is what orders two workers assigning the
-- same agent at once.
ALTER TABLE agents
    ADD COLUMN status TEXT COLLATE "C" NOT NULL DEFAULT 'online'
        CHECK (status IN ('online', 'away')),
    ADD COLUMN capacity BIGINT,
    ADD COLUMN open_chats BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN last_assigned_at BIGINT;
UPDATE agents SET open_chats = counts.open
FROM (
    SELECT agent_id, count(*) AS open FROM sessions
    WHERE status = 'active' AND agent_id IS NOT NULL
    GROUP BY agent_id
) AS counts
WHERE agents.agent_id = counts.agent_id;

-- A pool's queue, oldest first, and the pools that have one.
CREATE INDEX sessions_waiting ON sessions (pool, created_at, id) WHERE status = 'pending';
-- The chats of agents who have gone, to give back to the queue.
CREATE INDEX sessions_active_by_agent ON sessions (agent_id) WHERE status = 'active';
