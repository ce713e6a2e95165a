-- spec/nats/faults_spec.lua - JetStream through faults: nats-server
-- killed and restarted mid-stream (a private server, so the other suites
-- never see it), and swit killed with SIGKILL holding unacked messages.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"


local function missing(seen, count)
  local lost = {}
  for i = 1, count do
    if not seen[i] then lost[#lost + 1] = i end
  end
  return lost
end

describe("nats faults #nats #slow", function()
  it("JetStream: a server restart mid-stream loses no acknowledged message", function()
    local srv, h = N.server("restart"), nil
    finally(function() N.cleanup(h) N.server_stop(srv) end) -- one finally per test
    local P = N.prefix("f")
    h = N.spawn(N.config({ url = srv.url, config = "jetstream: true",
                                 subscriber = "ack_deadline: 2s, prefetch: 200" }),
      ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "s", function(msg) print("got " .. msg:payload()) end)
]], "4s")
    assert.truthy(N.running(h), h.err())
    local count = 2000
    local code, out, err = N.run(("%s %s %s %d %d %s"):format(N.t.quote(N.jspub),
      srv.url, P .. "s", count, count / 2, N.t.quote(srv.restart_cmd)))
    assert.equal(0, code, err)
    assert.matches("acked " .. count, out)
    assert.equal(0, N.wait_exit(h, 90), h.err())
    local seen = N.numbers(h.out(), "got")
    local lost = missing(seen, count)
    assert.equal(0, #lost, "never processed: " .. table.concat(lost, " ", 1, math.min(#lost, 20)))
    local log = h.err()
    -- cnats may report its first failed reconnect attempt before the
    -- disconnect itself: the lost connection is logged from either state
    assert.truthy(log:find("-> reconnecting: connection to", 1, true), log)
    assert.truthy(log:find("-> connected: reconnected to", 1, true), log)
  end)

  it("JetStream: messages a killed swit held unacked are redelivered after ack_wait", function()
    local P = N.prefix("k")
    local cfg = N.config({ config = "jetstream: true, storage: memory", workers = 1,
                           subscriber = "ack_deadline: 1s, prefetch: 50", name = "killtest" })
    local holder, next
    finally(function() N.cleanup(holder) N.cleanup(next) end)
    holder = N.spawn(cfg, ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "k", function(msg)
  print("holding " .. msg:payload())
  io.stdout:flush()
  while true do end
end)
]])
    assert.truthy(N.running(holder), holder.err())
    local code, _, err = N.run(("%s %s %s 20"):format(N.t.quote(N.jspub), N.url, P .. "k"))
    assert.equal(0, code, err)
    assert.truthy(N.wait(function() return holder.out():find("holding") end, 15), holder.err())
    N.kill(holder, "KILL")
    assert.equal(137, N.wait_exit(holder, 10))
    next = N.spawn(cfg, ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "k", function(msg) print("got " .. msg:payload()) end)
]], "3s")
    assert.equal(0, N.wait_exit(next, 60), next.err())
    local lost = missing(N.numbers(next.out(), "got"), 20)
    assert.equal(0, #lost, "not redelivered: " .. table.concat(lost, " "))
  end)

  it("JetStream: acks of handled messages reach the server while swit waits for more", function()
    -- Acks settled while the fetch thread waits in a fetch are sent when
    -- that fetch returns (at most fetch_wait later), not with the next
    -- message: a swit killed a little after its last message has acked
    -- everything, so nothing is redelivered to the next one.
    local P = N.prefix("a")
    local cfg = N.config({ config = "jetstream: true, storage: memory, fetch_wait: 500ms",
                           workers = 1, subscriber = "ack_deadline: 1s, prefetch: 50",
                           name = "acktest" })
    local first, next
    finally(function() N.cleanup(first) N.cleanup(next) end)
    local script = ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "a", function(msg) print("got " .. msg:payload()) io.stdout:flush() end)
]]
    first = N.spawn(cfg, script)
    assert.truthy(N.running(first), first.err())
    local code, _, err = N.run(("%s %s %s 30"):format(N.t.quote(N.jspub), N.url, P .. "a"))
    assert.equal(0, code, err)
    assert.truthy(N.wait(function()
      local seen = N.numbers(first.out(), "got")
      return #missing(seen, 30) == 0
    end, 15), first.err())
    N.sleep(1.5) -- three fetch_waits: every fetch under way has returned
    N.kill(first, "KILL")
    assert.equal(137, N.wait_exit(first, 10))
    next = N.spawn(cfg, script, "3s") -- past ack_wait: unacked ones would come back
    assert.equal(0, N.wait_exit(next, 60), next.err())
    assert.equal("", next.out(), "redelivered although handled")
  end)

  it("JetStream: messages held longer than ack_wait are kept alive, not redelivered", function()
    local P = N.prefix("w")
    local h
    finally(function() N.cleanup(h) end)
    h = N.spawn(N.config({ config = "jetstream: true, storage: memory", workers = 1,
                           subscriber = "ack_deadline: 1s, prefetch: 10" }),
      ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "w", function(msg)
  local stop = os.time() + 2
  while os.time() < stop do end
  print("got " .. msg:payload())
end)
]], "2s")
    assert.truthy(N.running(h), h.err())
    local code, _, err = N.run(("%s %s %s 3"):format(N.t.quote(N.jspub), N.url, P .. "w"))
    assert.equal(0, code, err)
    assert.equal(0, N.wait_exit(h, 60), h.err())
    local seen, lines = N.numbers(h.out(), "got")
    assert.equal(3, lines, h.out())
    for i = 1, 3 do assert.equal(1, seen[i]) end
  end)
end)
