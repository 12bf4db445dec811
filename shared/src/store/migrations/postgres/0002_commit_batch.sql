CREATE TABLE pool_message_counts (
    pool     TEXT COLLATE "C" NOT NULL,
    -- Start of the UTC day, in milliseconds since the Unix epoch.
    day      BIGINT NOT NULL,
    shard    INTEGER NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (pool, day, shard)
);
INSERT INTO pool_message_counts (pool, day, shard, messages)
SELECT s.pool, (m.created_at / 86400000) * 86400000, 0, count(*)
FROM messages AS m JOIN sessions AS s ON s.id = m.session_id
GROUP BY 1, 2;

DROP INDEX messages_by_created;
ALTER TABLE messages DROP CONSTRAINT messages_session_id_fkey;
-- Messages are found by (session, seq), never by id alone; one index fewer
-- to write per message. Ids stay unique by construction (UUIDv7).
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages REPLICA IDENTITY USING INDEX messages_seq_unique;

CREATE FUNCTION chat_commit_batch(
    s_id text[], s_customer_id text[], s_customer_name text[], s_agent_id text[],
    s_agent_name text[], s_pool text[], s_status text[], s_subject text[],
    s_created_at int8[], s_assigned_at int8[], s_closed_at int8[], s_last_seq int8[],
    s_last_message_at int8[], s_version int8[], s_first_assigned_at int8[],
    s_first_response_at int8[], s_first_response_ms int8[], s_expected_version int8[],
    m_id text[], m_session_id text[], m_seq int8[], m_sender_id text[], m_sender_name text[],
    m_sender_role text[], m_content text[], m_client_msg_id text[], m_created_at int8[],
    r_session_id text[], r_user_id text[], r_role text[], r_up_to_seq int8[], r_read_at int8[],
    u_user_id text[], u_name text[],
    c_pool text[], c_day int8[], c_messages int8[], x_session_id text[]
) RETURNS void LANGUAGE plpgsql AS $body$
DECLARE
    wanted bigint;
    written bigint;
