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
--
-- The SIGKILL case checks through independent clients (kcat with
-- isolation.level=read_committed, kafka_committed) what survives a kill
-- inside an open transaction and a restart; what the mock hides from
-- that check is said there and in docs/brokers/kafka.md.
local k = require "spec.kafka.kafka_support"
local t = k.t

-- Messages from..to to topic: key "k<i mod 17>", payload i (= its
-- offset when it goes to partition 0 of an empty topic).
local function produce(bs, topic, from, to, partition)
  local lines = {}
  for i = from, to do lines[#lines + 1] = ("k%d\t%d"):format(i % 17, i) end
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
  return k.config(bs, { extra = "", messaging = extra or "",
                       server = ", log: {level: debug}" })
end

-- Messages 0..n-1 to a fresh input topic (partition 0, or spread by key
-- when `spread`), and swit running a handler that republishes each one
-- (header `attempt`) and then runs `tail` (Lua, `i` is the payload).
local function start(tag, n, opts)
  local bs, P = k.bootstrap(), k.prefix(tag)
  local c = { bs = bs, input = P .. "in", output = P .. "out", group = P .. "g" }
  produce(bs, c.input, 0, n - 1, not opts.spread and 0 or nil)
  c.p = k.spawn(txn_config(bs, opts.messaging), ([[
local swit = require "swit"
swit.on(%q, { group = %q%s }, function(msg)
  local i = tonumber(msg:payload())
  assert(swit.publish(%q, msg:payload(), { key = msg:key(),
                      headers = { attempt = tostring(msg:attempt()) } }))
%s
end)
]]):format(c.input, c.group, opts.on or "", c.output, opts.tail or ""))
  return c
end

-- Wait until the transactions carried offset n for partition 0.
local function wait_committed(c, n)
  return c.p:wait(function(q)
    return (last_offsets(q:err(), c.input)[0] or 0) == n
  end, 90)
end

local function stop(p)
  p:signal("TERM")
  assert.equal(0, p:finish(30), p:err())
end

describe("kafka #kafka transactions", function()
  it("commits a handler's publishes with the consumed offsets", function()
    local n = 200
    local c = start("x", n, { on = ", exactly_once = true", spread = true })
    local p = c.p
    finally(function() p:clean() end)
    -- the offsets sent with the transactions reach the end of every
    -- input partition: every transaction is done, no output is to come
    local code, parts = k.consume(c.bs, c.input, "%p\n")
    assert.equal(0, code)
    local ends = {}
    for q in parts:gmatch("%d+") do ends[tonumber(q)] = (ends[tonumber(q)] or 0) + 1 end
    assert.truthy(p:wait(function(q)
      local last = last_offsets(q:err(), c.input)
      for part, e in pairs(ends) do if last[part] ~= e then return false end end
      return select(2, outputs(c.bs, c.output)) >= n
    end, 90), p:err())
    assert.same(ends, last_offsets(p:err(), c.input))
    local out, total = outputs(c.bs, c.output)
    assert.equal(n, total)
    for i = 0, n - 1 do assert.same({ 1 }, out[tostring(i)]) end
    assert.truthy(metric(p, "swit_transactions_total", 'result="commit"') > 0)
    assert.equal(0, metric(p, "swit_transactions_total", 'result="abort"'))
    stop(p)
  end)

  it("aborts a failed handler's transaction and never commits past it", function()
    local n = 60
    local c = start("y", n, { on = ", exactly_once = true", tail = [[
  if i % 7 == 3 and msg:attempt() == 1 then
    swit.log("info", "failing %d", i)
    error("fails once: " .. i)
  end
  if msg:attempt() > 1 then swit.log("info", "finished %d", i) end]] })
    local p = c.p
    finally(function() p:clean() end)
    assert.truthy(wait_committed(c, n), p:err())

    -- in log order: a transaction's offset never passes a message that
    -- failed and has not finished yet
    local pending = {}
    local pat = c.input:gsub("%p", "%%%0") .. " %[0%] commits offset (%d+)"
    for line in p:err():gmatch("[^\n]+") do
      local f, d, o = line:match("failing (%d+)"), line:match("finished (%d+)"), line:match(pat)
      if f then pending[tonumber(f)] = true end
      if d then pending[tonumber(d)] = nil end
      for off in pairs(o and pending or {}) do
        assert(tonumber(o) <= off, ("committed %s past unfinished %d"):format(o, off))
      end
    end
    assert.same({}, pending)

    -- every input produced output; a failing message's committed copy
    -- is its second attempt (a first-attempt copy, if present, is an
    -- aborted record the mock does not hide)
    local out = outputs(c.bs, c.output)
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
    stop(p)
  end)

  it("dead-letters inside a transaction (publisher transactional: true)", function()
    local n = 40
    local c = start("z", n, {
      messaging = "  publishers:\n    default: {transactional: true}\n",
      tail = [[
  if i % 10 == 5 then return swit.reject("bad " .. i) end
  if i == 12 then error("always fails") end]] })
    local p = c.p
    finally(function() p:clean() end)
    assert.truthy(wait_committed(c, n), p:err())
    local code, dlq = k.consume(c.bs, c.input .. ".dlq", "%s|%h\n")
    assert.equal(0, code)
    local dead = {}
    for line in dlq:gmatch("[^\n]+") do
      local payload, headers = line:match("^(%d+)|(.*)$")
      dead[#dead + 1] = tonumber(payload)
      assert.matches("x%-swit%-origin%-topic=" .. c.input:gsub("%p", "%%%0"), headers)
    end
    table.sort(dead)
    assert.same({ 5, 12, 15, 25, 35 }, dead)
    assert.matches("x%-swit%-attempts=3", dlq)    -- 12: retries exhausted
    assert.matches("x%-swit%-error=bad 5", dlq)
    stop(p)

    -- exactly_once implies ordering partition (swit check shows it)
    local dir = t.dir({ ["swit.yaml"] = txn_config(c.bs, "  publishers:\n    default: "
                        .. "{transactional: true}\n"), ["s.lua"] = [[
local swit = require "swit"
swit.on("t", { ordering = "key" }, function() end)
]] })
    local rc, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(0, rc, err)
    assert.matches("topic 't' group 'kspec' %(Lua, ordering partition, exactly_once, ", err)
  end)

  -- Run 1 republishes each input (header run=1) in transactions of 16
  -- messages; the handler of input `hold` publishes, then blocks, so the
  -- SIGKILL lands inside an open transaction that already sent records.
  -- Run 2 (same group, same transactional.id) republishes with run=2.
  -- What a real cluster would show: the killed transaction aborted (run 2
  -- fences its transactional.id), run 2 resuming at the last committed
  -- transaction's offset, and so each input exactly once in the
  -- read_committed output. The mock (librdkafka 2.0.2) stores no
  -- transactional offset, so run 2 starts again at offset 0, and writes
  -- no transaction markers, so read_committed sees the killed
  -- transaction's records. Asserted here instead, all read by clients
  -- other than swit: every input has exactly one run-2 copy (nothing lost
  -- across the kill, no duplicate within a run); the run-1 copies are
  -- exactly inputs 0..hold, once each (the kill came after `hold`
  -- published and before the rest of its batch ran); and the two mock
  -- facts above, so this test fails, to be tightened, on a mock that
  -- stores them.
  it("survives SIGKILL inside a transaction: each input once per run, nothing lost", function()
    local n, hold = 200, 100
    local bs, P = k.bootstrap(), k.prefix("kill")
    local input, output, group = P .. "in", P .. "out", P .. "g"
    produce(bs, input, 0, n - 1, 0)
    local yaml = k.config(bs, { server = ", log: {level: debug}", extra = "  batch_size: 16\n" })
    local function script(run)
      return ([[
local swit = require "swit"
swit.on(%q, { group = %q, exactly_once = true }, function(msg)
  local i = tonumber(msg:payload())
  assert(swit.publish(%q, msg:payload(), { key = msg:key(), headers = { run = "%d" } }))
  if %d == 1 and i == %d then
    io.write("holding ", i, "\n")
    io.flush()
    local deadline = os.time() + 120     -- the test kills the process first
    while os.time() < deadline do os.execute("sleep 0.05") end
  end
end)
]]):format(input, group, output, run, run, hold)
    end
    -- { [run] = { [input] = copies } } and the number of copies, as a
    -- read_committed consumer sees the output topic
    local function copies()
      local code, out, err = k.consume(bs, output, "%s %h\n", nil,
                                       "-X isolation.level=read_committed")
      assert.equal(0, code, err)
      local res, total = { {}, {} }, 0
      for i, r in out:gmatch("(%d+) [^\n]*run=(%d)") do
        local m = res[tonumber(r)]
        m[tonumber(i)] = (m[tonumber(i)] or 0) + 1
        total = total + 1
      end
      return res, total
    end

    local p1 = k.spawn(yaml, script(1))
    finally(function() p1:clean() end)
    -- hold's handler published (its record is on the cluster) and blocks
    assert.truthy(p1:wait(function(q)
      return q:out():find("holding " .. hold, 1, true) and (copies()[1][hold] or 0) > 0
    end, 90), p1:err())
    local committed = last_offsets(p1:err(), input)[0]
    assert.truthy(committed and committed > 0 and committed <= hold,
                  "no transaction committed before the held one:\n" .. p1:err())
    p1:signal("KILL")
    assert.equal(137, p1:finish(30))
    p1:clean()

    local p2 = k.spawn(yaml, script(2))
    finally(function() p2:clean() end)
    assert.truthy(p2:wait(function()
      local got = copies()[2]
      for i = 0, n - 1 do if not got[i] then return false end end
      return true
    end, 120), p2:err())
    stop(p2)

    local got, total = copies()
    for i = 0, n - 1 do
      assert.equal(1, got[2][i], "run-2 copies of input " .. i)
      assert.equal(i <= hold and 1 or nil, got[1][i], "run-1 copies of input " .. i)
    end
    assert.equal(n + hold + 1, total)
    -- the mock facts that keep the exactly-once across the restart from
    -- being shown: no stored transactional offset (run 2 started at 0)...
    assert.same({ [0] = -1001 }, k.committed(bs, group, input, 1))
    -- ...and the killed transaction's records (inputs committed..hold of
    -- run 1, which a real cluster aborts) visible to read_committed
    for i = committed, hold do assert.equal(1, got[1][i]) end
  end)
end)
