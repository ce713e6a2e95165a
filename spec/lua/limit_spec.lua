-- spec/lua/limit_spec.lua - intake limits (docs/resilience.md, "Intake
-- limits"): messaging.subscribers.<name>.rate_limit and .concurrency on
-- the memory broker, through the swit binary. A flood is published from
-- on_start; the handlers note "+ <id> <us>" when they start and "- <id>"
-- when they end in one file (O_APPEND: each note is one write, so the
-- file's order is the order they happened in). From it: every message
-- handled exactly once, never more handlers of the subscription at once
-- than `concurrency`, and the last message not let in before
-- (N - burst) / rate (a bound a slow machine cannot break). The pauses
-- are read from /metrics. Bad values are refused with file:line and key;
-- swit.on refuses the limits as handler options.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local N = 300

local function yaml(limits)
  return ([[
server: {name: spec, admin: {listen: "127.0.0.1:0"}}
messaging:
  broker: {type: memory}
  subscribers:
    spec: %s
  resources:
    subscribers: {worker_pool_size: 4}
lua:
  scripts: [s.lua]
]]):format(limits)
end

local script = ([=[
local swit = require "swit"
local ffi = require "ffi"
ffi.cdef("struct limit_ts { long s, ns; };" ..
         "int clock_gettime(int, struct limit_ts *); int usleep(unsigned int);")
local LOG = os.getenv("LIMIT_LOG")
local ts = ffi.new("struct limit_ts")
local function now_us()
  ffi.C.clock_gettime(1, ts)           -- CLOCK_MONOTONIC
  return tonumber(ts.s) * 1000000 + math.floor(tonumber(ts.ns) / 1000)
end
local function note(s)
  local f = assert(io.open(LOG, "a"))
  f:write(s)
  f:close()
end
swit.on("orders", function(msg)
  note(("+ %%s %%d\n"):format(msg:payload(), now_us()))
  ffi.C.usleep(500)
  note(("- %%s\n"):format(msg:payload()))
end)
swit.on_start(function()
  note(("t0 %%d\n"):format(now_us()))
  for i = 1, %d do swit.publish("orders", tostring(i)) end
end)
]=]):format(N)

local function curl(url)
  local f = io.popen("curl -s " .. t.quote(url))
  local s = f:read("*a")
  f:close()
  return s
end

-- Run the flood under `limits`; returns the notes (parsed) and /metrics.
local function flood(limits)
  local log = os.tmpname()
  local p = t.start({ ["swit.yaml"] = yaml(limits), ["s.lua"] = script },
                    { LIMIT_LOG = log })
  local adm = t.wait_for(p, "err", "admin listening on http://[%d.:]+")
                :match("admin listening on http://([%d.:]+)")
  local text
  for _ = 1, 3000 do                   -- at most 30 s
    text = t.read(log) or ""
    if t.count(text, "^%- ") >= N then break end
    os.execute("sleep 0.01")
  end
  local metrics = curl("http://" .. adm .. "/metrics")
  t.stop(p)
  os.remove(log)
  local r = { started = {}, ended = {}, max = 0, t0 = nil, last = 0 }
  local running = 0
  for _, line in ipairs(t.lines(text)) do
    local kind, id, us = line:match("^(%S+) (%d+) ?(%d*)$")
    if kind == "t0" then
      r.t0 = tonumber(id)
    elseif kind == "+" then
      r.started[id] = (r.started[id] or 0) + 1
      running = running + 1
      if running > r.max then r.max = running end
      if tonumber(us) > r.last then r.last = tonumber(us) end
    elseif kind == "-" then
      r.ended[id] = (r.ended[id] or 0) + 1
      running = running - 1
    end
  end
  return r, metrics
end

local function all_once(r)
  for i = 1, N do
    assert.equal(1, r.started[tostring(i)], "message " .. i .. " started")
    assert.equal(1, r.ended[tostring(i)], "message " .. i .. " ended")
  end
end

describe("intake limits #lua", function()
  it("concurrency N: never more than N handlers in flight, nothing lost", function()
    local r, metrics = flood("{concurrency: 2}")
    all_once(r)
    assert.is_true(r.max >= 1 and r.max <= 2, "handlers at once: " .. r.max)
    local pauses = t.metric(metrics, 'swit_intake_pauses_total{topic="orders",group="spec",by="concurrency"}')
    assert.is_true(pauses and pauses >= 1, metrics)
    assert.equal(0, t.metric(metrics, 'swit_intake_held{topic="orders",group="spec"}'))
  end)

  it("rate_limit: the flood is let in no faster than burst + rate * t", function()
    local r, metrics = flood("{rate_limit: {rate: 400, burst: 10}}")
    all_once(r)
    assert.is_not_nil(r.t0)
    -- the bucket starts full after t0: the last of N starts no earlier
    -- than (N - burst) / rate after it
    assert.is_true(r.last - r.t0 >= (N - 10) / 400 * 1e6,
                   ("last start %d us after t0"):format(r.last - r.t0))
    local pauses = t.metric(metrics, 'swit_intake_pauses_total{topic="orders",group="spec",by="rate_limit"}')
    assert.is_true(pauses and pauses >= 1, metrics)
    local dir = t.dir({})
    t.promtool_check(metrics, dir)
    os.execute("rm -rf " .. t.quote(dir))
  end)

  it("both limits at once", function()
    local r = flood("{concurrency: 3, rate_limit: {rate: 2000, burst: 5}}")
    all_once(r)
    assert.is_true(r.max <= 3, "handlers at once: " .. r.max)
  end)

  it("refuses hostile values with file:line and the key", function()
    local cases = {
      { "concurrency: 0", "concurrency: expected an integer in 1..1000000" },
      { "concurrency: -3", "concurrency: expected an integer in 0..1000000" },
      { "concurrency: 1000001", "concurrency: expected an integer" },
      { "concurrency: lots", "concurrency: expected an integer" },
      { "concurrency: [1]", "concurrency: expected a scalar" },
      { "rate_limit: {rate: 0}", "rate_limit.rate: expected a number in 0.001..1000000" },
      { "rate_limit: {rate: 0.0001}", "rate_limit.rate: expected a number in 0.001" },
      { "rate_limit: {rate: -1}", "rate_limit.rate: expected a number" },
      { "rate_limit: {rate: .nan}", "rate_limit.rate: expected a number" },
      { "rate_limit: {rate: .inf}", "rate_limit.rate: expected a number" },
      { "rate_limit: {rate: 1e12}", "rate_limit.rate: expected a number" },
      { "rate_limit: {rate: 10, burst: 0}", "rate_limit.burst: expected an integer in 1..1000000" },
      { "rate_limit: {rate: 10, burst: 0.5}", "rate_limit.burst: expected an integer" },
      { "rate_limit: {rate: 10, burst: 99999999}", "rate_limit.burst: expected an integer" },
      { "rate_limit: 5", "rate_limit: expected a mapping" },
      { "rate_limit: {rate: 10, every: 1s}", "rate_limit.every: unknown key" },
    }
    t.refuses_subscriber_values(cases)
  end)

  it("swit.on refuses them as handler options: one limit per subscription", function()
    for _, opt in ipairs({ "concurrency = 2", "rate_limit = { rate = 5 }" }) do
      local code, _, err = t.run_scripts(t.config({ "s.lua" }), { ["s.lua"] = ([[
local swit = require "swit"
swit.on("orders", { %s }, function() end)
]]):format(opt) })
      assert.is_not.equal(0, code)
      assert.matches("swit.on: option '" .. opt:match("^[%w_]+") .. "' is not a " ..
                     "handler option: set messaging%.subscribers%.<group>%.", err)
    end
  end)
end)
