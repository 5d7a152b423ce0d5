-- Put more units on sale (加货), atomically with what is being sold.
-- KEYS[1] {card:ID}:sale
-- ARGV[1] units to add (> 0)
-- Returns {ok, stock_total, stock_left} | {no_sale}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_sale'} end
local n = tonumber(ARGV[1])
local total = redis.call('HINCRBY', KEYS[1], 'stock_total', n)
local left = redis.call('HINCRBY', KEYS[1], 'stock_left', n)
return {'ok', tostring(total), tostring(left)}
