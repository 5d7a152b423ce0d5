-- Change the rules of a sale that exists: status, window, price, per-buyer limit. Never touches stock.
-- KEYS[1] {card:ID}:sale
-- ARGV: field, value pairs (status, closes_at, price, per_user_limit, reserve_ms)
-- Returns {ok} | {no_sale}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_sale'} end
redis.call('HSET', KEYS[1], unpack(ARGV))
return {'ok'}
