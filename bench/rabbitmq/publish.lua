-- bench/rabbitmq/publish.lua - publishes SWIT_BENCH_MESSAGES messages to
-- SWIT_BENCH_TOPIC with swit.publish from on_start; when the adapter's
-- publish buffer is full (confirms not back yet) it waits 100 us and
-- tries again. Tells the benchmark when the last one was accepted.
local ffi = require "ffi"
local swit = require "swit"

ffi.cdef [[
void bench_rabbitmq_published(void);
int usleep(unsigned int usec);
]]
local C = ffi.C
local topic = os.getenv("SWIT_BENCH_TOPIC")
local n = tonumber(os.getenv("SWIT_BENCH_MESSAGES"))
local payload = "0123456789abcdef"

swit.on_start(function()
  local i = 0
  while i < n do
    if swit.publish(topic, payload) then
      i = i + 1
    else
      C.usleep(100)
    end
  end
  C.bench_rabbitmq_published()
end)
