-- spec/e2e/log_spec.lua - server.log.format: json through the swit binary:
-- every line swit writes is a JSON object, the swit command's own
-- messages (start-up errors, "Terminated received, stopping") included;
-- an error found while the config is loaded cannot know the format and
-- stays a plain "swit: " line.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"
local cjson = require "cjson.safe"

local yaml = [[
server:
  name: logs
  admin: {listen: "off"}
  log: {format: json}
messaging:
  broker: {type: memory}
  subscribers:
    default: {max_attempts: 2, retry_delay: 5ms, retry_max_delay: 20ms}
  resources:
    subscribers: {worker_pool_size: 2}
lua:
  scripts: [h.lua]
]]

-- Every line of s decoded; fails on the first that is not a log object.
local function json_lines(s)
  local out = {}
  for line in (s or ""):gmatch("[^\n]+") do
    local j = cjson.decode(line)
    assert(type(j) == "table", "not a JSON line: " .. line)
    assert(type(j.time) == "string" and type(j.level) == "string" and
           type(j.msg) == "string", "not a log line: " .. line)
    out[#out + 1] = j
  end
  return out
end

local function find(lines, level, pattern)
  for _, j in ipairs(lines) do
    if j.level == level and j.msg:find(pattern) then return j end
  end
end

describe("server.log.format: json #e2e", function()
  it("makes every line of a run JSON, from start to stop", function()
    local p = t.start({ ["swit.yaml"] = yaml, ["h.lua"] = [[
local swit = require "swit"
swit.on("orders", function(msg) error("boom") end)
swit.on_start(function() swit.publish("orders", "o-1") end)
]] })
    t.wait_for(p, "err", "retries exhausted")
    t.signal(p, "HUP")
    t.wait_for(p, "err", "now running code generation 2")
    local out, err = t.stop(p)
    local lines = json_lines(err)
    assert.is_truthy(find(lines, "info", "^swit 0%.%d+%.%d+ running"))
    assert.is_truthy(find(lines, "warn", "h%.lua:2: boom"))
    assert.is_truthy(find(lines, "info", "^Terminated received, stopping$"))
    assert.is_truthy(find(lines, "info", "^stopped$"))
    assert.same({}, json_lines(out))          -- nothing printed to stdout
  end)

  it("writes a start-up script error as a JSON line, with file:line and exit code 2", function()
    local code, out, err = t.run_scripts(yaml, { ["h.lua"] = "error('bad at load')\n" })
    assert.equal(2, code)
    local lines = json_lines(err)
    assert.is_truthy(find(lines, "error", "h%.lua:1: bad at load"))
    assert.same({}, json_lines(out))
  end)

  it("writes swit check's script errors as JSON lines; the verdict stays on stdout", function()
    local dir = t.dir({ ["swit.yaml"] = yaml, ["h.lua"] = "swit.on(\n" })
    local code, out, err = t.swit({ "check", dir .. "/swit.yaml" })
    assert.equal(2, code)
    assert.is_truthy(find(json_lines(err), "error", "h%.lua:%d+:"))
    assert.equal("", out)
    t.save({ dir = dir }, "h.lua", "local swit = require 'swit'\nswit.on('a', function() end)\n")
    code, out, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(0, code)
    assert.is_truthy(find(json_lines(err), "info", "^handler: topic 'a'"))
    assert.matches("swit%.yaml: ok\n$", out)
  end)

  it("cannot know the format of an error in the config itself: a plain swit: line", function()
    local code, _, err = t.run_scripts(yaml .. "bogus: 1\n", { ["h.lua"] = "" })
    assert.equal(2, code)
    assert.matches("^swit: .*swit%.yaml:%d+:%d+", err)
  end)
end)
