-- trivial.lua - bench handler (a): touches the message, counts it in the
-- benchmark's slot for this Lua state (checked after each run).
local ffi = require "ffi"
local swit = require "swit"
ffi.cdef "long *bench_pipeline_slot(void);"
local seen = ffi.C.bench_pipeline_slot()
swit.on("bench", { ordering = "none" }, function(msg)
  seen[0] = seen[0] + 1
end)
