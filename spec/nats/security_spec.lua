-- spec/nats/security_spec.lua - message security across two swit
-- processes on NATS (docs/security.md): one encrypts and signs, the
-- other verifies and decrypts; an independent client (nats_wire, no
-- cnats) on the same subject sees only the envelope; a message it
-- publishes with a forged signature never reaches the handler and is
-- dead-lettered with the reason in x-swit-error.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"
local t = N.t

local K1 = "key k1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"

local function config(name, keys, topic)
  return ([[
server: {name: %s, admin: {listen: "off"}, shutdown_timeout: 5s}
messaging:
%s  resources:
    subscribers: {worker_pool_size: 2}
  security:
    message:
      encryption: {enabled: true, key_provider: file, keyring: %s/ring, topics: [%q]}
      signing: {enabled: true, key_provider: file, keyring: %s/ring, topics: [%q]}
lua:
  scripts: [s.lua]
]]):format(name, N.broker(), keys, topic, keys, topic)
end

describe("message security between two swit processes #nats", function()
  it("one seals, the other opens; a bystander sees ciphertext; a forgery is dead-lettered", function()
    local P = N.prefix("sec")
    local topic = P .. "orders"
    local keys = t.dir({ ring = K1 .. "active k1\n" })
    os.execute("chmod 600 " .. t.quote(keys .. "/ring"))
    local consumer, producer, seen, dlq
    finally(function()
      N.cleanup(consumer)
      N.cleanup(producer)
      os.execute("rm -rf " .. t.quote(keys))
    end)

    consumer = N.spawn(config("opener", keys, topic), ("local T = %q\n"):format(topic) .. [[
local swit = require "swit"
swit.on(T, function(msg)
  print(("got %s signed %s"):format(msg:payload(), (msg:header("x-swit-sig") or "none:"):match("^([^:]*)")))
end)
]])
    assert.truthy(N.running(consumer), consumer.err())
    seen = N.wire_sub(N.port, topic, 3, 20000)
    dlq = N.wire_sub(N.port, topic .. ".dlq", 1, 20000)

    producer = N.spawn(config("sealer", keys, topic), ("local T = %q\n"):format(topic) .. [[
local swit = require "swit"
swit.on_start(function()
  assert(swit.publish(T, '{"card":"4111","n":1}', { key = "order-1" }))
  assert(swit.publish(T, '{"card":"4111","n":2}', { key = "order-2" }))
end)
]], "300ms")
    assert.equal(0, N.wait_exit(producer, 30), producer.err())
    assert.truthy(N.wait(function() return t.count(consumer.out(), "^got ") == 2 end, 20),
                  consumer.out() .. consumer.err())

    -- a forgery: plain payload, a signature header made up by the client
    local code, _, err = N.run(("%s pub %d %s 1 -H %s"):format(
      t.quote(N.wire), N.port, t.quote(topic),
      t.quote("x-swit-sig:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")))
    assert.equal(0, code, err)
    assert.equal(0, N.wait(dlq.code, 20), dlq.out())
    assert.equal(0, N.wait(seen.code, 20), seen.out())

    N.kill(consumer, "TERM")
    assert.equal(0, N.wait_exit(consumer, 30), consumer.err())
    local out = consumer.out()
    assert.matches('got {"card":"4111","n":1} signed k1\n', out, 1, true)
    assert.matches('got {"card":"4111","n":2} signed k1\n', out, 1, true)
    assert.equal(2, t.count(out, "^got "))

    -- the bystander: two envelopes and the forgery, never the plaintext
    local wire = seen.out()
    assert.is_nil(wire:find("4111", 1, true), wire)
    assert.equal(3, t.count(wire, "hdr x%-swit%-sig: k1:"), wire)
    assert.truthy(wire:find("SWE", 1, true), wire)

    local dead = dlq.out()
    assert.truthy(dead:find("hdr x-swit-error: message security: bad signature (key 'k1')", 1, true), dead)
    assert.truthy(dead:find("hdr x-swit-origin-topic: " .. topic, 1, true), dead)
  end)
end)
