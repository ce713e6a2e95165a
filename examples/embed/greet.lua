-- greet.lua - the Lua half of the embedding example: handles the
-- "greetings" that the C program publishes and answers on
-- "greetings.done", which a C handler counts.
local swit = require "swit"

swit.on("greetings", function(msg)
  local text = ("hello, %s (%s)"):format(msg:payload(), msg:header("lang") or "?")
  local ok, err = swit.publish("greetings.done", text, { key = msg:key() })
  if not ok then return swit.retry(err) end
end)
