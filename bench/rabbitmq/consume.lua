-- bench/rabbitmq/consume.lua - the trivial handler bench_rabbitmq times:
-- one subscription on the topic the benchmark gives in SWIT_BENCH_TOPIC;
-- it only counts (one FFI call into the benchmark program).
local ffi = require "ffi"
local swit = require "swit"

ffi.cdef "void bench_rabbitmq_seen(int n);"
local C = ffi.C

swit.on(os.getenv("SWIT_BENCH_TOPIC"), { ordering = "none" }, function()
  C.bench_rabbitmq_seen(1)
end)
