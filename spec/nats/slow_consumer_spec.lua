-- spec/nats/slow_consumer_spec.lua - a core NATS subscription fed faster
-- than its handler runs. swit's choice: backpressure first (the delivery
-- callback blocks while the worker queues are full), then cnats buffers
-- up to pending_msgs and drops beyond; every drop is counted and logged,
-- so handled + dropped accounts for every message sent.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"

describe("nats slow consumer #nats", function()
  it("core: drops beyond the client buffer are counted and logged, never silent", function()
    local P = N.prefix("s")
    local h = N.spawn(N.config({ config = "pending_msgs: 20", workers = 1,
                                 resources = "max_in_flight: 8",
                                 lua = "  batch_size: 4\n" }),
      ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "s", function(msg)
  local stop = os.clock() + 0.002
  while os.clock() < stop do end
  print("got " .. msg:payload():sub(2))
end)
]], "1s")
    finally(function() N.cleanup(h) end)
    assert.truthy(N.running(h), h.err())
    local count = 3000
    local code, _, err = N.run(("%s pub %d %s %d"):format(N.t.quote(N.wire), N.port,
                                                        P .. "s", count))
    assert.equal(0, code, err)
    assert.equal(0, N.wait_exit(h, 60), h.err())
    local _, handled = N.numbers(h.out(), "got")
    local log = h.err()
    assert.truthy(log:find("is a slow consumer: the client dropped", 1, true), log)
    local dropped, later = log:match(
      "closed: (%d+) message%(s%) dropped by the client as a slow consumer, " ..
      "(%d+) given back or arriving at shutdown are dropped")
    assert.truthy(dropped, log)
    assert.is_true(tonumber(dropped) > 0)
    assert.is_true(handled > 0)
    assert.equal(count, handled + tonumber(dropped) + tonumber(later))
  end)
end)
