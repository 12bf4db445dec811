//! The Lua scripts of the Redis backplane, and how they are run.
//!
//! A script runs atomically on the server, so every operation that reads
//! and then writes (take a free lease, claim and count deliveries, move an
//! entry to the dead letters and ack it) is one script instead of several
//! round trips that another client could interleave with. Scripts are sent
//! by hash (EVALSHA); a server that does not know a script (first use, or
//! after a restart emptied its cache) is sent the source once and asked
//! again.
//!
//! Scripts read the clock with `TIME`, so every expiry is measured on the
//! server's clock, whatever the clocks of gateways and workers say. That
//! needs effect replication, the default since Redis 5; XAUTOCLAIM needs
//! Redis 6.2 anyway.

use fred::clients::Pool;
use fred::types::scripts::Script;
use fred::types::{MultipleKeys, MultipleValues, Value};

use super::map_error;
use crate::backplane::BackplaneError;

/// Takes over entries idle for at least `min_idle`, oldest first, and
/// reports how often each has now been delivered.
///
/// KEYS: the stream. ARGV: group, consumer, min idle (ms), max.
///
/// XAUTOCLAIM looks at a bounded slice of the pending list per call, so it
/// is repeated until the list is exhausted or `max` entries are taken. It
/// counts the delivery but does not return the count; XPENDING on the id
/// does. An entry whose payload is gone (deleted behind the group's back)
/// can never be processed: it is acked instead of returned, as Redis 7
/// does by itself.
///
/// Returns a flat array: id, payload, deliveries, repeated.
const CLAIM: &str = r#"
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local min_idle, max = ARGV[3], tonumber(ARGV[4])
local out = {}
local taken = 0
local cursor = '0-0'
repeat
  local reply = redis.pcall('XAUTOCLAIM', key, group, consumer, min_idle, cursor, 'COUNT', max - taken)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'NOGROUP', 1, true) then return out end
    return error(reply.err)
  end
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    if type(entry) == 'table' and type(entry[2]) == 'table' then
      local id = entry[1]
      local payload = ''
      local fields = entry[2]
      for f = 1, #fields, 2 do
        if fields[f] == 'payload' then payload = fields[f + 1] end
      end
      local pending = redis.call('XPENDING', key, group, id, id, 1)
      local deliveries = pending[1] and pending[1][4] or 1
      out[#out + 1] = id
      out[#out + 1] = payload
      out[#out + 1] = deliveries
      taken = taken + 1
    elseif type(entry) == 'table' then
      redis.call('XACK', key, group, entry[1])
    end
  end
until cursor == '0-0' or taken >= max
return out
"#;

/// Sets an entry aside with its reason and acks it, in one step, so that
/// it is never both lost and acked nor both dead-lettered and retried.
///
/// KEYS: the command stream, the dead-letter stream. ARGV: group, id,
/// payload, deliveries, reason, how many dead letters to keep, whether the
/// id is a valid stream id (`1`) to ack.
const DEAD_LETTER: &str = r#"
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'id', ARGV[2], 'payload', ARGV[3], 'deliveries', ARGV[4], 'reason', ARGV[5])
if ARGV[7] == '1' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"#;

/// Drops the entries every group is done with, and forgets consumers that
/// hold nothing and have been idle long.
///
/// KEYS: the stream. ARGV: idle time (ms) after which an empty consumer is
/// removed.
///
/// For each group the first entry still needed is its oldest pending one
/// or, with nothing pending, the last one delivered (everything before it
/// was delivered and acked). The stream is cut (exactly, XTRIM MINID)
/// before the smallest of those over all groups, so no entry still pending
/// or not yet delivered to some group is ever dropped. A stream without a
/// group has had nothing delivered, so nothing is dropped. Consumers are
/// created by every worker that ever read (worker ids are per process);
/// removing the idle empty ones keeps the group from growing forever, and
/// a reader that comes back is recreated by its next read.
///
/// Returns how many entries were dropped.
const TRIM: &str = r#"
local key = KEYS[1]
local max_idle = tonumber(ARGV[1])
local groups = redis.pcall('XINFO', 'GROUPS', key)
if type(groups) == 'table' and groups.err then return 0 end
if #groups == 0 then return 0 end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local a_ms, a_seq = parse(a)
  local b_ms, b_seq = parse(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

local floor = nil
for _, group in ipairs(groups) do
  local info = {}
  for f = 1, #group, 2 do info[group[f]] = group[f + 1] end
  local needed = info['last-delivered-id']
  local summary = redis.call('XPENDING', key, info['name'])
  if summary[1] > 0 then needed = summary[2] end
  if floor == nil or less(needed, floor) then floor = needed end

  local consumers = redis.call('XINFO', 'CONSUMERS', key, info['name'])
  for _, consumer in ipairs(consumers) do
    local c = {}
    for f = 1, #consumer, 2 do c[consumer[f]] = consumer[f + 1] end
    if c['pending'] == 0 and c['idle'] > max_idle then
      redis.call('XGROUP', 'DELCONSUMER', key, info['name'], c['name'])
    end
  end
end
return redis.call('XTRIM', key, 'MINID', floor)
"#;

/// Reads a command stream's backlog for monitoring.
///
/// KEYS: the stream. ARGV: group, most entries to count by hand.
///
/// Returns {length, pending, lag}. Redis 7 reports the group's lag itself;
/// where it cannot (Redis 6.2, or a lag it cannot determine) the entries
/// after the group's last delivered one are counted, up to the cap. A
/// stream without the group has delivered nothing: all of it is lag.
const STREAM_INFO: &str = r#"
local key = KEYS[1]
local length = redis.call('XLEN', key)
local groups = redis.pcall('XINFO', 'GROUPS', key)
if type(groups) == 'table' and groups.err then return {length, 0, length} end
for _, group in ipairs(groups) do
  local info = {}
  for f = 1, #group, 2 do info[group[f]] = group[f + 1] end
  if info['name'] == ARGV[1] then
    local lag = info['lag']
    if type(lag) ~= 'number' then
      local after = redis.call('XRANGE', key, '(' .. info['last-delivered-id'], '+',
        'COUNT', tonumber(ARGV[2]))
      lag = #after
    end
    return {length, info['pending'], lag}
  end
end
return {length, 0, length}
"#;

/// Takes a lease if nobody holds it, with a fresh fencing token.
///
/// KEYS: the lease, the token counter. ARGV: holder, ttl (ms).
///
/// The stored value is `holder:token`, so that renewing and releasing can
/// check both at once. Returns the token, or nil when the lease is held.
const ACQUIRE_LEASE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"#;

/// Extends a lease still held under the given holder and token.
///
/// KEYS: the lease. ARGV: `holder:token`, ttl (ms). Returns 1 or 0.
const RENEW_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Frees a lease still held under the given holder and token; a stale
/// holder's release leaves the current holder's lease alone.
///
/// KEYS: the lease. ARGV: `holder:token`. Returns 1 or 0.
const RELEASE_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Records a presence until now + ttl on the server's clock.
///
/// KEYS: the pool's sorted set. ARGV: member (`user\x1finstance`), ttl (ms).
///
/// The set as a whole expires with its longest-lived member, so a pool
/// nobody is present in leaves no key behind; members that expired are
/// dropped on the way.
const PRESENCE_HEARTBEAT: &str = r#"
local ttl = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"#;

/// Counts distinct users with at least one unexpired presence.
///
/// KEYS: the pool's sorted set. A member is `user\x1finstance`; the user is
/// everything before the last separator (instance ids never contain it).
const PRESENCE_COUNT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
local users, count = {}, 0
for _, member in ipairs(members) do
  local user = string.match(member, '^(.*)\031') or member
  if not users[user] then
    users[user] = true
    count = count + 1
  end
end
return count
"#;

/// The unexpired members of a pool's presence, expired ones dropped on the
/// way, as the count does; the caller collapses them to users.
///
/// KEYS: the pool's sorted set.
const PRESENCE_MEMBERS: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
"#;

/// Counts a call in a fixed window: the first call of a window sets its
/// expiry, so the count and the window go together.
///
/// KEYS: the counter. ARGV: the window in milliseconds.
const COUNT_IN_WINDOW: &str = r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"#;

/// Every script, hashed once at start.
pub(super) struct Scripts {
    pub claim: Script,
    pub dead_letter: Script,
    pub trim: Script,
    pub stream_info: Script,
    pub acquire_lease: Script,
    pub renew_lease: Script,
    pub release_lease: Script,
    pub presence_heartbeat: Script,
    pub presence_count: Script,
    pub presence_members: Script,
    pub count_in_window: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            claim: Script::from_lua(CLAIM),
            dead_letter: Script::from_lua(DEAD_LETTER),
            trim: Script::from_lua(TRIM),
            stream_info: Script::from_lua(STREAM_INFO),
            acquire_lease: Script::from_lua(ACQUIRE_LEASE),
            renew_lease: Script::from_lua(RENEW_LEASE),
            release_lease: Script::from_lua(RELEASE_LEASE),
            presence_heartbeat: Script::from_lua(PRESENCE_HEARTBEAT),
            presence_count: Script::from_lua(PRESENCE_COUNT),
            presence_members: Script::from_lua(PRESENCE_MEMBERS),
            count_in_window: Script::from_lua(COUNT_IN_WINDOW),
        }
    }
}

/// Runs a script on the next connection of the pool, loading it first if
/// the server does not know it.
pub(super) async fn run<K, V>(
    pool: &Pool,
    script: &Script,
    keys: K,
    args: V,
) -> Result<Value, BackplaneError>
where
    K: Into<MultipleKeys> + Send,
    V: TryInto<MultipleValues> + Send,
    V::Error: Into<fred::error::Error> + Send,
{
    script
        .evalsha_with_reload(pool.next(), keys, args)
        .await
        .map_err(map_error)
}
