-- Pause new reservations of a sale until a rebuild (load.lua) finishes, or until the fence times out.
-- KEYS[1] {card:ID}:sale
-- ARGV[1] fenced until (ms)
-- Returns {ok}
redis.call('HSET', KEYS[1], 'fenced_until', ARGV[1])
return {'ok'}
