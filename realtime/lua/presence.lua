-- One process reports who is connected to a room; returns the room's honest numbers across processes.
-- KEYS[1] {room:ID}:presence  zset  viewer id -> last seen (ms) on any process
-- KEYS[2] {room:ID}:seen      set   every viewer who ever had a live connection (unique viewers)
-- KEYS[3] {room:ID}:stats     hash  peak
-- KEYS[4] {room:ID}:conns     hash  process id -> "<sockets>:<reported at ms>"
-- ARGV[1] now (ms)  ARGV[2] freshness (ms)  ARGV[3] process id  ARGV[4] this process's sockets in the room
-- ARGV[5..] the viewers connected to this process
-- Returns {viewers_now, viewers_peak, viewers_unique, connections_now}
local now, fresh = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], now, ARGV[i])
  redis.call('SADD', KEYS[2], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - fresh)
local viewers = redis.call('ZCARD', KEYS[1])
local peak = tonumber(redis.call('HGET', KEYS[3], 'peak') or '0')
if viewers > peak then
  peak = viewers
  redis.call('HSET', KEYS[3], 'peak', peak)
end
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4] .. ':' .. ARGV[1])
local sockets = 0
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
  local n, at = string.match(all[i + 1], '^(%d+):(%d+)$')
  if tonumber(at) > now - fresh then sockets = sockets + tonumber(n) else redis.call('HDEL', KEYS[4], all[i]) end
end
return {viewers, peak, redis.call('SCARD', KEYS[2]), sockets}
