-- bench/nats/handler.lua - the trivial handler bench_nats times: one
-- subscription on the subject the benchmark gives in SWIT_BENCH_SUBJECT;
-- it only counts (one FFI call into the benchmark program).
local ffi = require "ffi"
local swit = require "swit"

ffi.cdef "void bench_nats_seen(int n);"
local C = ffi.C

swit.on(os.getenv("SWIT_BENCH_SUBJECT"), { ordering = "none" }, function()
  C.bench_nats_seen(1)
end)
