-- One process reports who is connected to a room; returns the room's live numbers across processes.
-- KEYS[1] {room:ID}:presence  zset  viewer id -> last seen (ms) on any process
-- KEYS[2] {room:ID}:conns     hash  process id -> "<sockets>:<reported at ms>"
-- ARGV[1] now (ms)  ARGV[2] freshness (ms)  ARGV[3] process id  ARGV[4] this process's sockets in the room
-- ARGV[5..] the viewers connected to this process
-- Returns {viewers_now, connections_now}. (Unique viewers and the peak are kept in SQL.)
local now, fresh = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], now, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - fresh)
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4] .. ':' .. ARGV[1])
local sockets = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local n, at = string.match(all[i + 1], '^(%d+):(%d+)$')
  if tonumber(at) > now - fresh then sockets = sockets + tonumber(n) else redis.call('HDEL', KEYS[2], all[i]) end
end
return {redis.call('ZCARD', KEYS[1]), sockets}
