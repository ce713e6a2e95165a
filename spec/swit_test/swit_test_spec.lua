-- spec/swit_test/swit_test_spec.lua - `swit test` end to end: a user's busted
-- specs run against their config in-process (require "swit.test"),
-- busted's output handlers and exit codes passed through, and the bad
-- inputs: a spec that does not compile, a missing path, a config that
-- does not load, a handler that never returns, no busted on PATH.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

-- A scratch project: swit.yaml, handlers.lua and the given spec files.
local HANDLERS = [[
local swit = require "swit"
swit.on("in", function(msg)
  if msg:header("fail") and msg:attempt() < 3 then error("flaky " .. msg:attempt()) end
  if msg:payload() == "bad" then return swit.reject("bad input") end
  assert(swit.publish("out", msg:payload():upper(),
                      { key = msg:key(), headers = { seen = "yes" } }))
end)
swit.on("spin", function() while true do os.time() end end)
local ticks = 0
swit.every(60000, function()
  ticks = ticks + 1
  assert(swit.publish("ticks", tostring(ticks)))
end)
]]

local function project(specs, yaml)
  local files = { ["handlers.lua"] = HANDLERS,
                  ["swit.yaml"] = yaml or t.config({ "handlers.lua" }, [[
  limits: {handler_timeout: 200ms}
]]):gsub("retry_delay: 5ms, retry_max_delay: 20ms",
         "retry_delay: 1h, retry_max_delay: 1h") }
  for name, text in pairs(specs) do files[name] = text end
  return t.dir(files)
end

