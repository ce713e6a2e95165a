-- spec/nats/groups_spec.lua - two swit processes in one group split a
-- subject's messages: a queue group on core NATS, a shared durable pull
-- consumer on JetStream. Every message is handled exactly once across
-- the two, and both take part.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"

local function split(config)
  local P = N.prefix("q")
  local script = ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "q", { group = "workers", ordering = "none" }, function(msg)
  print("got " .. msg:payload():sub(2))
end)
]]
  local cfg = N.config({ config = config, subscriber = "prefetch: 20" })
  local a, b = N.spawn(cfg, script, "2s"), N.spawn(cfg, script, "2s")
  finally(function() N.cleanup(a) N.cleanup(b) end)
  assert.truthy(N.running(a), a.err())
  assert.truthy(N.running(b), b.err())
  local count = 400
  local code, _, err = N.run(("%s pub %d %s %d"):format(N.t.quote(N.wire), N.port,
                                                      P .. "q", count))
  assert.equal(0, code, err)
  assert.equal(0, N.wait_exit(a, 60), a.err())
  assert.equal(0, N.wait_exit(b, 60), b.err())
  local sa, na = N.numbers(a.out(), "got")
  local sb, nb = N.numbers(b.out(), "got")
  assert.is_true(na > 0 and nb > 0, ("one process got nothing (%d, %d)"):format(na, nb))
  assert.equal(count, na + nb)
  for i = 1, count do
    assert.is_true((sa[i] or 0) + (sb[i] or 0) == 1, "message " .. i .. " not handled exactly once")
  end
end

describe("nats groups across processes #nats", function()
  it("core: a queue group splits the messages between two swit processes", function()
    split(nil)
  end)

  it("JetStream: two swit processes share one durable consumer", function()
    split("jetstream: true, storage: memory, fetch_batch: 10")
  end)
end)
