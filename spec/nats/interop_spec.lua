-- spec/nats/interop_spec.lua - swit and an independent NATS client
-- (spec/nats/nats_wire.c: the plain-text protocol over a socket, no
-- cnats) exchange messages both ways, on core NATS and on JetStream, with
-- headers and the key header intact.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"

local function from_wire(jetstream)
  local P = N.prefix("i")
  local h = N.spawn(N.config({ config = jetstream and "jetstream: true, storage: memory" }),
    ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "in", function(msg)
  print(("got %s key=%s a=%s b=%s n=%s"):format(msg:payload(), tostring(msg:key()),
    tostring(msg:header("x-a")), tostring(msg:header("x-b")),
    tostring(msg:header("Swit-Key"))))
end)
]], "1500ms")
  finally(function() N.cleanup(h) end)
  assert.truthy(N.running(h), h.err())
  local code, _, err = N.run(("%s pub %d %s 5 -H 'x-a:1' -H 'x-b:two words' -H 'Swit-Key:order-7'")
    :format(N.t.quote(N.wire), N.port, P .. "in"))
  assert.equal(0, code, err)
  assert.equal(0, N.wait_exit(h, 30), h.err())
  local out = h.out()
  for i = 1, 5 do
    assert.matches(("got m%d key=order%%-7 a=1 b=two words n=nil\n"):format(i), out)
  end
  assert.equal(5, N.t.count(out, "^got "))
end

local function to_wire(jetstream)
  local P = N.prefix("o")
  local sub = N.wire_sub(N.port, P .. "out", 3, 20000)
  local h = N.spawn(N.config({ config = jetstream and "jetstream: true, storage: memory" }),
    ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on_start(function()
  assert(swit.publish(P .. "out", "plain", { key = "k1", headers = { ["x-trace"] = "abc def" } }))
  assert(swit.publish(P .. "out", "binkey", { key = "k\0\255" }))
  assert(swit.publish(P .. "out", "nokey"))
end)
]], "300ms")
  finally(function() N.cleanup(h) end)
  assert.equal(0, N.wait_exit(h, 30), h.err())
  assert.equal(0, N.wait(sub.code, 20), sub.out())
  local out = sub.out()
  assert.matches("msg " .. P:gsub("%.", "%%.") .. "out plain\nhdr [^\n]*\nhdr [^\n]*\n", out)
  assert.truthy(out:find("hdr x-trace: abc def\n", 1, true), out)
  assert.truthy(out:find("hdr Swit-Key: k1\n", 1, true), out)
  -- "k\0\255" in base64
  assert.truthy(out:find("hdr Swit-Key-B64: awD/\n", 1, true), out)
  assert.truthy(out:find("out nokey\n", 1, true), out)
end

describe("nats interop with an independent client #nats", function()
  it("core: receives what a plain-protocol client publishes, headers and key intact", function()
    from_wire(false)
  end)

  it("core: publishes what a plain-protocol client receives, headers and key header intact", function()
    to_wire(false)
  end)

  it("JetStream: consumes what a plain-protocol client publishes into the stream", function()
    from_wire(true)
  end)

  it("JetStream: its publishes reach a plain-protocol subscriber too", function()
    to_wire(true)
  end)
end)
