-- spec/rabbitmq/fault_spec.lua - swit keeps going when RabbitMQ goes
-- away or stalls under it: the server restarted mid-stream (same data dir, so
-- durable queues and persistent messages survive), and every connection
-- closed by the server (rabbitmqctl close_all_connections). swit must
-- reconnect, declare its topology again, restore its consumers, send
-- again what was not confirmed, and lose nothing: every message
-- published before, during and after is handled at least once.
--
-- Runs on the `rabbitmq_fault` server (its own node: restarting it must
-- not disturb the other suites), one suite at a time. A third case
-- freezes the server (SIGSTOP) so that only missing heartbeats tell; a
-- fourth raises a memory alarm, which blocks publishing for a while.
package.path = "spec/rabbitmq/?.lua;" .. package.path
local R = require "rmq_support"

-- A swit process that handles `topic` (printing "got <n>") and publishes
-- 1..n to it itself, `per_tick` every 20 ms. With `dead_letter`, the
-- handler then rejects every message into that topic.
local function stream_script(topic, n, per_tick, dead_letter)
  return ([[
local swit = require "swit"
io.stdout:setvbuf("line")
local T, N, PER, D = %q, %d, %d, %s
swit.on(T, { dead_letter = D }, function(msg)
  print("got " .. msg:payload())
  if D then return swit.reject("parked by the test") end
end)
local i = 0
swit.every(20, function()
  for _ = 1, PER do
    if i >= N then return end
    local ok, err = swit.publish(T, tostring(i + 1))
    if not ok then print("publish error " .. err) return end
    i = i + 1
  end
end)
]]):format(topic, n, per_tick, dead_letter and ("%q"):format(dead_letter) or "nil")
end

-- Publish first..last to topic from a separate swit process.
local function publish_range(topic, first, last)
  local code, _, err = R.run(R.config(R.fault_url, { name = "publisher" }), ([[
local swit = require "swit"
swit.on_start(function()
  for i = %d, %d do assert(swit.publish(%q, tostring(i))) end
end)
]]):format(first, last, topic))
  assert.equal(0, code, err)
end

local function count_got(p)
  local set = R.numbers(p:stdout(), "got")
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- The scenario the faults share: stream, fault, publish more, check.
-- `reconnects` false: the fault is not expected to cost the connection.
local function survive(fault, opts, reconnects, n)
  local P = R.prefix()
  local topic = P .. "stream"
  local N, MORE = n or 1200, 300
  opts = opts or {}
  opts.name = "survivor"
  local p = R.start_swit(R.config(R.fault_url, opts),
                         stream_script(topic, N, 5, opts.dead_letter))
  local ok, why = pcall(function()
    assert.truthy(R.wait_for(30, function() return count_got(p) >= 100 end),
                  "no messages before the fault:\n" .. p:stderr())
    fault(p)
    publish_range(topic, N + 1, N + MORE) -- consumers must be back for these
    R.wait_for(90, function() return count_got(p) >= N + MORE end)
  end)
  local stopped = p:stop(30)
  assert.is_true(ok, why)
  local set = R.numbers(p:stdout(), "got")
  local miss = R.missing(set, 1, N + MORE)
  assert.equal(0, #miss, ("%d lost, first %s\n%s"):format(#miss, tostring(miss[1]),
                                                         p:stderr()))
  assert.is_true(stopped, "swit did not stop on SIGTERM")
  if reconnects ~= false then
    assert.matches("reconnecting %-> connected", p:stderr())
  end
  return p, topic, N, MORE
end

describe("rabbitmq faults #rabbitmq #slow", function()
  it("survives a server restart mid-stream without losing a message", function()
    survive(function()
      local code, out, err = R.restart(R.fault_run_dir)
      assert.equal(0, code, out .. err)
    end)
  end)

  it("survives the server closing its connections mid-stream", function()
    local p = survive(function()
      for _ = 1, 2 do
        local code, out, err = R.ctl("close_all_connections 'swit fault test'",
                                     R.fault_run_dir)
        assert.equal(0, code, out .. err)
        R.sleep(1)
      end
    end)
    assert.matches("CONNECTION_FORCED %- swit fault test", p:stderr())
  end)

  it("keeps dead letters to a custom topic across a reconnect that redeclares its parking queue", function()
    local dead = R.prefix() .. "parked"
    local parking = "survivor." .. dead
    local mark
    local p, topic, N, MORE = survive(function(proc)
      -- an operator deletes the parking queue: dead letters find no queue
      -- (they are returned, and retried) until the reconnect declares it
      local code, out, err = R.ctl("delete_queue " .. parking, R.fault_run_dir)
      assert.equal(0, code, out .. err)
      mark = #R.t.lines(proc:stdout())
      R.sleep(1)
      code, out, err = R.ctl("close_all_connections 'swit dlq test'", R.fault_run_dir)
      assert.equal(0, code, out .. err)
    end, { dead_letter = dead })
    assert.matches("no queue is bound for this routing key", p:stderr())
    -- read the parking queue back in the same group (the script that names
    -- the dead-letter topic also takes any original given back at the stop)
    local code, out, err = R.run(R.config(R.fault_url, { name = "survivor" }), ([[
local swit = require "swit"
swit.on(%q, { dead_letter = %q }, function(msg) return swit.reject("late") end)
swit.on(%q, function(msg) print("parked " .. msg:payload()) end)
]]):format(topic, dead, dead), "1500ms")
    assert.equal(0, code, err)
    local parked = R.numbers(out, "parked")
    -- what was first handled after the deletion must all be parked (what
    -- came before may have gone with the deleted queue), and so must the
    -- messages published after the fault
    local first, lost = {}, {}
    for i, line in ipairs(R.t.lines(p:stdout())) do
      local n = tonumber(line:match("^got (%d+)$"))
      if n and not first[n] then first[n] = i end
    end
    for n, i in pairs(first) do
      if (i > mark or n > N) and not parked[n] then lost[#lost + 1] = n end
    end
    for n = N + 1, N + MORE do
      if not first[n] then lost[#lost + 1] = n end
    end
    assert.equal(0, #lost, ("%d dead letters lost, e.g. %s"):format(#lost, tostring(lost[1])))
  end)

  it("notices a broker that stopped answering through heartbeats", function()
    local beam = R.t.read(R.fault_run_dir .. "/rmq/rabbit.pid"):match("%d+")
    local p = survive(function(proc)
      os.execute("kill -STOP " .. beam)
      local seen = R.wait_for(20, function()
        return proc:stderr():find("missed heartbeats", 1, true)
      end)
      os.execute("kill -CONT " .. beam)
      assert.truthy(seen, "no heartbeat timeout:\n" .. proc:stderr())
    end, { broker_config = "    config: {heartbeat: 1s, connect_timeout: 1s}" })
    assert.matches("lost: missed heartbeats from the broker", p:stderr())
  end)

  it("holds publishes during a resource alarm and keeps consuming", function()
    local p = survive(function(proc)
      local ctl = function(args)
        local code, out, err = R.ctl(args, R.fault_run_dir)
        assert.equal(0, code, out .. err)
      end
      ctl("set_vm_memory_high_watermark 0.00001")
      local seen = R.wait_for(20, function()
        return proc:stderr():find("blocked publishing", 1, true)
      end)
      ctl("set_vm_memory_high_watermark 0.4")
      assert.truthy(seen, "no connection.blocked:\n" .. proc:stderr())
    end, nil, false, 6000)  -- 24 s of publishing: still going when the
                            -- alarm is raised on a loaded machine, where
                            -- rabbitmqctl alone takes seconds
    assert.matches("unblocked publishing", p:stderr())
  end)
end)
