-- cpu.lua - bench handler for worker scaling: ~1-2 us of arithmetic.
local swit = require "swit"
local acc = 0
swit.on("bench", { ordering = "none" }, function(msg)
  local x = msg:attempt()
  for i = 1, 400 do x = (x * 1103515245 + i) % 2147483648 end
  acc = acc + x
end)
