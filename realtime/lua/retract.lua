-- Retract (delete) one chat line from a room's history, atomically: replay leaves it out from then on.
-- KEYS[1] {room:ID}:events     stream  id <seq>-0, field f = the frame's JSON text (as publish.lua wrote it)
-- KEYS[2] {room:ID}:retracted  zset    the retracted seqs still in the stream, score = the seq
-- ARGV[1] the seq of the line
-- Returns 1 when the line was retracted now; 0 (and nothing changes) when the stream holds no event with
-- that seq, the event is not a chat line, or it was retracted already.
local seq = ARGV[1]
local entry = redis.call('XRANGE', KEYS[1], seq .. '-0', seq .. '-0')
if #entry == 0 then return 0 end
local fields, frame = entry[1][2], nil
for i = 1, #fields, 2 do
  if fields[i] == 'f' then frame = fields[i + 1] end
end
-- publish.lua writes the type first: '{"type":"<kind>","seq":...'
local head = '{"type":"chat",'
if not frame or string.sub(frame, 1, #head) ~= head then return 0 end
if redis.call('ZSCORE', KEYS[2], seq) then return 0 end
redis.call('ZADD', KEYS[2], seq, seq)
-- Keep only the seqs the stream still holds: the set never outgrows the history (nor outlives a room
-- Redis lost and numbered again).
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.match(first[1][1], '^(%d+)'))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '(' .. string.match(last[1][1], '^(%d+)'), '+inf')
return 1
