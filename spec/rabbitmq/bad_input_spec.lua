-- spec/rabbitmq/bad_input_spec.lua - what swit does with RabbitMQ when
-- things are wrong: refused credentials, an unreachable host, endpoints
-- of which only some work, a message over the size limit, settings the
-- broker refuses, and reconnect attempts running out.
package.path = "spec/rabbitmq/?.lua;" .. package.path
local R = require "rmq_support"

local handler = [[
local swit = require "swit"
swit.on("bad.input.none", function() end)
]]

describe("rabbitmq bad input #rabbitmq", function()
  it("reports refused credentials clearly and keeps retrying", function()
    local url = R.url:gsub("guest:guest@", "guest:wrong@")
    local code, _, err = R.run(R.config(url), handler, "1500ms")
    assert.equal(0, code, err)
    assert.matches("connecting %-> backing%-off: [^\n]*ACCESS_REFUSED", err)
    assert.matches("backing%-off %-> connecting", err) -- tried again
  end)

  it("reports an unreachable host and keeps retrying", function()
    local code, _, err = R.run(R.config("amqp://guest:guest@127.0.0.1:1"), handler, "1s")
    assert.equal(0, code, err)
    assert.matches("backing%-off: 127%.0%.0%.1:1: cannot connect: Connection refused", err)
    assert.matches("backing%-off %-> connecting", err)
  end)

  it("gives up after reconnect.max_attempts and says so", function()
    local code, _, err = R.run(R.config("amqp://guest:guest@127.0.0.1:1",
                                        { reconnect = ", max_attempts: 2" }), [[
local swit = require "swit"
swit.on_start(function()
  local ok, e = swit.publish("bad.input.x", "x")
  print(ok and "published" or "refused: " .. tostring(e))
end)
]], "1s")
    assert.equal(0, code, err)
    assert.matches("%-> failed: 127%.0%.0%.1:1: cannot connect", err)
  end)

  it("tries the endpoints in turn", function()
    local P = R.prefix()
    local code, out, err = R.run(R.config(nil, {
      endpoints = "'amqp://guest:guest@127.0.0.1:1', '" .. R.url .. "'" }), ([[
local swit = require "swit"
swit.on(%q, function(msg) print("got " .. msg:payload()) end)
swit.on_start(function() assert(swit.publish(%q, "1")) end)
]]):format(P .. "ep", P .. "ep"))
    assert.equal(0, code, err)
    assert.equal("got 1\n", out)
    local port = assert(R.url:match(":(%d+)$"))
    assert.truthy(err:find("connecting -> connected: 127.0.0.1:" .. port, 1, true), err)
  end)

  it("dead-letters a message over max_message_size with the reason", function()
    local P = R.prefix()
    local yaml = R.config(R.url, { name = "big", memory = "    memory: {max_message_size: 1KB}" })
    local script = ([[
local swit = require "swit"
swit.on(%q, function(msg) print("got " .. #msg:payload()) end)
]]):format(P .. "big")
    local code, _, err = R.run(yaml, script) -- declares the queues
    assert.equal(0, code, err)
    assert.equal(0, (R.amqp_publish(R.url, P .. "big", ("x"):rep(4096))))
    assert.equal(0, (R.amqp_publish(R.url, P .. "big", "small")))
    local out
    code, out, err = R.run(yaml, script)
    assert.equal(0, code, err)
    assert.equal("got 5\n", out)
    local msgs = R.get_messages("big." .. P .. "big.dlq", 5)
    assert.equal(1, #msgs)
    assert.equal(4096, #msgs[1].payload)
    local h = msgs[1].properties.headers
    assert.matches("max_message_size", h["x-swit-error"])
    assert.equal(P .. "big", h["x-swit-origin-topic"])
  end)

  it("refuses a setting it does not know, naming the key", function()
    local code, _, err = R.run(R.config(R.url, {
      broker_config = "    config: {queue_type: lazy}" }), handler)
    assert.equal(2, code)
    assert.matches("messaging%.broker%.config%.queue_type", err)
  end)

  it("surfaces the broker's reason when it refuses a queue's arguments", function()
    local P = R.prefix()
    local script = ([[
local swit = require "swit"
swit.on(%q, function() end)
]]):format(P .. "args")
    local code, _, err = R.run(R.config(R.url, { broker_config = "    config: {message_ttl: 1m}" }), script)
    assert.equal(0, code, err)
    code, _, err = R.run(R.config(R.url, { broker_config = "    config: {message_ttl: 2m}" }), script)
    assert.equal(2, code, err)                  -- the config conflicts with the queue
    assert.matches("PRECONDITION_FAILED %- inequivalent arg 'x%-message%-ttl'", err)
  end)
end)
