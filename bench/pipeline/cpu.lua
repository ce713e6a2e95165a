-- cpu.lua - bench handler for worker scaling: ~1-2 us of arithmetic, then
-- counts the message (the benchmark checks the count).
local ffi = require "ffi"
local swit = require "swit"
ffi.cdef "long *bench_pipeline_slot(void);"
local seen = ffi.C.bench_pipeline_slot()
local acc = 0
swit.on("bench", { ordering = "none" }, function(msg)
  local x = msg:attempt()
  for i = 1, 400 do x = (x * 1103515245 + i) % 2147483648 end
  acc = acc + x
  seen[0] = seen[0] + 1
end)
