-- Delete a room's owner record only if it is still the given one (compare-and-delete): a stopping ingest
-- must not delete the record of the ingest that replaced it, wherever that one runs.
-- KEYS[1] the room's owner record
-- ARGV[1] the record to delete (exact text)
-- Returns 1 (deleted) | 0 (absent, or another record)
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
