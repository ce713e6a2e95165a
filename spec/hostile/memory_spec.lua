-- spec/hostile/memory_spec.lua - Lua that allocates without end: a call
-- past lua.limits.memory fails that message (retried, then dead-lettered
-- with the reason), the worker's state recovers, the process and the
-- other worker keep running, and /metrics counts it (docs/lua-api.md,
-- "Limits"). Also the bounds of the config key.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local function config(limit, pool)
  return ([[
server: {name: spec, admin: {listen: "127.0.0.1:0"}, shutdown_timeout: 2s}
messaging:
  subscribers:
    default: {max_attempts: 2, retry_delay: 5ms, retry_max_delay: 10ms}
  resources:
    subscribers: {worker_pool_size: %d}
lua:
  scripts: [h.lua]
  limits: {memory: %s}
]]):format(pool or 2, limit or "8MB")
end

-- "grow" builds a table until the limit stops it; any other payload is
-- printed with the state's size in KB. The dead letter of "grow" sends
-- 20 more messages, handled after the failure.
local handler = [[
local swit = require "swit"
swit.on("t", { ordering = "none" }, function(msg)
  if msg:payload() == "grow" then
    local t, i = {}, 0
    while true do i = i + 1; t[i] = { i } end
  end
  print(("ok %s %d"):format(msg:payload(), collectgarbage("count")))
end)
swit.on("t.dlq", function(msg)
  print("DLQ " .. (msg:header("x-swit-error") or ""))
  for i = 1, 20 do swit.publish("t", "after" .. i) end
end)
swit.on_start(function() swit.publish("t", "grow") end)
]]

local function scrape(p)
  local adm = t.wait_for(p, "err", "admin listening on http://[%d.:]+")
              :match("admin listening on http://([%d.:]+)")
  local f = io.popen("curl -s http://" .. adm .. "/metrics")
  local s = f:read("*a")
  f:close()
  return s
end

describe("lua.limits.memory #hostile", function()
  for _, pool in ipairs({ 1, 2 }) do
    it(("dead-letters the message with the reason; later messages are handled " ..
        "(%d worker(s))"):format(pool), function()
      local p = t.start({ ["swit.yaml"] = config("8MB", pool), ["h.lua"] = handler })
      local out = t.wait_for(p, "out", "ok after20 ", 20)
      assert.matches("DLQ lua%.limits%.memory exceeded: the worker's Lua state " ..
                     "would hold more than 8388608 bytes", out)
      -- one per attempt (max_attempts 2), nothing else failed
      assert.equal(2, t.metric(scrape(p), "swit_lua_memory_exceeded_total"))
      local o, e = t.stop(p)
      assert.equal(0, t.count(o, "^ok grow"))
      assert.equal(1, t.count(o, "^DLQ "))
      assert.equal(20, t.count(o, "^ok after%d+ "))
      -- the state that failed was collected: far below the limit again
      for line in o:gmatch("ok after%d+ (%d+)") do
        assert.is_true(tonumber(line) < 4096)
      end
      assert.matches("retries exhausted", e)
    end)
  end

  it("fails a timer past the limit, counts it; the timer runs again", function()
    local p = t.start({ ["swit.yaml"] = config("8MB", 1), ["h.lua"] = [[
local swit = require "swit"
local n = 0
swit.every(20, function()
  n = n + 1
  if n == 1 then local t = {} for i = 1, 1e9 do t[i] = { i } end end
  print("tick " .. n)
end)
]] })
    t.wait_for(p, "out", "tick 3", 20)
    assert.equal(1, t.metric(scrape(p), "swit_lua_memory_exceeded_total"))
    local _, e = t.stop(p)
    -- the timer's own pcall caught it: Lua sees LuaJIT's message
    assert.matches("swit.every: not enough memory", e)
  end)

  it("refuses bad values of the key at check, with file:line", function()
    for _, v in ipairs({ '"abc"', "-1", "0", "1000", '"2048GB"', "[1]",
                         '"99999999999999999999GB"', '"8MB\\u0000"', "true" }) do
      local dir = t.dir({ ["swit.yaml"] = config(v), ["h.lua"] = handler })
      local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
      os.execute("rm -rf " .. t.quote(dir))
      assert.equal(2, code, v)
      assert.matches("swit%.yaml:9:%d+: lua%.limits%.memory: ", err)
      assert.matches(v:find("u0000") and "a NUL byte" or "expected a ", err)
    end
    local dir = t.dir({ ["swit.yaml"] = config('"1MB"'), ["h.lua"] = handler })
    local code = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(0, code)
  end)
end)