BEGIN
    SELECT count(*) INTO wanted FROM unnest(s_expected_version) AS e WHERE e IS NULL;
    IF wanted > 0 THEN
        INSERT INTO sessions (id, customer_id, customer_name, agent_id, agent_name, pool,
            status, subject, created_at, assigned_at, closed_at, last_seq, last_message_at,
            version, first_assigned_at, first_response_at, first_response_ms)
        SELECT u.id, u.customer_id, u.customer_name, u.agent_id, u.agent_name, u.pool,
            u.status, u.subject, u.created_at, u.assigned_at, u.closed_at, u.last_seq,
            u.last_message_at, u.version, u.first_assigned_at, u.first_response_at,
            u.first_response_ms
        FROM UNNEST(s_id, s_customer_id, s_customer_name, s_agent_id, s_agent_name, s_pool,
            s_status, s_subject, s_created_at, s_assigned_at, s_closed_at, s_last_seq,
            s_last_message_at, s_version, s_first_assigned_at, s_first_response_at,
            s_first_response_ms, s_expected_version)
            AS u (id, customer_id, customer_name, agent_id, agent_name, pool, status,
                subject, created_at, assigned_at, closed_at, last_seq, last_message_at,
                version, first_assigned_at, first_response_at, first_response_ms,
                expected_version)
        WHERE u.expected_version IS NULL
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written < wanted THEN
            RAISE EXCEPTION USING ERRCODE = 'CH001',
                MESSAGE = format('%s of %s sessions already exist', wanted - written, wanted);
        END IF;
    END IF;

    wanted := cardinality(s_id) - wanted;
    IF wanted > 0 THEN
        UPDATE sessions AS s SET
            customer_id = u.customer_id, customer_name = u.customer_name,
            agent_id = u.agent_id, agent_name = u.agent_name, pool = u.pool,
            status = u.status, subject = u.subject, created_at = u.created_at,
            assigned_at = u.assigned_at, closed_at = u.closed_at, last_seq = u.last_seq,
            last_message_at = u.last_message_at, version = u.version,
            first_assigned_at = u.first_assigned_at, first_response_at = u.first_response_at,
            first_response_ms = u.first_response_ms
        FROM UNNEST(s_id, s_customer_id, s_customer_name, s_agent_id, s_agent_name, s_pool,
            s_status, s_subject, s_created_at, s_assigned_at, s_closed_at, s_last_seq,
            s_last_message_at, s_version, s_first_assigned_at, s_first_response_at,
            s_first_response_ms, s_expected_version)
            AS u (id, customer_id, customer_name, agent_id, agent_name, pool, status,
                subject, created_at, assigned_at, closed_at, last_seq, last_message_at,
                version, first_assigned_at, first_response_at, first_response_ms,
                expected_version)
        WHERE u.expected_version IS NOT NULL
            AND s.id = u.id AND s.version = u.expected_version;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written < wanted THEN
            RAISE EXCEPTION USING ERRCODE = 'CH001',
                MESSAGE = format('%s of %s sessions changed or missing', wanted - written, wanted);
        END IF;
    END IF;

    wanted := cardinality(m_id);
    IF wanted > 0 THEN
        -- What a foreign key would check, for the sessions of messages
        -- whose session the batch does not write (those it writes exist),
        -- without locking session rows.
        IF cardinality(x_session_id) > 0 THEN
            SELECT count(*) INTO written FROM unnest(x_session_id) AS x (id)
            WHERE NOT EXISTS (SELECT 1 FROM sessions AS s WHERE s.id = x.id);
            IF written > 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                    MESSAGE = format('messages name %s sessions that do not exist', written);
            END IF;
        END IF;

        -- A plain insert: a message colliding with a stored one (same seq,
        -- or same sender and client id) fails the batch with a unique
        -- violation, a conflict like any other. ON CONFLICT would cost a
        -- speculative insertion per row to learn the same thing.
        INSERT INTO messages (id, session_id, seq, sender_id, sender_name, sender_role,
            content, client_msg_id, created_at)
        SELECT * FROM UNNEST(m_id, m_session_id, m_seq, m_sender_id, m_sender_name,
            m_sender_role, m_content, m_client_msg_id, m_created_at);

        -- Counted by the caller where it knows the pool (c_*), here for
        -- the others. Each connection adds to a shard of its own, so that
        -- two workers committing messages of one pool never wait for each
        -- other here.
        INSERT INTO pool_message_counts AS c (pool, day, shard, messages)
        SELECT counted.pool, counted.day, pg_backend_pid() % 16, sum(counted.n)
        FROM (
            SELECT k.pool, k.day, k.n FROM unnest(c_pool, c_day, c_messages) AS k (pool, day, n)
            UNION ALL
            SELECT s.pool, (m.created_at / 86400000) * 86400000, count(*)
            FROM unnest(m_session_id, m_created_at) AS m (session_id, created_at)
            JOIN sessions AS s ON s.id = m.session_id
            WHERE m.session_id = ANY (x_session_id)
            GROUP BY 1, 2
        ) AS counted
        GROUP BY counted.pool, counted.day
        ON CONFLICT (pool, day, shard) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    END IF;

    IF cardinality(r_session_id) > 0 THEN
        INSERT INTO read_positions (session_id, user_id, role, up_to_seq, read_at)
        SELECT * FROM UNNEST(r_session_id, r_user_id, r_role, r_up_to_seq, r_read_at)
        ON CONFLICT (session_id, user_id) DO UPDATE SET
            role = EXCLUDED.role, up_to_seq = EXCLUDED.up_to_seq, read_at = EXCLUDED.read_at;
    END IF;

    -- A name that did not change is left alone: no new row version to
    -- write and vacuum for every join of a known user.
    IF cardinality(u_user_id) > 0 THEN
        INSERT INTO users (user_id, name) SELECT * FROM UNNEST(u_user_id, u_name)
        ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name
        WHERE users.name IS DISTINCT FROM EXCLUDED.name;
    END IF;
END
$body$;
