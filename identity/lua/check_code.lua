-- Check a sign-in code for one phone, atomically: the lock, the code, the count of wrong guesses.
-- KEYS[1] {signin:SCOPE:PHONE}:code   string  HMAC of the code sent (expires with the code)
-- KEYS[2] {signin:SCOPE:PHONE}:wrong  string  wrong guesses so far (expires with the lock window)
-- KEYS[3] {signin:SCOPE:PHONE}:lock   string  present while the phone is locked
-- ARGV[1] HMAC of the guess  ARGV[2] wrong guesses that lock  ARGV[3] lock (ms)
-- Returns {'ok'} | {'locked', ms left} | {'no_code'} | {'wrong', guesses left}
local lock_ttl = redis.call('PTTL', KEYS[3])
if lock_ttl > 0 then return {'locked', lock_ttl} end
local sent = redis.call('GET', KEYS[1])
if not sent then return {'no_code'} end
if sent == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'ok'}
end
local wrong = redis.call('INCR', KEYS[2])
if wrong == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
local left = tonumber(ARGV[2]) - wrong
if left <= 0 then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1], KEYS[2])
end
return {'wrong', math.max(left, 0)}
