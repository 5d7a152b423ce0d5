-- Hold an order's units as paid. If its reservation is still here, it is confirmed (no longer expires).
-- If it was released (a late payment), the units are taken again if the sale still has them and the
-- buyer's limit allows, atomically. Idempotent per order id.
-- KEYS[1..7] as in reserve.lua: sale, orders, expiry, pending, buyers, idem, refunding
-- ARGV[1] order id  ARGV[2] buyer id  ARGV[3] quantity  ARGV[4] unit price  ARGV[5] idempotency key
-- ARGV[6] now (ms)  ARGV[7] referrer id ('' for none)
-- Returns {paid, stock_left} | {already_paid} | {no_sale} | {limit_exceeded} | {sold_out}
local id, buyer, qty = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('HGET', KEYS[2], id)
if raw then
  local record = cjson.decode(raw)
  if record.state == 'paid' then return {'already_paid'} end
  record.state = 'paid'
  redis.call('HSET', KEYS[2], id, cjson.encode(record))
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  return {'paid', redis.call('HGET', KEYS[1], 'stock_left') or '0'}
end
local sale = redis.call('HMGET', KEYS[1], 'stock_left', 'per_user_limit')
if not sale[1] then return {'no_sale'} end
local held = tonumber(redis.call('HGET', KEYS[5], buyer) or '0')
if held + qty > tonumber(sale[2]) then return {'limit_exceeded'} end
if tonumber(sale[1]) < qty then return {'sold_out'} end
local left = redis.call('HINCRBY', KEYS[1], 'stock_left', -qty)
redis.call('HINCRBY', KEYS[5], buyer, qty)
redis.call('HSET', KEYS[2], id, cjson.encode({buyer = buyer, qty = qty, price = tonumber(ARGV[4]),
  expires = tonumber(ARGV[6]), key = ARGV[5], created = tonumber(ARGV[6]), state = 'paid', ref = ARGV[7]}))
return {'paid', tostring(left)}
