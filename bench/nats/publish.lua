-- bench/nats/publish.lua - publishes SWIT_BENCH_N messages of 16 bytes to
-- SWIT_BENCH_SUBJECT with swit.publish from on_start (bench_nats times
-- them at a raw subscriber).
local swit = require "swit"

local subject = os.getenv("SWIT_BENCH_SUBJECT")
local n = tonumber(os.getenv("SWIT_BENCH_N"))

swit.on_start(function()
  local publish = swit.publish
  for _ = 1, n do
    local ok, err = publish(subject, "0123456789abcdef")
    if not ok then error(err) end
  end
end)
