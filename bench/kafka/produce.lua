-- bench/kafka/produce.lua - publishes SWIT_BENCH_N messages of 64 bytes
-- with keys k0..k1023 to SWIT_BENCH_TOPIC with swit.publish from
-- on_start (bench_kafka times them at a raw consumer). A full client
-- queue (Lua publishes never wait) is retried.
local swit = require "swit"

local topic = os.getenv("SWIT_BENCH_TOPIC")
local n = tonumber(os.getenv("SWIT_BENCH_N"))
local payload = ("0123456789abcdef"):rep(4)
local opts = {}
for i = 0, 1023 do opts[i] = { key = "k" .. i } end

swit.on_start(function()
  local publish = swit.publish
  for i = 0, n - 1 do
    local o = opts[i % 1024]
    local ok, err = publish(topic, payload, o)
    while not ok do
      if not err:find("Local: Queue full", 1, true) then error(err) end
      ok, err = publish(topic, payload, o)
    end
  end
end)
