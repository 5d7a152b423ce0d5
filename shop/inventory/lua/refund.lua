-- A paid order was refunded: the buyer's limit is freed; with restock its units go back on sale.
-- KEYS[1..7] as in reserve.lua: sale, orders, expiry, pending, buyers, idem, refunding
-- ARGV[1] order id  ARGV[2] restock: 1 or 0
-- Returns {refunded, stock_left} | {gone} | {not_paid}
local id = ARGV[1]
redis.call('ZREM', KEYS[7], id)
local raw = redis.call('HGET', KEYS[2], id)
if not raw then return {'gone'} end
local record = cjson.decode(raw)
if record.state ~= 'paid' then return {'not_paid'} end
if redis.call('HINCRBY', KEYS[5], record.buyer, -record.qty) <= 0 then redis.call('HDEL', KEYS[5], record.buyer) end
redis.call('HDEL', KEYS[2], id)
local left
if ARGV[2] == '1' then
  left = redis.call('HINCRBY', KEYS[1], 'stock_left', record.qty)
else
  left = redis.call('HGET', KEYS[1], 'stock_left') or '0'
  -- Units written off stay counted in stock_total, never returned.
end
return {'refunded', tostring(left)}
