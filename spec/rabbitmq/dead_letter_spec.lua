-- spec/rabbitmq/dead_letter_spec.lua - where dead letters go on RabbitMQ:
-- a handler's own dead_letter topic gets a parking queue that keeps them
-- when nobody subscribes to it, read back here through the management
-- API; and a dead letter no queue would take (parking queues off, nobody
-- subscribed) is never confirmed and lost: its original stays in its
-- queue until a queue is bound for the dead-letter topic.
package.path = "spec/rabbitmq/?.lua;" .. package.path
local R = require "rmq_support"

-- A handler of `topic` that rejects every message into `dead_letter`.
local function rejecting(topic, dead_letter)
  return ([[
local swit = require "swit"
io.stdout:setvbuf("line")
swit.on(%q, { dead_letter = %q }, function(msg)
  print("rejecting " .. msg:payload())
  return swit.reject("no thanks " .. msg:payload())
end)
swit.on_start(function() print("ready") end)
]]):format(topic, dead_letter)
end

local function by_payload(msgs)
  local t = {}
  for _, m in ipairs(msgs or {}) do t[m.payload] = m end
  return t
end

describe("rabbitmq dead letters #rabbitmq", function()
  it("keeps rejects to a custom dead_letter topic in its parking queue", function()
    local P = R.prefix()
    local topic, parking = P .. "orders", P .. "my.parking"
    local code, out, err = R.run(R.config(R.url, { name = "dl" }),
      rejecting(topic, parking) .. ([[
swit.on_start(function()
  for i = 1, 3 do assert(swit.publish(%q, "o" .. i, { headers = { ["x-mine"] = "v" .. i } })) end
end)
]]):format(topic))
    assert.equal(0, code, err)
    assert.equal(3, R.t.count(out, "^rejecting o%d$"), out)
    local _, list = R.ctl("list_queues name arguments")
    local line = list:match("dl%." .. P:gsub("%.", "%%.") .. "orders\t[^\n]*")
    assert.truthy(line, list)
    assert.matches('"x%-dead%-letter%-routing%-key","' .. parking:gsub("%.", "%%.") .. '"', line)
    local msgs = by_payload(R.get_messages("dl." .. parking, 10))
    R.delete_queue("dl." .. parking)
    for i = 1, 3 do
      local m = msgs["o" .. i]
      assert.truthy(m, "o" .. i .. " is not in the parking queue")
      assert.equal(parking, m.routing_key)
      local h = m.properties.headers
      assert.equal("no thanks o" .. i, h["x-swit-error"])
      assert.equal("1", tostring(h["x-swit-attempts"]))
      assert.equal(topic, h["x-swit-origin-topic"])
      assert.equal("v" .. i, h["x-mine"])
    end
  end)

  it("consumes a custom dead-letter topic from that parking queue in the same group", function()
    local P = R.prefix()
    local topic, parking = P .. "items", P .. "held"
    local code, out, err = R.run(R.config(R.url, { name = "dl" }),
      rejecting(topic, parking) .. ([[
swit.on(%q, function(msg)
  print(("held %%s from %%s"):format(msg:payload(), msg:header("x-swit-origin-topic")))
end)
swit.on_start(function() assert(swit.publish(%q, "i1")) end)
]]):format(parking, topic))
    assert.equal(0, code, err)
    assert.equal(1, R.t.count(out, "^held i1 from " .. topic:gsub("%.", "%%.") .. "$"), out)
    local msgs = R.get_messages("dl." .. parking, 10)
    R.delete_queue("dl." .. parking)
    assert.equal(0, #msgs, "the handler's queue is the parking queue")
  end)

  it("never confirms and drops a dead letter no queue takes", function()
    local P = R.prefix()
    local topic, dead = P .. "lonely", P .. "nowhere"
    local yaml = R.config(R.url, { name = "dlq-off",
      broker_config = "    config: {dead_letter_queues: false}" })
    local p = R.start_swit(yaml, rejecting(topic, dead))
    local ok, why = pcall(function()
      assert.truthy(R.wait_for(30, function() return p:stdout():find("ready", 1, true) end),
                    "swit did not start:\n" .. p:stderr())
      local code, _, err = R.amqp_publish(R.url, topic, "keep me", { "-p" })
      assert.equal(0, code, err)
      assert.truthy(R.wait_for(30, function()
        return p:stderr():find("no queue is bound for this routing key", 1, true)
      end), "no unroutable dead letter reported:\n" .. p:stderr())
    end)
    p:stop(30)
    assert.is_true(ok, why)
    assert.matches("cannot dead%-letter a message of '" .. topic:gsub("[%.%-]", "%%%0") ..
                   "' to '" .. dead:gsub("[%.%-]", "%%%0") .. "' %(will try again%)", p:stderr())
    assert.is_nil(p:stderr():find("DROPPED", 1, true))
    -- the original went back to its queue; once a queue is bound for the
    -- dead-letter topic, the next run parks it there
    local inspect = P .. "inspect"
    R.inspect_queue(inspect, dead)
    local code, out, err = R.run(yaml, rejecting(topic, dead))
    assert.equal(0, code, err)
    assert.matches("rejecting keep me", out)
    local msgs = R.get_messages(inspect, 10)
    R.delete_queue(inspect)
    R.delete_queue("dlq-off." .. topic)
    assert.equal(1, #msgs)
    assert.equal("keep me", msgs[1].payload)
    assert.equal("no thanks keep me", msgs[1].properties.headers["x-swit-error"])
    assert.equal(topic, msgs[1].properties.headers["x-swit-origin-topic"])
  end)
end)
