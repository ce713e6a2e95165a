-- spec/tools/luacheck_spec.lua - the luacheck preset for user scripts
-- (editor/luacheckrc): the examples pass it, and each rule it adds is
-- shown to fire on a script that breaks it (file:line in the output).
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local preset = t.root .. "/editor/luacheckrc"

local function luacheck(paths)
  local args = { "luacheck", "--no-color", "--codes", "--config", t.quote(preset) }
  for _, p in ipairs(paths) do args[#args + 1] = t.quote(p) end
  return t.sh(table.concat(args, " "))
end

describe("tools: the luacheck preset", function()
  it("passes every Lua file under examples/", function()
    local code, out = luacheck({ t.root .. "/examples" })
    assert.equal(0, code, out)
    assert.truthy(out:find("Total: 0 warnings / 0 errors", 1, true), out)
  end)

  it("accepts a handler that ignores its msg and middleware that skips next", function()
    local dir = t.dir({ ["ok.lua"] = [[
local swit = require "swit"
swit.use(function(msg, next)
  return swit.reject("closed")
end)
swit.on("t", function(msg) print("tick") end)
function swit.export() return { n = 1 } end
]] })
    local code, out = luacheck({ dir .. "/ok.lua" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(0, code, out)
  end)

  it("reports a global set by a script and a swit used without require", function()
    local dir = t.dir({ ["bad.lua"] = [[
local swit = require "swit"
counter = 0
swit.on("t", function(msg)
  counter = counter + 1
  local unused = msg:payload()
end)
sw1t.log("info", "typo")
]] })
    local code, out = luacheck({ dir .. "/bad.lua" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(1, code, out)    -- luacheck: 1 = warnings, 2 = errors
    assert.truthy(out:find("bad.lua:2:1: (W111) setting non-standard global variable 'counter'", 1, true), out)
    assert.truthy(out:find("bad.lua:5:9: (W211) unused variable 'unused'", 1, true), out)
    assert.truthy(out:find("bad.lua:7:1: (W113) accessing undefined variable 'sw1t'", 1, true), out)
  end)
end)
