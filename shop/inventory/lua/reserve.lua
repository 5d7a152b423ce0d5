-- Reserve units of one card for one buyer, atomically: idempotency, sale window, per-buyer limit, stock.
-- KEYS[1] {card:ID}:sale     hash  status, room_id, closes_at, stock_total, stock_left, per_user_limit,
--                                  price, reserve_ms, fenced_until
-- KEYS[2] {card:ID}:orders   hash  order id -> JSON record {buyer, qty, price, expires, key, created, state, ref}
-- KEYS[3] {card:ID}:expiry   zset  reserved order id -> expires (ms)
-- KEYS[4] {card:ID}:pending  zset  order id -> last touched (ms), until its SQL row is known to be committed
-- KEYS[5] {card:ID}:buyers   hash  buyer id -> units held (reserved + paid)
-- KEYS[6] {card:ID}:idem     hash  buyer|idempotency key -> order id|quantity
-- KEYS[7] {card:ID}:refunding zset paid order id -> when its refund began, until Redis has applied it
-- KEYS[8] {card:ID}:rate:b:BUYER  zset  this buyer's attempts on this card -> when (ms), the rate gate's
-- KEYS[9] {card:ID}:rate:ip:ADDR  zset  the same, per client address
-- ARGV[1] buyer id  ARGV[2] idempotency key  ARGV[3] quantity  ARGV[4] now (ms)  ARGV[5] new order id
-- ARGV[6] room id of the buyer's token  ARGV[7] referrer id ('' for none)
-- ARGV[8] attempts per buyer  ARGV[9] in this window (ms)  ARGV[10] attempts per address  ARGV[11] window (ms)
-- Returns {outcome, ...}: ok id record stock_left | duplicate id record-or-'' | idempotency_mismatch id |
--   no_sale | wrong_room | busy | rate_limited wait_ms | sale_not_open | limit_exceeded held |
--   sold_out stock_left
local buyer, key, qty, now, new_id = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]

local sale = redis.call('HMGET', KEYS[1], 'status', 'room_id', 'closes_at', 'stock_left', 'per_user_limit',
  'price', 'reserve_ms', 'fenced_until')
if not sale[1] then return {'no_sale'} end
if sale[2] ~= ARGV[6] then return {'wrong_room'} end

local idem_field = buyer .. '|' .. key
local seen = redis.call('HGET', KEYS[6], idem_field)
if seen then
  local sep = string.find(seen, '|', 1, true)
  local id = string.sub(seen, 1, sep - 1)
  if tonumber(string.sub(seen, sep + 1)) ~= qty then return {'idempotency_mismatch', id} end
  local record = redis.call('HGET', KEYS[2], id)
  -- A retry touches a not-yet-committed reservation so the orphan sweeper leaves it to this retry; the
  -- touch is always later than the one before (release.lua's 'abort' tells the first writer by it).
  local touched = redis.call('ZSCORE', KEYS[4], id)
  if record and touched then redis.call('ZADD', KEYS[4], math.max(now, tonumber(touched) + 1), id) end
  return {'duplicate', id, record or ''}
end

if tonumber(sale[8] or '0') > now then return {'busy'} end

-- The rate gate: attempts (a replay is not one) per buyer and per address on this card, in a moving window;
-- a refused attempt is not counted. Here and not in a call of its own: a second round trip cost the buy
-- path a quarter of its throughput (docs/benchmarks.md).
local function wait_ms(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
local buyer_window, address_window = tonumber(ARGV[9]), tonumber(ARGV[11])
local wait = math.max(wait_ms(KEYS[8], tonumber(ARGV[8]), buyer_window),
  wait_ms(KEYS[9], tonumber(ARGV[10]), address_window))
if wait > 0 then return {'rate_limited', tostring(wait)} end
redis.call('ZADD', KEYS[8], now, new_id)
redis.call('PEXPIRE', KEYS[8], buyer_window)
redis.call('ZADD', KEYS[9], now, new_id)
redis.call('PEXPIRE', KEYS[9], address_window)
if sale[1] ~= 'open' then return {'sale_not_open'} end
local closes_at = tonumber(sale[3] or '0')
if closes_at > 0 and now >= closes_at then return {'sale_not_open'} end

local held = tonumber(redis.call('HGET', KEYS[5], buyer) or '0')
if held + qty > tonumber(sale[5]) then return {'limit_exceeded', tostring(held)} end
local left = tonumber(sale[4])
if left < qty then return {'sold_out', tostring(left)} end

left = redis.call('HINCRBY', KEYS[1], 'stock_left', -qty)
redis.call('HINCRBY', KEYS[5], buyer, qty)
local expires = now + tonumber(sale[7])
local record = cjson.encode({buyer = buyer, qty = qty, price = tonumber(sale[6]), expires = expires, key = key,
  created = now, state = 'reserved', ref = ARGV[7]})
redis.call('HSET', KEYS[2], new_id, record)
redis.call('ZADD', KEYS[3], expires, new_id)
redis.call('ZADD', KEYS[4], now, new_id)
redis.call('HSET', KEYS[6], idem_field, new_id .. '|' .. qty)
return {'ok', new_id, record, tostring(left)}
