-- The owner of a room's ingest keeps its record alive: refresh it when it is still this ingest's, write it
-- again when it expired or was lost (Redis restarted, a stall outlived the TTL), and report a record that
-- names another ingest: another worker took the room's video over, and this ingest must stop.
-- KEYS[1] the room's owner record
-- ARGV[1] this ingest's record (exact text)  ARGV[2] TTL (ms)
-- Returns 1 (held) | 0 (another ingest holds the room)
local current = redis.call('GET', KEYS[1])
if current ~= false and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
