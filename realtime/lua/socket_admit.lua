-- A viewer opens a socket: count it, and evict their oldest sockets past the cap (atomically, whichever
-- process each socket is on).
-- KEYS[1] {room:ID}:sockets:<viewer>  zset  "<opened>:<process>:<connection>" -> counts until (ms)
-- KEYS[2] {room:ID}:evicted           set   sockets evicted, until the process holding each closes it
-- ARGV[1] "<process>:<connection>"  ARGV[2] the cap  ARGV[3] how long an entry counts unrefreshed (ms)
-- Returns {the new member, the evicted members...}. "<opened>" is Redis's own clock (one clock for every
-- process), in microseconds, zero-padded: sorting members sorts them by opening.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = tonumber(ARGV[3])
local member = string.format('%010d%06d', tonumber(t[1]), tonumber(t[2])) .. ':' .. ARGV[1]
-- Sockets of a process that stopped refreshing them (killed) no longer count.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + stale, member)
redis.call('PEXPIRE', KEYS[1], stale)
local open = redis.call('ZRANGE', KEYS[1], 0, -1)
local over = #open - tonumber(ARGV[2])
local result = {member}
if over > 0 then
  table.sort(open)
  for i = 1, over do
    redis.call('ZREM', KEYS[1], open[i])
    redis.call('SADD', KEYS[2], open[i])
    result[#result + 1] = open[i]
  end
  redis.call('PEXPIRE', KEYS[2], stale)
end
return result
