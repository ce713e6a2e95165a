-- spec/kafka/txn_spec.lua - exactly_once subscriptions (Kafka
-- transactions): a handler's publishes and the consumed offsets commit
-- together, a failed handler aborts its transaction, dead letters go out
-- inside one, and the offset a transaction commits never passes an
-- unfinished message.
--
-- What the mock cluster (librdkafka 2.0.2) cannot show, and so is not
-- checked here: it accepts TxnOffsetCommit but stores nothing (a second
-- client reads no committed offset), and it writes no transaction
-- markers, so read_committed consumers see aborted records too. The
-- offsets a transaction carries are read from swit's debug log instead
-- ("<topic> [<partition>] commits offset <n> in a transaction"), and the
-- outputs are read with kcat (read_uncommitted): aborted copies may
-- appear there, told apart by an `attempt` header the handlers set.
local k = require "spec.kafka.kafka_support"
local t = k.t

-- Messages from..to to partition 0 of topic: key "k<i>", payload i
-- (= its offset when the topic starts empty).
local function produce(bs, topic, from, to, partition)
  local lines = {}
  for i = from, to do lines[#lines + 1] = ("k%d\t%d"):format(i, i) end
  local code, err = k.produce(bs, topic, lines, partition and ("-p " .. partition))
  assert.equal(0, code, err)
end

-- The output topic as { [payload] = { attempts... } }.
local function outputs(bs, topic)
  local code, out, err = k.consume(bs, topic, "%s %h\n")
  assert.equal(0, code, err)
  local res, n = {}, 0
  for line in out:gmatch("[^\n]+") do
    local payload, attempt = line:match("^(%S+) .*attempt=(%d+)")
    if payload then
      res[payload] = res[payload] or {}
      table.insert(res[payload], tonumber(attempt))
      n = n + 1
    end
  end
  return res, n
end

-- The offsets transactions carried, in log order: { {partition, offset} }.
local function txn_offsets(err, topic)
  local res = {}
  local pat = topic:gsub("%p", "%%%0") .. " %[(%d+)%] commits offset (%d+) in a transaction"
  for p, o in err:gmatch(pat) do res[#res + 1] = { tonumber(p), tonumber(o) } end
  return res
end

local function last_offsets(err, topic)
  local last = {}
  for _, e in ipairs(txn_offsets(err, topic)) do last[e[1]] = e[2] end
  return last
end

-- The admin port from the log, then a counter of /metrics.
local function metric(p, name, labels)
  local port = p:err():match("admin listening on http://127%.0%.0%.1:(%d+)")
  assert(port, "no admin port in the log")
  local code, out = t.sh(("curl -sf http://127.0.0.1:%s/metrics"):format(port))
  assert.equal(0, code)
  local pat = name:gsub("%p", "%%%0") .. "{[^}]*" .. labels:gsub("%p", "%%%0") .. "[^}]*} (%d+)"
  return tonumber(out:match(pat))
end

local function txn_config(bs, extra)
  return k.config(bs, { extra = "", messaging = extra or "" })
    :gsub("server: {name: kspec, shutdown_timeout: 10s}",
          'server: {name: kspec, shutdown_timeout: 10s, admin: {listen: "127.0.0.1:0"}, '
          .. "log: {level: debug}}")
end

local function wait_out(p, bs, topic, want)
  return p:wait(function()
    local _, n = outputs(bs, topic)
    return n >= want
  end, 90)
end

describe("kafka #kafka transactions", function()
  it("commits a handler's publishes with the consumed offsets", function()
    local bs, P = k.bootstrap(), k.prefix("x")
    local input, output, group = P .. "in", P .. "out", P .. "g"
    local n = 200
    local lines = {}
    for i = 1, n do lines[#lines + 1] = ("k%d\t%d"):format(i % 17, i) end
    assert.equal(0, (k.produce(bs, input, lines)))
    local p = k.spawn(txn_config(bs), ([[
local swit = require "swit"
swit.on(%q, { group = %q, exactly_once = true }, function(msg)
  assert(swit.publish(%q, msg:payload(), { key = msg:key(),
                      headers = { attempt = tostring(msg:attempt()) } }))
end)
]]):format(input, group, output))
    finally(function() p:clean() end)
    assert.truthy(wait_out(p, bs, output, n), p:err())
    k.sleep(1)
    local out, total = outputs(bs, output)
    assert.equal(n, total)
    for i = 1, n do assert.same({ 1 }, out[tostring(i)]) end

    -- the offsets sent with the transactions reach the end of every
    -- input partition
    local code, parts = k.consume(bs, input, "%p\n")
    assert.equal(0, code)
    local ends = {}
    for q in parts:gmatch("%d+") do ends[tonumber(q)] = (ends[tonumber(q)] or 0) + 1 end
    assert.same(ends, last_offsets(p:err(), input))
    assert.truthy(metric(p, "swit_transactions_total", 'result="commit"') > 0)
    assert.equal(0, metric(p, "swit_transactions_total", 'result="abort"'))
    p:signal("TERM")
    assert.equal(0, p:finish(30), p:err())
  end)

  it("aborts a failed handler's transaction and never commits past it", function()
    local bs, P = k.bootstrap(), k.prefix("y")
    local input, output, group = P .. "in", P .. "out", P .. "g"
    local n = 60
    produce(bs, input, 0, n - 1, 0)
    local p = k.spawn(txn_config(bs), ([[
local swit = require "swit"
swit.on(%q, { group = %q, exactly_once = true }, function(msg)
  local i = tonumber(msg:payload())
  assert(swit.publish(%q, msg:payload(), { key = msg:key(),
                      headers = { attempt = tostring(msg:attempt()) } }))
  if i %% 7 == 3 and msg:attempt() == 1 then
    swit.log("info", "failing %%d", i)
    error("fails once: " .. i)
  end
  if msg:attempt() > 1 then swit.log("info", "finished %%d", i) end
end)
]]):format(input, group, output))
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q)
      return (last_offsets(q:err(), input)[0] or 0) == n
    end, 90), p:err())
    local err = p:err()

    -- in log order: a transaction's offset never passes a message that
    -- failed and has not finished yet
    local pending = {}
    for line in err:gmatch("[^\n]+") do
      local f = line:match("failing (%d+)")
      local d = line:match("finished (%d+)")
      local o = line:match(input:gsub("%p", "%%%0") .. " %[0%] commits offset (%d+)")
      if f then pending[tonumber(f)] = true end
      if d then pending[tonumber(d)] = nil end
      if o then
        for off in pairs(pending) do
          assert(tonumber(o) <= off, ("committed %s past unfinished %d"):format(o, off))
        end
      end
    end
    assert.same({}, pending)

    -- every input produced output; a failing message's committed copy
    -- is its second attempt (a first-attempt copy, if present, is an
    -- aborted record the mock does not hide)
    local out = outputs(bs, output)
    for i = 0, n - 1 do
      local got = out[tostring(i)]
      assert.truthy(got, "no output for " .. i)
      if i % 7 == 3 then
        local second = false
        for _, a in ipairs(got) do second = second or a == 2 end
        assert.is_true(second, "no committed retry of " .. i)
      end
    end
    assert.truthy(metric(p, "swit_transactions_total", 'result="abort"') >= 9)
    assert.truthy(metric(p, "swit_transactions_total", 'result="commit"') > 0)
    p:signal("TERM")
    assert.equal(0, p:finish(30), p:err())
  end)

  it("dead-letters inside a transaction (publisher transactional: true)", function()
    local bs, P = k.bootstrap(), k.prefix("z")
    local input, output, group = P .. "in", P .. "out", P .. "g"
    local n = 40
    produce(bs, input, 0, n - 1, 0)
    local cfg = txn_config(bs, "  publishers:\n    default: {transactional: true}\n")
    local p = k.spawn(cfg, ([[
local swit = require "swit"
swit.on(%q, { group = %q }, function(msg)
  local i = tonumber(msg:payload())
  assert(swit.publish(%q, msg:payload(), { key = msg:key(),
                      headers = { attempt = tostring(msg:attempt()) } }))
  if i %% 10 == 5 then return swit.reject("bad " .. i) end
  if i == 12 then error("always fails") end
end)
]]):format(input, group, output))
    finally(function() p:clean() end)
    assert.truthy(p:wait(function(q)
      return (last_offsets(q:err(), input)[0] or 0) == n
    end, 90), p:err())
    local code, dlq = k.consume(bs, input .. ".dlq", "%s|%h\n")
    assert.equal(0, code)
    local dead = {}
    for line in dlq:gmatch("[^\n]+") do
      local payload, headers = line:match("^(%d+)|(.*)$")
      dead[#dead + 1] = tonumber(payload)
      assert.matches("x%-swit%-origin%-topic=" .. input:gsub("%p", "%%%0"), headers)
    end
    table.sort(dead)
    assert.same({ 5, 12, 15, 25, 35 }, dead)
    assert.matches("x%-swit%-attempts=3", dlq)    -- 12: retries exhausted
    assert.matches("x%-swit%-error=bad 5", dlq)
    p:signal("TERM")
    assert.equal(0, p:finish(30), p:err())

    -- exactly_once implies ordering partition (swit check shows it)
    local dir = t.dir({ ["swit.yaml"] = cfg, ["s.lua"] = [[
local swit = require "swit"
swit.on("t", { ordering = "key" }, function() end)
]] })
    local rc, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(0, rc, err)
    assert.matches("topic 't' group 'kspec' %(Lua, ordering partition, exactly_once, ", err)
  end)
end)
