-- spec/kafka/commit_spec.lua - what swit commits: with messages of one
-- partition finishing out of order (different keys on different workers),
-- the committed offset stays at the oldest unfinished message; after a
-- stop with a message still running, a restart consumes it again. The
-- committed offsets are read by a second client (kafka_committed).
local k = require "spec.kafka.kafka_support"
local t = k.t

-- A handler that holds the message keyed "slow" until `flag` exists (or
-- `limit` seconds pass), and prints every message it finished.
local function script(topic, group, flag, limit)
  return ([[
local swit = require "swit"
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int);")
swit.on(%q, { group = %q }, function(msg)
  if msg:key() == "slow" then
    print("slow started " .. msg:payload())
    local waited = 0
    while not io.open(%q) and waited < %d do
      ffi.C.usleep(20000)
      waited = waited + 0.02
    end
  end
  print("done " .. msg:payload())
end)
]]):format(topic, group, flag, limit)
end

-- Messages from..to to partition 0: payload i (= offset i), key "slow"
-- at `slow`, "k<i>" otherwise.
local function produce(bs, topic, from, to, slow)
  local lines = {}
  for i = from, to do
    lines[#lines + 1] = ("%s\t%d"):format(i == slow and "slow" or "k" .. i, i)
  end
  local code, err = k.produce(bs, topic, lines, "-p 0")
  assert.equal(0, code, err)
end

local function done_count(out)
  return t.count(out, "^done %d+$")
end

describe("kafka #kafka commits", function()
  it("never commits past a message still running in its partition", function()
    local bs, P = k.bootstrap(), k.prefix("c")
    local topic, group, flag = P .. "t", P .. "g", t.dir() .. "/go"
    -- a worker settles its batch as a whole: offsets 0-4 go first, alone
    produce(bs, topic, 0, 4)
    local p = k.spawn(k.config(bs), script(topic, group, flag, 60))
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q) return done_count(q:out()) == 5 end, 60),
                  p:err())
    produce(bs, topic, 5, 19, 5)
    -- the slow message runs; later offsets finish on the other worker
    assert.truthy(p:wait(function(q)
      local out = q:out()
      return out:find("slow started 5", 1, true) and done_count(out) >= 10
    end, 60), p:err())
    local later = false
    for n in p:out():gmatch("done (%d+)") do
      if tonumber(n) > 5 then later = true end
    end
    assert.is_true(later, "no message after the slow one finished first")
    k.sleep(2.5) -- two commit periods
    assert.equal(5, k.committed(bs, group, topic, 1)[0])
    assert.is_nil(p:out():find("done 5\n", 1, true))

    io.open(flag, "w"):close()
    assert.truthy(p:wait(function(q) return done_count(q:out()) == 20 end, 30))
    -- the next periodic commit (every second) reaches the end
    assert.truthy(p:wait(function()
      return k.committed(bs, group, topic, 1)[0] == 20
    end, 30), "committed " .. tostring(k.committed(bs, group, topic, 1)[0]) .. ", not 20")
    p:signal("TERM")
    assert.equal(0, p:finish(30), p:err())
    p:clean()
  end)

  it("consumes a message again after a stop that could not finish it", function()
    local bs, P = k.bootstrap(), k.prefix("s")
    local topic, group, flag = P .. "t", P .. "g", t.dir() .. "/never"
    produce(bs, topic, 0, 2)
    local cfg = k.config(bs, { shutdown = "1s", broker = "      revoke_timeout: 1s\n" })
    -- the handler outlasts the drain (1 s) and the revoke wait (1 s)
    local p = k.spawn(cfg, script(topic, group, flag, 8))
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q) return done_count(q:out()) == 3 end, 60),
                  p:err())
    produce(bs, topic, 3, 9, 3)
    assert.truthy(p:wait(function(q)
      return q:out():find("slow started 3", 1, true)
    end, 60), p:err())
    k.sleep(2.5)
    p:signal("TERM")
    -- the handler (an FFI sleep loop: no hook reaches it) outlasts the
    -- drain, the stop request and the interrupt: it is left behind, the
    -- stop is bounded and says it was not clean (exit 3)
    assert.equal(3, p:finish(30), p:err())
    assert.matches("left behind", p:err())
    assert.equal(3, k.committed(bs, group, topic, 1)[0])
    p:clean()

    -- the restart starts at offset 3: the slow message runs again
    io.open(flag, "w"):close()
    local code, out, err = k.run(cfg, script(topic, group, flag, 8))
    assert.equal(0, code, err)
    assert.matches("slow started 3", out)
    for i = 3, 9 do assert.matches("done " .. i .. "\n", out) end
    assert.equal(10, k.committed(bs, group, topic, 1)[0])
  end)
end)
