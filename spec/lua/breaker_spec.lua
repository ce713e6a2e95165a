-- spec/lua/breaker_spec.lua - swit.breaker (docs/resilience.md): a
-- handler's breaker for its own dependencies, and the circuit breaker of a
-- subscription configured under messaging.subscribers, each running real
-- scripts in the swit binary on the memory broker.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local function run(script, extra_yaml)
  return t.run_scripts(t.config({ "s.lua" }, extra_yaml), { ["s.lua"] = script })
end

describe("swit.breaker #lua", function()
  it("opens on failures, half-opens after the timeout, closes on successes", function()
    local code, out, err = run([[
local swit = require "swit"
local b = swit.breaker("payments", { failure_threshold = 2, success_threshold = 2,
                                     recovery_timeout = "20ms" })
swit.on_start(function()
  print("start " .. b:state() .. " " .. tostring(b:allow()))
  b:failure(); b:failure()
  print("after " .. b:state() .. " " .. tostring(b:allow()))
  local t0 = os.time()
  while b:state() == "open" and os.time() - t0 < 10 do end
  print("then " .. b:state() .. " " .. tostring(b:allow()) .. " " ..
        tostring(b:allow()) .. " " .. tostring(b:allow()))
  b:success(); b:success()
  print("closed " .. b:state())
  b:trip()
  print("tripped " .. b:state())
  print("same " .. tostring(swit.breaker("payments", { failure_threshold = 2,
        success_threshold = 2, recovery_timeout = 20 }) == b))
end)
]])
    assert.equal(0, code, err)
    assert.matches("start closed true", out)
    assert.matches("after open false", out)
    assert.matches("then half_open true true false", out)
    assert.matches("closed closed", out)
    assert.matches("tripped open", out)
    assert.matches("same true", out)
    assert.matches("breaker 'payments': closed %-> open", err)
    assert.matches("breaker 'payments': half_open %-> closed", err)
  end)

  it("refuses bad names and options with a clear error", function()
    local code, out, err = run([[
local swit = require "swit"
swit.breaker("db", { failure_threshold = 3 })
local function try(...)
  local ok, e = pcall(swit.breaker, ...)
  print("err " .. tostring(e))
end
try("db", { failure_threshold = 4 })
try("x", { failure_threshold = 0 })
try("x", { bogus = 1 })
try("x", { failure_rate = 2 })
try("x", { recovery_timeout = "soon" })
try("", {})
try("a\nb", {})
try(42)
]])
    assert.equal(0, code, err)
    assert.matches("err [^\n]*swit.breaker%('db'%): a breaker of that name exists with other options", out)
    assert.matches("err [^\n]*swit.breaker%('x'%): invalid name", out)
    assert.matches("err [^\n]*unknown option 'bogus'", out)
    assert.matches("err [^\n]*failure_rate must be a number within 0..1", out)
    assert.matches("err [^\n]*recovery_timeout must be milliseconds", out)
    assert.matches("err [^\n]*name must be a string", out)
  end)

  it("is always closed in swit check", function()
    local dir = t.dir({ ["swit.yaml"] = t.config({ "s.lua" }), ["s.lua"] = [[
local swit = require "swit"
local b = swit.breaker("db")
b:failure(); b:failure(); b:failure(); b:failure(); b:failure()
assert(b:allow() and b:state() == "closed")
swit.on("t", function() end)
]] })
    local code, out, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. dir)
    assert.equal(0, code, (out or "") .. (err or ""))
  end)
end)

describe("subscription circuit breaker #lua", function()
  it("swit.fatal opens the circuit and pauses the subscription", function()
    local yaml = [[
server: {name: spec, admin: {listen: "off"}}
messaging:
  broker: {type: memory}
  subscribers:
    default: {max_attempts: 1}
    spec:
      circuit_breaker: {enabled: true, failure_threshold: 100, recovery_timeout: 1h}
lua:
  scripts: [s.lua]
]]
    local code, out, err = t.run_scripts(yaml, { ["s.lua"] = [[
local swit = require "swit"
swit.on("orders", function(msg)
  if msg:payload() == "boom" then return swit.fatal("bad state") end
  print("handled " .. msg:payload())
end)
swit.on_start(function() swit.publish("orders", "boom") end)
]] })
    assert.equal(0, code, err)
    assert.matches("circuit of 'orders' %(group spec%): closed %-> open: subscription paused", err)
  end)
end)

describe("error classification #lua", function()
  it("dead-letters a msg:json() decode error at once by the default rule", function()
    local yaml = [[
server: {name: spec, admin: {listen: "off"}}
messaging:
  broker: {type: memory}
  subscribers:
    default: {max_attempts: 1}
    spec:
      max_attempts: 3
      retry_delay: 1ms
      errors: {enabled: true, critical: ["disk on fire"]}
lua:
  scripts: [s.lua]
]]
    local code, out, err = t.run_scripts(yaml, { ["s.lua"] = [[
local swit = require "swit"
swit.on("orders", function(msg)
  print("attempt " .. msg:payload() .. " " .. msg:attempt())
  if msg:payload() == "fire" then error("disk on fire") end
  msg:json()
end)
swit.on("orders.dlq", { group = "dlq" }, function(msg)
  print("dead " .. msg:payload() .. " " .. tostring(msg:header("x-swit-error")))
end)
swit.on_start(function() swit.publish("orders", "{not json") swit.publish("orders", "fire") end)
]] })
    assert.equal(0, code, err)
    assert.matches("attempt {not json 1", out)
    assert.is_nil(out:find("attempt {not json 2", 1, true))
    assert.matches("dead {not json [^\n]*msg:json%(%): invalid JSON payload", out)
    assert.matches("dead fire [^\n]*disk on fire", out)
    assert.is_nil(out:find("attempt fire 2", 1, true))
    assert.matches("critical error in the handler of 'orders' %(group spec%)", err)
  end)
end)
