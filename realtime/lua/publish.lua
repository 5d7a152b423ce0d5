-- Append one event to a room's stream with the next seq, atomically; optionally rate-gated and deduplicated.
-- KEYS[1] {room:ID}:seq     string  the last seq given out
-- KEYS[2] {room:ID}:events  stream  id <seq>-0, field f = the frame's JSON text; trimmed to about ARGV[3]
-- KEYS[3] {room:ID}:epoch   string  changes only when Redis lost the room (clients then need a snapshot)
-- KEYS[4] {room:ID}:gate    hash    t:<gate> last publish (ms), v:<gate> last value published
-- ARGV[1] event type  ARGV[2] JSON object of the other fields ('{}' for none)  ARGV[3] history length
-- ARGV[4] now (ms)  ARGV[5] gate name ('' for none)  ARGV[6] min interval of the gate (ms)
-- ARGV[7] value to deduplicate on ('' for none)  ARGV[8] epoch to take if the room has none
-- Returns {published, seq, epoch} | {later, ms until the gate opens, epoch} | {same, 0, epoch}
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[8]
  redis.call('SET', KEYS[3], epoch)
end
local gate = ARGV[5]
if gate ~= '' then
  if ARGV[7] ~= '' and redis.call('HGET', KEYS[4], 'v:' .. gate) == ARGV[7] then
    return {'same', '0', epoch}
  end
  local last = tonumber(redis.call('HGET', KEYS[4], 't:' .. gate) or '0')
  local wait = tonumber(ARGV[6]) - (tonumber(ARGV[4]) - last)
  if wait > 0 then return {'later', tostring(wait), epoch} end
  redis.call('HSET', KEYS[4], 't:' .. gate, ARGV[4])
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[4], 'v:' .. gate, ARGV[7]) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- The counter is gone but the stream may not be: go on after its last entry.
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #last > 0 then
    redis.call('SET', KEYS[1], string.match(last[1][1], '^(%d+)'))
  end
end
local seq = redis.call('INCR', KEYS[1])
local frame = '{"type":"' .. ARGV[1] .. '","seq":' .. seq
if ARGV[2] == '{}' then frame = frame .. '}' else frame = frame .. ',' .. string.sub(ARGV[2], 2) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
return {'published', tostring(seq), epoch}
