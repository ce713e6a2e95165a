-- sensors.lua - core NATS: every group is a queue group, so each group
-- gets every reading once (fan-out) while the workers of one group share
-- them. "alerts" publishes to a subject of its own; "dashboard" shows
-- the alerts. Core NATS delivers at most once to whoever is subscribed
-- when a message is published: see examples/jetstream for durability.
local swit = require "swit"

swit.on("sensors.temperature", { group = "alerts" }, function(msg)
  local r = msg:json()
  if r.celsius > 30 then
    assert(swit.publish("alerts.hot", ("%s at %.1f C"):format(r.room, r.celsius)))
  end
end)

swit.on("sensors.temperature", { group = "archive" }, function(msg)
  print("archive: " .. msg:json().room .. " " .. msg:json().celsius)
end)

swit.on("alerts.hot", { group = "dashboard" }, function(msg)
  print("dashboard: hot " .. msg:payload())
end)

swit.on_start(function()
  for _, r in ipairs({ { room = "lab", celsius = 21.5 }, { room = "server-room", celsius = 34 } }) do
    assert(swit.publish("sensors.temperature", r))
  end
end)
