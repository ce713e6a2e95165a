-- spec/rabbitmq/interop_spec.lua - swit and independent AMQP clients on
-- the same RabbitMQ: amqp-publish feeds swit handlers, amqp-consume reads
-- what swit publishes, and the management API (the broker itself) shows
-- that headers, key and properties arrive intact.
package.path = "spec/rabbitmq/?.lua;" .. package.path
local R = require "rmq_support"
local t = R.t

describe("rabbitmq interop #rabbitmq", function()
  it("hands messages from amqp-publish to swit handlers with headers and key", function()
    local P = R.prefix()
    local yaml = R.config(R.url, { name = "interop" })
    local script = ([[
local swit = require "swit"
swit.on(%q, function(msg)
  print(("got %%s key=%%s x-a=%%s ct=%%s"):format(msg:payload(), msg:key(),
        msg:header("x-a"), msg:header("amqp-content-type")))
end)
]]):format(P .. "in")
    -- the first run declares the group's durable queue
    local code, _, err = R.run(yaml, script)
    assert.equal(0, code, err)
    for i = 1, 3 do
      code, _, err = R.amqp_publish(R.url, P .. "in", "hello" .. i,
        { "-p", "-C", "text/plain", "-H", "x-a: " .. i, "-H", "swit-key: k" .. i })
      assert.equal(0, code, err)
    end
    local out
    code, out, err = R.run(yaml, script)
    assert.equal(0, code, err)
    for i = 1, 3 do
      assert.matches(("got hello%d key=k%d x%%-a=%d ct=text/plain"):format(i, i, i), out)
    end
  end)

  it("publishes messages amqp-consume reads", function()
    local P = R.prefix()
    local consumer = R.spawn(("amqp-consume -u %s -e swit -r %s -c 3 cat")
                             :format(t.quote(R.url), t.quote(P .. "out")))
    -- amqp-consume declares and binds its own queue: wait for the binding
    assert.truthy(R.wait_for(20, function()
      local _, out = R.ctl("list_bindings source_name routing_key")
      return out:find(P .. "out", 1, true)
    end), "amqp-consume did not bind")
    local code, _, err = R.run(R.config(R.url), ([[
local swit = require "swit"
swit.on_start(function()
  for i = 1, 3 do
    assert(swit.publish(%q, "body" .. i .. "\n", { key = "k" .. i, headers = { ["x-n"] = tostring(i) } }))
  end
end)
]]):format(P .. "out"))
    assert.equal(0, code, err)
    assert.is_true(consumer:wait(20), "amqp-consume did not get 3 messages")
    local out = consumer:stdout()
    for i = 1, 3 do assert.matches("body" .. i, out) end
  end)

  it("keeps headers, key and properties intact on the wire", function()
    local P = R.prefix()
    local queue = P .. "inspect"
    R.inspect_queue(queue, P .. "hdr")
    local code, _, err = R.run(R.config(R.url), ([[
local swit = require "swit"
swit.on_start(function()
  assert(swit.publish(%q, '{"a":1}', { key = "key-1", headers = {
    ["x-one"] = "1", ["x-two"] = "two words",
    ["amqp-message-id"] = "m-1", ["amqp-content-type"] = "application/json",
    ["amqp-correlation-id"] = "c-1" } }))
end)
]]):format(P .. "hdr"))
    assert.equal(0, code, err)
    local msgs = R.get_messages(queue, 5)
    R.delete_queue(queue)
    assert.equal(1, #msgs)
    local m, p = msgs[1], msgs[1].properties
    assert.equal(P .. "hdr", m.routing_key)
    assert.equal('{"a":1}', m.payload)
    assert.equal("1", p.headers["x-one"])
    assert.equal("two words", p.headers["x-two"])
    assert.equal("key-1", p.headers["swit-key"])
    assert.equal("m-1", p.message_id)
    assert.equal("application/json", p.content_type)
    assert.equal("c-1", p.correlation_id)
    assert.equal(2, p.delivery_mode)
    assert.is_nil(p.headers["amqp-message-id"])
  end)

  it("maps the message id and other properties both ways", function()
    local P = R.prefix()
    local code, out, err = R.run(R.config(R.url), ([[
local swit = require "swit"
swit.on(%q, function(msg)
  print(("id=%%s corr=%%s type=%%s app=%%s prio=%%s ts=%%s"):format(msg:header("amqp-message-id"),
        msg:header("amqp-correlation-id"), msg:header("amqp-type"), msg:header("amqp-app-id"),
        msg:header("amqp-priority"), tostring(msg:header("x-none"))))
end)
swit.on_start(function()
  assert(swit.publish(%q, "x", { headers = { ["amqp-message-id"] = "id-9",
    ["amqp-correlation-id"] = "c-9", ["amqp-type"] = "order", ["amqp-app-id"] = "app",
    ["amqp-priority"] = "3" } }))
end)
]]):format(P .. "props", P .. "props"))
    assert.equal(0, code, err)
    assert.matches("id=id%-9 corr=c%-9 type=order app=app prio=3 ts=nil", out)
  end)
end)
