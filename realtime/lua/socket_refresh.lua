-- One process's tick for one room: its sockets there still count (for another stale period), except those
-- another process evicted, which it is told of so that it closes them.
-- KEYS[1] {room:ID}:evicted  set  sockets evicted, until the process holding each closes it
-- KEYS[2..] {room:ID}:sockets:<viewer>  zset  of each viewer with a socket in this process
-- ARGV[1] how long an entry counts unrefreshed (ms); then, per viewer key in order: the count n of this
-- process's sockets of that viewer, and those n members
-- Returns the members evicted. A member that aged out meanwhile (the process stalled) is put back; the
-- viewer's next socket evicts what is then past the cap.
local t = redis.call('TIME')
local stale = tonumber(ARGV[1])
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + stale
local evicted = {}
local a = 2
for k = 2, #KEYS do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    local member = ARGV[a]
    a = a + 1
    if redis.call('SREM', KEYS[1], member) == 1 then
      evicted[#evicted + 1] = member
    else
      redis.call('ZADD', KEYS[k], until_ms, member)
    end
  end
  redis.call('PEXPIRE', KEYS[k], stale)
end
return evicted
