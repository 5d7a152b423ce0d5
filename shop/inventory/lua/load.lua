-- Rebuild one card's sale state from SQL, the truth (reconcile). Replaces all six keys atomically and lifts
-- the fence. A reservation in Redis that SQL does not know yet but that was touched within the grace period
-- is an order still being written: it is kept and its units stay out of stock. Older unknown ones are
-- orphans and are dropped (their units return).
-- KEYS[1..7] as in reserve.lua: sale, orders, expiry, pending, buyers, idem, refunding
-- ARGV[1] now (ms)  ARGV[2] grace (ms)
-- ARGV[3] JSON sale: {status, room_id, closes_at, stock_total, per_user_limit, price, reserve_ms}
-- ARGV[4] JSON array of live orders from SQL: [{id, buyer, qty, price, expires, key, created, state, ref}]
--         (state 'reserved' and not expired, or 'paid')
-- ARGV[5] JSON array of [buyer|key, id|qty] for every order of the card (idempotency replay)
-- ARGV[6] units written off (refunded without restock)
-- Returns {stock_left_before or '', stock_left_after, kept_in_flight, dropped_orphans, unclamped_left}
-- (unclamped_left < 0 means SQL itself holds more units than the card ever had: reported, never hidden)
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local sale = cjson.decode(ARGV[3])
local orders = cjson.decode(ARGV[4])
local idem = cjson.decode(ARGV[5])
local before = redis.call('HGET', KEYS[1], 'stock_left') or ''

local known = {}
for _, o in ipairs(orders) do known[o.id] = true end
local in_flight = {}
local dropped = 0
local current = redis.call('HGETALL', KEYS[2])
for i = 1, #current, 2 do
  local id = current[i]
  if not known[id] then
    local touched = redis.call('ZSCORE', KEYS[4], id)
    local record = cjson.decode(current[i + 1])
    if touched and tonumber(touched) > now - grace and record.state == 'reserved' then
      record.id = id
      record.touched = tonumber(touched)
      table.insert(in_flight, record)
    else
      dropped = dropped + 1
    end
  end
end

redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
local held_total = tonumber(ARGV[6])
local function hold(o, touched)
  local record = {buyer = o.buyer, qty = o.qty, price = o.price, expires = o.expires, key = o.key,
    created = o.created, state = o.state, ref = o.ref}
  redis.call('HSET', KEYS[2], o.id, cjson.encode(record))
  redis.call('HINCRBY', KEYS[5], o.buyer, o.qty)
  if o.state == 'reserved' then redis.call('ZADD', KEYS[3], o.expires, o.id) end
  if touched then redis.call('ZADD', KEYS[4], touched, o.id) end
  held_total = held_total + o.qty
end
for _, o in ipairs(orders) do hold(o, nil) end
for _, o in ipairs(in_flight) do
  hold(o, o.touched)
  redis.call('HSET', KEYS[6], o.buyer .. '|' .. o.key, o.id .. '|' .. o.qty)
end
for _, pair in ipairs(idem) do redis.call('HSET', KEYS[6], pair[1], pair[2]) end

local unclamped = sale.stock_total - held_total
local left = unclamped
if left < 0 then left = 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', sale.status, 'room_id', sale.room_id, 'closes_at', sale.closes_at,
  'stock_total', sale.stock_total, 'stock_left', left, 'per_user_limit', sale.per_user_limit,
  'price', sale.price, 'reserve_ms', sale.reserve_ms, 'fenced_until', 0)
return {before, tostring(left), tostring(#in_flight), tostring(dropped), tostring(unclamped)}
