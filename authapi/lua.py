"""The Lua scripts of the store: each check-and-act is one script, atomic, one round trip.

Keys are those of ``store.py``: ``KEYS`` name the session hash and the user's index (one
hash tag); scripts that walk a user's sessions build their keys from the prefix in ARGV.
Times are milliseconds (``now``) or seconds (token ``exp``), as the field names say.
"""

# Prune the user's index of expired sessions, evict the oldest past the cap, add this one.
START = """
local idx, prefix, now = KEYS[2], ARGV[1], tonumber(ARGV[2])
local live = {}
for _, sid in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if redis.call('EXISTS', prefix .. 's:' .. sid) == 1 then
    table.insert(live, sid)
  else
    redis.call('ZREM', idx, sid)
  end
end
local evicted = {}
for i = 1, #live - tonumber(ARGV[12]) + 1 do
  redis.call('DEL', prefix .. 's:' .. live[i])
  redis.call('ZREM', idx, live[i])
  table.insert(evicted, live[i])
end
redis.call('HSET', KEYS[1], 'uid', ARGV[4], 'cur', ARGV[5], 'cur_iat', ARGV[6],
  'cur_exp', ARGV[7], 'acc_exp', ARGV[8], 'max_exp', ARGV[9], 'created', now,
  'last_used', now, 'ua', ARGV[10], 'ip', ARGV[11], 'pw', ARGV[13], 'prof', ARGV[14])
-- more fields of the session, as name/value pairs: 'amr', 'dj' (authapi.allauth)
for i = 15, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local expire_at = math.max(tonumber(ARGV[7]), tonumber(ARGV[8])) * 1000
redis.call('PEXPIREAT', KEYS[1], expire_at)
redis.call('ZADD', idx, now, ARGV[3])
local ttl = redis.call('PTTL', idx)
if ttl < 0 or now + ttl < expire_at then redis.call('PEXPIREAT', idx, expire_at) end
return evicted
"""

# Spend the presented refresh token: advance the session, hand back the same successor
# (replay of the parent inside the interval), or revoke the whole session (reuse). A
# successor carries the session's ``amr`` (how its user authenticated, RFC 8176).
ROTATE = """
local s, idx = KEYS[1], KEYS[2]
local f = redis.call('HMGET', s, 'cur', 'prev', 'prev_at', 'cur_iat', 'cur_exp', 'max_exp',
  'acc_exp', 'uid', 'pw', 'amr')
local amr = f[10] or ''
if not f[1] or f[8] ~= ARGV[10] then return {'gone'} end
if f[9] and f[9] ~= ARGV[12] then
  -- the password changed behind our back (QuerySet.update, raw SQL): end the session
  redis.call('DEL', s)
  redis.call('ZREM', idx, ARGV[11])
  return {'stale'}
end
local now, jti = tonumber(ARGV[2]), ARGV[1]
if f[1] == ARGV[3] then
  -- this very call already ran (a client retry after a lost reply): answer it again
  return {'ok', ARGV[3], f[4], f[5], f[7], amr}
end
local max_exp, acc_old = tonumber(f[6]), tonumber(f[7])
local aexp = math.min(tonumber(ARGV[6]), max_exp)
local function keep_alive(until_s)
  local expire_at = math.max(until_s, aexp, acc_old) * 1000
  redis.call('PEXPIREAT', s, expire_at)
  local ttl = redis.call('PTTL', idx)
  if ttl < 0 or now + ttl < expire_at then redis.call('PEXPIREAT', idx, expire_at) end
  redis.call('HSET', s, 'acc_exp', math.max(aexp, acc_old), 'last_used', now,
    'ua', ARGV[8], 'ip', ARGV[9])
  -- the user as the database has it now: what /me answers until the next refresh
  if ARGV[13] and ARGV[13] ~= '' then redis.call('HSET', s, 'prof', ARGV[13]) end
end
if f[1] == jti then
  if tonumber(f[5]) * 1000 <= now then return {'gone'} end
  local rexp = math.min(tonumber(ARGV[5]), max_exp)
  redis.call('HSET', s, 'prev', jti, 'prev_at', now, 'cur', ARGV[3], 'cur_iat', ARGV[4],
    'cur_exp', rexp)
  keep_alive(rexp)
  return {'ok', ARGV[3], ARGV[4], tostring(rexp), tostring(aexp), amr}
end
local interval = tonumber(ARGV[7])
if f[2] == jti and interval > 0 and now - tonumber(f[3]) <= interval
    and tonumber(f[5]) * 1000 > now then
  keep_alive(tonumber(f[5]))
  return {'same', f[1], f[4], f[5], tostring(aexp), amr}
end
redis.call('DEL', s)
redis.call('ZREM', idx, ARGV[11])
return {'reuse'}
"""

