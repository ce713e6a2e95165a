-- spec/kafka/faults_spec.lua - at-least-once under faults: a consumer
-- restart mid-stream while some keys are slow, the cluster going down and
-- up mid-stream (a private mock cluster, so the other suites never see
-- it), a kill -9 of swit mid-stream followed by a restart; and
-- backpressure (pause/resume) without leaving the group. After each,
-- every message was processed at least once.
local k = require "spec.kafka.kafka_support"
local t = k.t

-- n messages keyed "k0".."k<keys-1>", payload = their number 1..n.
local function produce(bs, topic, n, keys)
  local lines = {}
  for i = 1, n do lines[#lines + 1] = ("k%d\t%d"):format(i % keys, i) end
  local code, err = k.produce(bs, topic, lines)
  assert.equal(0, code, err)
end

-- A handler printing "p <key> <n>", sleeping `slow_us` on keys k0 and k1
-- and `us` on the others, optionally republishing to `out`.
local function script(topic, group, slow_us, us, out)
  return ([[
local swit = require "swit"
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int);")
local out = %s
swit.on(%q, { group = %q }, function(msg)
  local key = msg:key()
  local pause = (key == "k0" or key == "k1") and %d or %d
  if pause > 0 then ffi.C.usleep(pause) end
  if out then assert(swit.publish(out, msg:payload(), { key = key })) end
  print("p " .. key .. " " .. msg:payload())
end)
]]):format(out and ("%q"):format(out) or "nil", topic, group, slow_us, us)
end

-- Record what runs printed; returns the count of distinct messages and
-- checks per-key order within each run.
local function tally(seen, out)
  local last = {}
  for key, n in out:gmatch("p (%S+) (%d+)") do
    n = tonumber(n)
    assert.is_true(n > (last[key] or 0), "order broken for " .. key)
    last[key] = n
    seen[n] = (seen[n] or 0) + 1
  end
end

local function assert_all(seen, n)
  for i = 1, n do assert.truthy(seen[i], "message " .. i .. " was lost") end
end

local function lines(out)
  return t.count(out, "^p %S+ %d+$")
end

describe("kafka #kafka faults", function()
  it("loses nothing across a consumer restart while some keys are slow", function()
    local bs, P = k.bootstrap(), k.prefix("r")
    local topic, group, n = P .. "in", P .. "g", 2000
    produce(bs, topic, n, 20)
    local yaml = k.config(bs, { shutdown = "2s" })
    local p = k.spawn(yaml, script(topic, group, 5000, 0))
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q) return lines(q:out()) >= 300 end, 60), p:err())
    p:signal("TERM")
    assert.equal(0, p:finish(60), p:err())
    local seen = {}
    tally(seen, p:out())
    p:clean()
    local code, out, err = k.run(yaml, script(topic, group, 0, 0))
    assert.equal(0, code, err)
    tally(seen, out)
    assert_all(seen, n)
  end)

  it("loses nothing when the cluster goes down and up mid-stream", function()
    local mock, p = k.mock(1, { "in:4", "out:4" }), nil
    -- busted keeps one finally() per test: it cleans up both
    finally(function()
      if p then p:clean() end
      mock:stop()
    end)
    local n = 2000
    produce(mock.bootstrap, "in", n, 20)
    -- a session that outlives the outage: the member stays in the group
    local yaml = k.config(mock.bootstrap, { session = 10000,
      reconnect = "{delay: 50ms, max_delay: 500ms}" })
    p = k.spawn(yaml, script("in", "g", 0, 2000, "out"))
    assert.truthy(p:wait(function(q) return lines(q:out()) >= 200 end, 60), p:err())
    mock:down()
    assert.truthy(p:wait(function(q)
      return q:err():find("connected -> reconnecting", 1, true)
    end, 30), p:err())
    k.sleep(1)
    mock:up()
    assert.truthy(p:wait(function(q)
      local seen = {}
      tally(seen, q:out())
      for i = 1, n do if not seen[i] then return false end end
      return true
    end, 120), "not every message was processed:\n" .. p:err())
    -- the statistics (every second) report the broker up again
    assert.truthy(p:wait(function(q)
      return q:err():find("connected %-> reconnecting.*%-> connected")
    end, 30), p:err())
    p:signal("TERM")
    assert.equal(0, p:finish(60), p:err())
    p:clean()
    local code, out, err = k.consume(mock.bootstrap, "out", "%s\n")
    assert.equal(0, code, err)
    local seen = {}
    for v in out:gmatch("(%d+)\n") do seen[tonumber(v)] = true end
    assert_all(seen, n)
    mock:stop()
  end)

  it("loses nothing when swit is killed with SIGKILL and restarted", function()
    local bs, P = k.bootstrap(), k.prefix("x")
    local topic, group, n = P .. "in", P .. "g", 3000
    produce(bs, topic, n, 20)
    local yaml = k.config(bs)
    local p = k.spawn(yaml, script(topic, group, 1000, 1000))
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q) return lines(q:out()) >= 800 end, 60), p:err())
    p:signal("KILL")
    assert.equal(137, p:finish(30))
    local seen = {}
    tally(seen, p:out())
    p:clean()
    local code, out, err = k.run(yaml, script(topic, group, 0, 0))
    assert.equal(0, code, err)
    tally(seen, out)
    assert_all(seen, n)
  end)

  it("pauses partitions for backpressure and keeps its membership", function()
    local bs, P = k.bootstrap(), k.prefix("f")
    local topic, group, n = P .. "in", P .. "g", 300
    produce(bs, topic, n, 50)
    -- queues pause at 32 messages a worker; 20 ms a message keeps them
    -- full for longer than the pause delay (100 ms)
    local code, out, err = k.run(k.config(bs, { max_in_flight = 64,
                                                extra = "  batch_size: 16\n" }),
                                 script(topic, group, 20000, 20000))
    assert.equal(0, code, err)
    local seen = {}
    tally(seen, out)
    for i = 1, n do assert.equal(1, seen[i], "message " .. i) end
    local pauses = tonumber(err:match("paused (%d+) time%(s%) for backpressure"))
    assert.truthy(pauses and pauses > 0, err)
    assert.equal(1, t.count(err, "partition%(s%) revoked"), err) -- at the end only
  end)
end)