local function swit_test(dir, args, env)
  local parts = { "cd", t.quote(dir), "&&" }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. t.quote(v) end
  parts[#parts + 1] = t.quote(t.bin)
  parts[#parts + 1] = "test"
  for _, a in ipairs(args or {}) do parts[#parts + 1] = t.quote(a) end
  local code, out, err = t.sh(table.concat(parts, " "))
  os.execute("rm -rf " .. t.quote(dir))
  return code, out, err
end

local GOOD = [[
local t = require "swit.test"
describe("handlers", function()
  local host
  before_each(function() host = t.start() end)
  after_each(function() host:stop() end)
  it("publishes, with key and headers", function()
    host:publish("in", "hello", { key = "k1", headers = { h = "v" } })
    host:run()
    local out = host:published("out")
    assert.equal(1, #out)
    assert.equal("HELLO", out[1].payload)
    assert.equal("k1", out[1].key)
    assert.equal("yes", out[1].headers.seen)
    local acked = host:acked("in")
    assert.equal(1, #acked)
    assert.equal("v", acked[1].headers.h)
  end)
  it("retries without waiting the hour of backoff", function()
    host:publish("in", "x", { headers = { fail = "1" } })
    host:run()
    local r = host:retried("in")
    assert.equal(2, #r)
    assert.matches("flaky 1", r[1].reason)
    assert.equal(2, r[2].attempt)
    assert.equal(3, host:acked("in")[1].attempt)
  end)
  it("dead-letters a rejected message with the reason", function()
    host:publish("in", "bad")
    host:run()
    assert.equal("bad input", host:rejected("in")[1].reason)
    local dlq = host:published("in.dlq")
    assert.equal("bad input", dlq[1].headers["x-swit-error"])
  end)
  it("runs swit.every timers on an advanced clock", function()
    assert.equal(0, #host:published("ticks"))
    host:advance(180000, 60000)
    local ticks = host:published("ticks")
    assert.equal(3, #ticks)
    assert.equal("3", ticks[3].payload)
  end)
  it("bounds a handler that never returns", function()
    host:stop()
    host = t.start({ timeout_ms = 1000 })
    host:publish("spin", "x")
    local ok, err = pcall(host.run, host)
    assert.is_false(ok)
    assert.matches("did not go idle within 1000 ms", err)
  end)
  it("reads fixtures", function()
    assert.equal("fixture text\n", t.fixture("in.txt"))
  end)
end)
]]

describe("swit test #e2e", function()
  it("runs a project's specs and exits 0 when they pass", function()
    local dir = project({ ["handlers_spec.lua"] = GOOD, ["in.txt"] = "fixture text\n" })
    local code, out, err = swit_test(dir, { "handlers_spec.lua" })
    assert.equal(0, code, out .. err)
    assert.matches("6 successes / 0 failures / 0 errors / 0 pending", out)
  end)

  it("runs a config written for another broker on the memory broker", function()
    local yaml = t.config({ "handlers.lua" }):gsub("  broker: {type: memory}\n",
      "  broker:\n    type: nats\n    # a server that is not there\n" ..
      "    endpoints: [\"nats://127.0.0.1:1\"]\n    config:\n      name: x\n")
    local dir = project({ ["n_spec.lua"] = [[
local t = require "swit.test"
it("handles", function()
  local host = t.start()
  host:publish("in", "a")
  host:run()
  assert.equal("A", host:published("out")[1].payload)
  host:stop()
end)
]] }, yaml)
    local code, out, err = swit_test(dir, { "n_spec.lua" })
    assert.equal(0, code, out .. err)
    assert.matches("1 success / 0 failures", out)
  end)

  it("passes busted's output handlers through: TAP and JUnit", function()
    local dir = project({ ["handlers_spec.lua"] = GOOD, ["in.txt"] = "fixture text\n" })
    local code, out = swit_test(dir, { "-o", "TAP", "handlers_spec.lua" })
    assert.equal(0, code)
    assert.matches("1%.%.6", out)
    assert.matches("ok 1 %- handlers publishes, with key and headers", out)
    dir = project({ ["handlers_spec.lua"] = GOOD, ["in.txt"] = "fixture text\n" })
    code, out = swit_test(dir, { "-o", "junit", "handlers_spec.lua" })
    assert.equal(0, code)
    assert.matches('<testsuites', out)
    local suites = out:match("<testsuites[^>]*>")     -- attributes in any order
    assert.matches("tests='6'", suites)
    assert.matches("failures='0'", suites)
    assert.matches("errors='0'", suites)
  end)

  it("exits non-zero with busted's report when a spec fails", function()
    local dir = project({ ["f_spec.lua"] = [[
local t = require "swit.test"
it("expects too much", function()
  local host = t.start()
  host:publish("in", "a")
  host:run()
  assert.equal(2, #host:published("out"))
  host:stop()
end)
]] })
    local code, out = swit_test(dir, { "f_spec.lua" })
    assert.equal(1, code)
    assert.matches("0 successes / 1 failure", out)
    assert.matches("f_spec.lua:6", out)
  end)

  it("reports a spec file that does not compile with file:line", function()
    local dir = project({ ["broken_spec.lua"] = "describe('x', function()\n  it('y', function( end)\nend)\n" })
    local code, out, err = swit_test(dir, { "broken_spec.lua" })
    assert.is_not.equal(0, code)
    assert.matches("broken_spec.lua:2", out .. err)
  end)

  it("refuses a missing path", function()
    local code, _, err = swit_test(project({}), { "no_such_spec.lua" })
    assert.equal(2, code)
    assert.matches("swit test: no_such_spec.lua: No such file or directory", err)
  end)

  it("refuses a config that does not load, with file:line", function()
    local dir = project({ ["x_spec.lua"] = "it('x', function() end)\n" },
                        "server: {name: spec}\nmessaging:\n  broker: {type: carrier-pigeon}\n")
    local code, _, err = swit_test(dir, { "x_spec.lua" })
    assert.equal(2, code)
    assert.matches("swit test: .*swit.yaml:3:%d+: .*broker.type", err)
  end)

  it("refuses a script that does not compile, with file:line", function()
    local dir = project({ ["x_spec.lua"] = "it('x', function() end)\n" })
    local f = assert(io.open(dir .. "/handlers.lua", "a"))
    f:write("\nlocal = 1\n")
    f:close()
    local code, _, err = swit_test(dir, { "x_spec.lua" })
    assert.equal(2, code)
    assert.matches("handlers.lua:%d+:", err)
  end)

  it("says so when busted is not on PATH", function()
    local dir = project({ ["x_spec.lua"] = "it('x', function() end)\n" })
    local code, _, err = swit_test(dir, { "x_spec.lua" }, { PATH = "/nonexistent" })
    assert.equal(2, code)
    assert.matches("swit test: busted not found on PATH", err)
  end)

  it("tells a spec run outside swit test how to run it", function()
    local dir = project({})
    local code, _, err = t.sh(("cd %s && SWIT_TEST_LIB= luajit -e %s"):format(t.quote(dir),
      t.quote("package.path='" .. t.root .. "/lua/?.lua;'..package.path " ..
              "local ok, e = pcall(function() require('swit.test').start() end) " ..
              "io.stderr:write(tostring(e)) os.exit(ok and 0 or 3)")))
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(3, code)
    assert.matches("run the specs with `swit test`", err)
  end)
end)
