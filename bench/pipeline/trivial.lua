-- trivial.lua - bench handler (a): touches the message, does nothing else.
local swit = require "swit"
local seen = 0
swit.on("bench", { ordering = "none" }, function(msg)
  seen = seen + 1
end)
