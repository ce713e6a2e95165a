-- spec/kafka/bad_input_spec.lua - what a user can get wrong with Kafka:
-- librdkafka properties (refused at start with librdkafka's own text,
-- exit 2), an unreachable cluster (a clear error and a retrying state,
-- no crash), messages over max_message_size (dead-lettered with the
-- reason) or over message.max.bytes (refused at publish), and
-- exactly_once on a broker without transactions.
local k = require "spec.kafka.kafka_support"

local quiet = [[
local swit = require "swit"
swit.on_start(function() end)
]]

describe("kafka #kafka bad input", function()
  it("exits 2 at start with librdkafka's text for a bad property", function()
    local cases = {
      { "no.such.property: 1",
        'messaging.broker.config.no.such.property: No such configuration property: "no.such.property"' },
      { "linger.ms: soon",
        'messaging.broker.config.linger.ms: Invalid value for configuration property "queue.buffering.max.ms"' },
      { "producer.compression.codec: zip",
        'messaging.broker.config.producer.compression.codec: Invalid value "zip" for configuration property '
          .. '"compression.codec"' },
      { "consumer.fetch.wait.max.ms: -5",
        'messaging.broker.config.consumer.fetch.wait.max.ms: Configuration property "fetch.wait.max.ms" '
          .. 'value -5 is outside allowed range' },
      { "group.id: mine", "messaging.broker.config.group.id: swit sets the group" },
      { "enable.auto.commit: true", "messaging.broker.config.enable.auto.commit: swit commits offsets itself" },
      { "subscribe_timeout: forever", "messaging.broker.config.subscribe_timeout: expected a duration" },
    }
    for _, c in ipairs(cases) do
      local yaml = k.config("127.0.0.1:1", { broker = "      " .. c[1] .. "\n" })
      local code, out, err = k.run(yaml, quiet)
      assert.equal(2, code, c[1] .. ": " .. err)
      assert.equal("", out)
      assert.truthy(err:find("swit.yaml:%d+:%d+: " .. c[2]:gsub("%p", "%%%0")), err)
    end
  end)

  it("swit check reports a bad property the same way, connecting nowhere", function()
    local t = require "swit_run"
    local dir = t.dir({ ["swit.yaml"] = k.config("127.0.0.1:1", { broker = "      linger.ms: soon\n" }),
                        ["s.lua"] = quiet })
    local code, out, err = t.swit({ "check", dir .. "/swit.yaml" })
    assert.equal(2, code, err)
    assert.equal("", out)
    assert.matches('swit.yaml:%d+:%d+: messaging.broker.config.linger.ms: Invalid value for '
                   .. 'configuration property "queue.buffering.max.ms"', err)
  end)

  it("exits 2 when a conflict between properties is found at connect", function()
    local yaml = k.config("127.0.0.1:1", { broker = "      enable.idempotence: true\n      acks: 1\n" })
    local code, _, err = k.run(yaml, quiet)
    assert.equal(2, code, err)
    assert.matches("messaging.broker.config: .*acks", err)
  end)

  it("exits 2 when endpoints name no bootstrap server", function()
    local yaml = k.config("x"):gsub('endpoints: %["x"%]', "endpoints: []")
    local code, _, err = k.run(yaml, quiet)
    assert.equal(2, code, err)
    assert.matches("messaging.broker.endpoints: Kafka needs at least one bootstrap server", err)
  end)

  it("refuses exactly_once on a broker without transactions (memory)", function()
    local t = k.t
    local script = [[
local swit = require "swit"
swit.on("t", { exactly_once = true }, function() end)
]]
    local code, _, err = t.run_scripts(t.config({ "s.lua" }), { ["s.lua"] = script })
    assert.equal(2, code, err)
    assert.matches("subscribe 't' %(group 'spec'%): exactly_once needs transactions, "
                   .. "and broker 'memory' has none", err)
    -- the publisher key has the same effect
    local yaml = t.config({ "s.lua" }):gsub("  subscribers:",
      "  publishers:\n    default: {transactional: true}\n  subscribers:", 1)
    code, _, err = t.run_scripts(yaml, { ["s.lua"] = [[
local swit = require "swit"
swit.on("t", function() end)
]] })
    assert.equal(2, code, err)
    assert.matches("exactly_once needs transactions, and broker 'memory' has none", err)
  end)

  it("keeps running and retrying when the cluster is unreachable", function()
    local yaml = k.config("127.0.0.1:1", {
      reconnect = "{delay: 50ms, max_delay: 100ms, max_attempts: 3}",
      broker = "      subscribe_timeout: 1s\n" })
    local p = k.spawn(yaml, [[
local swit = require "swit"
swit.on("nowhere", function() end)
swit.every(100, function() print("alive") end)
]])
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q)
      return q:err():find("-> failed", 1, true) and q:out():find("alive", 1, true)
    end, 30), p:err())
    local err = p:err()
    assert.matches("broker kafka: connecting %-> backing%-off: attempt 1 failed: [^\n]*127%.0%.0%.1:1", err)
    assert.matches("reconnect.max_attempts reached", err)
    assert.matches("no assignment for 'nowhere' after subscribe_timeout", err)
    assert.is_nil(p:code(), "swit exited")
    p:signal("TERM")
    assert.equal(0, p:finish(60), p:err())
    p:clean()
  end)

  it("dead-letters a message over max_message_size with the reason", function()
    local bs, P = k.bootstrap(), k.prefix("o")
    local code, err = k.produce(bs, P .. "in", { "big\t" .. ("x"):rep(4000), "small\tok" })
    assert.equal(0, code, err)
    local out
    code, out, err = k.run(k.config(bs, {
      resources = "    memory: {max_message_size: 1KB}\n",
      broker = "      producer.message.max.bytes: 100000\n" }), ([[
local swit = require "swit"
swit.on(%q, { group = %q }, function(msg) print("handled " .. msg:key()) end)
swit.on_start(function()
  local ok, e = swit.publish(%q, ("y"):rep(200000))
  print("publish " .. tostring(ok) .. " " .. tostring(e))
end)
]]):format(P .. "in", P .. "g", P .. "in"))
    assert.equal(0, code, err)
    assert.matches("handled small", out)
    assert.is_nil(out:find("handled big", 1, true))
    local dlq
    code, dlq, err = k.consume(bs, P .. "in.dlq", "%k %S %h\n", 1)
    assert.equal(0, code, err)
    assert.matches("^big 4000 [^\n]*x%-swit%-error=message of 4003 bytes %(payload%+key%+headers%) exceeds messaging%.resources%.memory%.max_message_size %(1024%)", dlq)
    -- the host refuses a publish over max_message_size, as on every broker
    assert.matches("publish nil publish to '[^']+': message 1 of 1: message of 200000 "
                   .. "bytes %(payload%+key%+headers%) exceeds messaging%.resources%.memory%."
                   .. "max_message_size %(1024%); nothing was published", out)
  end)
end)
