-- audit.lua - JetStream keeps what is published in a stream (swit
-- creates one per subject), and each group is a durable consumer that
-- acks explicitly: a group that was down reads on from where it stopped.
-- The same event published twice with one Nats-Msg-Id is handled once:
-- JetStream drops the second publish within its duplicate window, and the
-- subscriber's dedup (by that header) catches a copy that gets past it.
local swit = require "swit"

swit.on("audit.login", { group = "security" }, function(msg)
  print(("security: %s logged in from %s"):format(msg:json().user, msg:json().ip))
end)

swit.on_start(function()
  local events = { { id = "e1", user = "ada", ip = "10.0.0.7" },
                   { id = "e2", user = "grace", ip = "10.0.0.9" },
                   { id = "e1", user = "ada", ip = "10.0.0.7" } }   -- a retry of e1
  for _, e in ipairs(events) do
    assert(swit.publish("audit.login", e, { headers = { ["Nats-Msg-Id"] = e.id } }))
  end
end)
