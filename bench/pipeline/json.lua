-- json.lua - bench handler (c): decodes a ~200-byte JSON payload.
local swit = require "swit"
local seen = 0
swit.on("bench", { ordering = "none" }, function(msg)
  local order = msg:json()
  if order.id then seen = seen + #order.items end
end)
