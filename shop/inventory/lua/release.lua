-- Return a reservation's units to the sale: expiry, buyer cancel, a failed SQL write, or an orphan.
-- KEYS[1..7] as in reserve.lua: sale, orders, expiry, pending, buyers, idem, refunding
-- ARGV[1] order id  ARGV[2] mode: expire | cancel | abort | orphan  ARGV[3] now (ms)  ARGV[4] grace (ms)
-- 'abort' and 'orphan' also forget the idempotency key: the buyer was never told of this order, so a retry
-- must be free to reserve afresh. 'orphan' only releases a reservation that no request touched within the
-- grace period; 'abort' only one that no retry touched after the reservation.
-- Returns {released, stock_left} | {gone} | {not_reserved} | {busy}
local id, mode = ARGV[1], ARGV[2]
local raw = redis.call('HGET', KEYS[2], id)
if not raw then return {'gone'} end
local record = cjson.decode(raw)
if record.state ~= 'reserved' then return {'not_reserved'} end
local touched = redis.call('ZSCORE', KEYS[4], id)
if mode == 'orphan' then
  if touched and tonumber(touched) > tonumber(ARGV[3]) - tonumber(ARGV[4]) then return {'busy'} end
elseif mode == 'abort' then
  -- Only the one request that ever wrote this reservation may release it at once: if a retry touched it
  -- since, that retry's write may still land (the orphan sweeper releases it after the grace); if it is
  -- no longer pending, its row is committed.
  if not touched or tonumber(touched) ~= record.created then return {'busy'} end
end
local left = redis.call('HINCRBY', KEYS[1], 'stock_left', record.qty)
if redis.call('HINCRBY', KEYS[5], record.buyer, -record.qty) <= 0 then redis.call('HDEL', KEYS[5], record.buyer) end
redis.call('HDEL', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
if mode == 'abort' or mode == 'orphan' then redis.call('HDEL', KEYS[6], record.buyer .. '|' .. record.key) end
return {'released', tostring(left)}
