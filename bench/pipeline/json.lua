-- json.lua - bench handler (c): decodes a ~200-byte JSON payload and
-- counts the message if it decoded (the benchmark checks the count).
local ffi = require "ffi"
local swit = require "swit"
ffi.cdef "long *bench_pipeline_slot(void);"
local seen = ffi.C.bench_pipeline_slot()
swit.on("bench", { ordering = "none" }, function(msg)
  local order = msg:json()
  if order.id and #order.items == 2 then seen[0] = seen[0] + 1 end
end)
