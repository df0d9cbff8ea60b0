-- GCRA (generic cell rate algorithm) for one key, taking up to `want`
-- tokens at once. Runs atomically inside Redis; the clock is Redis's own,
-- so every instance sharing the key agrees on "now".
--
-- KEYS[1]  the key; its value is the theoretical arrival time (TAT), in
--          microseconds since the Unix epoch
-- ARGV[1]  the emission interval (microseconds per token)
-- ARGV[2]  the burst (tokens the bucket holds)
-- ARGV[3]  the tokens wanted (1 for a single request, more for a lease)
--
-- Returns { granted, wait }: `granted` tokens (0 ..= want, fewer when the
-- bucket holds fewer) and, when none, the microseconds until `want` are
-- back (so that a busy client's instances ask again once per lease, not
-- once per token).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])

local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then
  tat = now
end

-- The bucket is full when tat == now; each token moves tat one interval on,
-- up to burst intervals ahead of now.
local available = math.floor((now + burst * interval - tat) / interval)
local granted = math.min(want, available)
if granted < 1 then
  return { 0, math.ceil(tat + want * interval - burst * interval - now) }
end

tat = tat + granted * interval
-- '%.0f' keeps every digit (tostring would switch to an exponent); the key
-- expires once the bucket is full again, when it is no different from none.
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return { granted, 0 }
