-- bench/kafka/consume.lua - the trivial handler bench_kafka times: one
-- subscription on SWIT_BENCH_TOPIC in group SWIT_BENCH_GROUP (ordering by
-- key, the default); it only counts (one FFI call into the benchmark).
local ffi = require "ffi"
local swit = require "swit"

ffi.cdef "void bench_kafka_seen(int n);"
local C = ffi.C

swit.on(os.getenv("SWIT_BENCH_TOPIC"), { group = os.getenv("SWIT_BENCH_GROUP") },
        function() C.bench_kafka_seen(1) end)
