-- spec/kafka/groups_spec.lua - scaling out on a Kafka consumer group
-- (docs/deploy.md): two swit processes with the same group on a topic of
-- 4 partitions split the partitions between them, and every message is
-- handled exactly once across the two, each taking part. Messages are
-- produced once the group has settled (each process logged its last
-- assignment and the two cover the 4 partitions), so the test is about
-- the split, not about redelivery at a rebalance (faults_spec.lua).
local k = require "spec.kafka.kafka_support"
local t = k.t

-- The partitions a process holds now, from its log: the count of its
-- last "assigned" line, or 0 when a "revoked" line came after it.
local function holding(err)
  local n = 0
  for count, what in err:gmatch("(%d+) partition%(s%) (%a+)") do
    if what == "assigned" then n = tonumber(count)
    elseif what == "revoked" then n = 0 end
  end
  return n
end

describe("kafka #kafka consumer group across processes", function()
  it("splits a topic's partitions between two swit processes, each message once", function()
    local P = k.prefix("grp")
    local topic, group, n = P .. "work", P .. "workers", 400
    local mock = k.mock(1, { topic .. ":4" })
    local script = ([[
local swit = require "swit"
swit.on(%q, { group = %q }, function(msg)
  print("got " .. msg:payload())
end)
]]):format(topic, group)
    local yaml = k.config(mock.bootstrap, { name = P .. "host" })
    local a = k.spawn(yaml, script)
    local b = k.spawn(yaml, script)
    finally(function() a:clean() b:clean() mock:stop() end)

    local settled = a:wait(function()
      local ha, hb = holding(a:err()), holding(b:err())
      return ha > 0 and hb > 0 and ha + hb == 4
    end, 60)
    assert.truthy(settled, "the group did not settle on 4 partitions:\n" ..
                  a:err() .. "\n--\n" .. b:err())

    local lines = {}
    for i = 1, n do lines[i] = ("k%d\t%d"):format(i % 40, i) end
    local code, err = k.produce(mock.bootstrap, topic, lines)
    assert.equal(0, code, err)

    local function count(p) return t.count(p:out(), "^got %d+$") end
    assert.truthy(a:wait(function() return count(a) + count(b) >= n end, 60),
                  ("handled %d of %d"):format(count(a) + count(b), n))
    a:signal("TERM")
    b:signal("TERM")
    assert.equal(0, a:finish(30), a:err())
    assert.equal(0, b:finish(30), b:err())

    local seen, na, nb = {}, 0, 0
    for v in a:out():gmatch("got (%d+)") do seen[#seen + 1] = tonumber(v); na = na + 1 end
    for v in b:out():gmatch("got (%d+)") do seen[#seen + 1] = tonumber(v); nb = nb + 1 end
    assert.is_true(na > 0 and nb > 0, ("one process handled nothing (%d, %d)"):format(na, nb))
    local times = {}
    for _, v in ipairs(seen) do times[v] = (times[v] or 0) + 1 end
    for i = 1, n do
      assert.equal(1, times[i] or 0, "message " .. i .. " was not handled exactly once")
    end
    assert.equal(n, #seen)
  end)
end)
