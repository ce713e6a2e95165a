-- views.lua - Kafka's strengths in one flow: the user id is the key, so
-- one user's views stay in order in one partition; "counter" consumes
-- and produces in one Kafka transaction (exactly_once): its running
-- totals are published if and only if the views are committed, even if
-- the process dies in between. "report" prints the totals.
local swit = require "swit"

local totals = {}                       -- per worker state: fine, a key
                                        -- always reaches the same worker
swit.on("views", { group = "counter", exactly_once = true }, function(msg)
  local user = msg:key()
  totals[user] = (totals[user] or 0) + 1
  assert(swit.publish("views.totals", ("%s has %d view(s), last %s")
                      :format(user, totals[user], msg:payload()), { key = user }))
end)

swit.on("views.totals", { group = "report" }, function(msg)
  print("report: " .. msg:payload())
end)

swit.on_start(function()
  local views = { { "ada", "/home" }, { "grace", "/docs" }, { "ada", "/pricing" },
                  { "ada", "/signup" } }
  for _, v in ipairs(views) do
    assert(swit.publish("views", v[2], { key = v[1] }))
  end
end)
