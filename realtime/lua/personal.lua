-- Append personal frames (each for one viewer's sockets) to a room's personal stream, in one call.
-- KEYS[1] {room:ID}:personal  stream  fields: to = the viewer id, f = the frame's JSON text
-- ARGV[1] history length (the stream is trimmed to about that)  ARGV[2], ARGV[3], ...: viewer id, frame
-- Returns the number of frames appended.
local n = 0
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'to', ARGV[i], 'f', ARGV[i + 1])
  n = n + 1
end
return n