REVOKE_SESSION = """
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"""

REVOKE_USER = """
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. 's:' .. sid)
end
redis.call('DEL', KEYS[1])
return n
"""

REVOKE_ACCESS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'rj:' .. ARGV[1], '1')
  return 1
end
return 0
"""

# A hasher upgrade re-hashes the same password: sessions keep living under the new hash.
REHASH = """
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. 's:' .. sid
  if redis.call('HGET', key, 'pw') == ARGV[2] then redis.call('HSET', key, 'pw', ARGV[3]) end
end
return 0
"""

LIST = """
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. 's:' .. sid, 'created', 'last_used', 'ua', 'ip',
    'cur_exp', 'max_exp')
  if f[1] then
    table.insert(out, {sid, f[1], f[2], f[3] or '', f[4] or '', f[5], f[6]})
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
"""

# Reserve one login attempt on all three allowances, or say how long to wait (ms) and
# which allowance is used up. KEYS: the (network, username) counter, the network's and
# the username's (the account's, across networks), all under one hash tag. A limit of 0
# is off.
ATTEMPT = """
local pair, per_net, per_user = KEYS[1], KEYS[2], KEYS[3]
local limits = {
  {pair, tonumber(ARGV[1]), tonumber(ARGV[2]), 'pair'},
  {per_net, tonumber(ARGV[3]), tonumber(ARGV[4]), 'network'},
  {per_user, tonumber(ARGV[5]), tonumber(ARGV[6]), 'account'},
}
local ms, which = 0, ''
for _, l in ipairs(limits) do
  local key, limit, period = l[1], l[2], l[3]
  if limit > 0 and tonumber(redis.call('GET', key) or '0') >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then redis.call('PEXPIRE', key, period); ttl = period end
    if ttl > ms then ms, which = ttl, l[4] end
  end
end
-- throttled: refused and not counted
if ms > 0 then return {ms, which} end
for _, l in ipairs(limits) do
  if l[2] > 0 and redis.call('INCR', l[1]) == 1 then redis.call('PEXPIRE', l[1], l[3]) end
end
return {0, ''}
"""

# A successful login: the (network, username) failures are forgotten; the network and the
# account get their attempt back (the account's failures from elsewhere stay counted).
REFUND = """
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 0
"""

# The user's public fields changed (a save that ends no session): every session shows them.
PROFILE = """
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. 's:' .. sid
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'prof', ARGV[2]) end
end
return 0
"""

# The user's row moved on while this session's snapshot was being written: show what was
# read since, unless a later change (PROFILE) already replaced the snapshot written.
PROFILE_IF = """
local session, written, fresh = KEYS[1], ARGV[1], ARGV[2]
if redis.call('HGET', session, 'prof') == written then
  redis.call('HSET', session, 'prof', fresh)
  return 1
end
return 0
"""

# The access check of a DPoP-bound token, still one command: the revocation read of the
# plain check, and the proof's jti claimed for as long as a proof of that age is accepted
# (SET NX: 0 when it was claimed before, a replay). KEYS: the session, the jti's key (same
# hash tag). ARGV: the revoked-jti field, the claim's lifetime in ms.
ACCESS_DPOP = """
local f = redis.call('HMGET', KEYS[1], 'uid', ARGV[1], 'prof')
local fresh = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2])
return {f[1], f[2], f[3], fresh and 1 or 0}
"""
