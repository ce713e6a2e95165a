-- spec/tools/annotations_spec.lua - editor/luals/swit/*.lua (the LuaLS
-- definitions shipped with swit) against the real module: the swit
-- binary loads it and spec/tools/probe.lua lists every function (with its
-- parameter names), field, method and option; the definitions must list
-- the same, no more and no less. Also checks that each definition's
-- ---@param lines name the parameters of its function line, and that a
-- drift on either side is caught.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local FILES = { "editor/luals/swit/init.lua", "editor/luals/swit/json.lua" }

-- The members a definitions file declares, as probe.lua prints them:
-- "<class> <name> function <params>" or "<class> <name> field"; and a
-- list of problems found in the file itself.
local function declared(text, file, into, problems)
  local class, var, pending = nil, {}, nil
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local where = file .. ":" .. lineno
    local c = line:match("^%-%-%-@class%s+([%w_.]+)")
    if c then class = c end
    local f = line:match("^%-%-%-@field%s+([%w_]+)")
    if f then into[#into + 1] = ("%s %s field "):format(class, f) end
    local p = line:match("^%-%-%-@param%s+([%w_.]+)")
    if p then pending = pending or {}; pending[#pending + 1] = p end
    local v = line:match("^local%s+([%w_]+)%s*=%s*{}")
    if v then var[v] = class end
    local obj, sep, name, args = line:match("^function%s+([%w_]+)([.:])([%w_]+)%((.-)%)")
    if obj then
      local cls = var[obj]
      if not cls then
        problems[#problems + 1] = where .. ": " .. obj .. " is no ---@class table"
      else
        local list = {}
        for a in args:gmatch("[^,%s]+") do list[#list + 1] = a end
        local ps = table.concat(list, ",")
        if table.concat(pending or {}, ",") ~= ps then
          problems[#problems + 1] = ("%s: ---@param lines (%s) do not name the parameters (%s)")
                                    :format(where, table.concat(pending or {}, ","), ps)
        end
        into[#into + 1] = ("%s %s function %s"):format(cls, name, ps)
      end
      pending = nil
    elseif not line:find("^%-%-%-") then
      pending = nil
    end
    if sep == nil and line:find("^function") then
      problems[#problems + 1] = where .. ": a function line the test cannot read"
    end
  end
end

local function read_definitions(override)
  local decl, problems = {}, {}
  for _, f in ipairs(FILES) do
    local text = override and override[f] or assert(t.read(t.root .. "/" .. f), f)
    declared(text, f, decl, problems)
  end
  return decl, problems
end

local probed
local function probe()
  if probed then return probed end
  local dir = t.dir({ ["swit.yaml"] = ([[
server: {name: annotations}
messaging:
  broker: {type: memory}
lua:
  scripts: [%s]
]]):format(t.root .. "/spec/tools/probe.lua") })
  local code, out, err = t.swit({ "check", dir .. "/swit.yaml" },
                                { SWIT_PROBE_ROOT = t.root })
  os.execute("rm -rf " .. t.quote(dir))
  assert.equal(0, code, err)
  probed = {}
  for line in out:gmatch("[^\n]+") do
    if line:find("^swit") and not line:find(": ok$") then probed[#probed + 1] = line end
  end
  return probed
end

-- What is in `a` and not in `b`; a C function's parameters are not known
-- ("function ?"), so that one matches the same function with any.
local function missing(a, b)
  local function wild(l) return (l:gsub("function .*$", "function ?")) end
  local set, wilds, out = {}, {}, {}
  for _, l in ipairs(b) do set[l] = true; wilds[wild(l)] = true end
  for _, l in ipairs(a) do
    local known = set[l] or set[wild(l)] or (l:find("function %?$") and wilds[l])
    if not known then out[#out + 1] = l end
  end
  table.sort(out)
  return out
end

local function drift(decl, real)
  local extra, unannotated = missing(decl, real), missing(real, decl)
  local msg = {}
  if #extra > 0 then
    msg[#msg + 1] = "annotated but not in the module (or with other parameters):\n  " ..
                    table.concat(extra, "\n  ")
  end
  if #unannotated > 0 then
    msg[#msg + 1] = "in the module but not annotated (or with other parameters):\n  " ..
                    table.concat(unannotated, "\n  ")
  end
  return table.concat(msg, "\n")
end

describe("tools: the LuaLS definitions", function()
  it("list exactly what the real module exports", function()
    local decl, problems = read_definitions()
    assert.same({}, problems)
    local real = probe()
    assert.is_true(#real > 40, "the probe listed only " .. #real .. " members")
    assert.equal("", drift(decl, real))
  end)

  it("catch a function missing from the definitions, an invented one and a renamed parameter", function()
    local f = FILES[1]
    local text = assert(t.read(t.root .. "/" .. f))
    local changed = text:gsub("function Msg:json%(%) end", "")
                        :gsub("function swit.worker_id%(%) end",
                              "function swit.worker_id() end\nfunction swit.bogus() end")
                        :gsub("%-%-%-@param ms number >= 1\n%-%-%-@param fn fun%(%)\nfunction swit.every%(ms, fn%)",
                              "---@param delay number\n---@param fn fun()\nfunction swit.every(delay, fn)")
    local decl = read_definitions({ [f] = changed })
    local d = drift(decl, probe())
    assert.truthy(d:find("annotated but not in the module.-swit bogus function", 1), d)
    assert.truthy(d:find("annotated but not in the module.-swit every function delay,fn"), d)
    assert.truthy(d:find("not annotated.-swit.Msg json function"), d)
    assert.truthy(d:find("not annotated.-swit every function ms,fn"), d)
  end)

  it("catch ---@param lines that do not match the function", function()
    local f = FILES[2]
    local text = assert(t.read(t.root .. "/" .. f))
    local _, problems = read_definitions({ [f] = text:gsub("@param text", "@param txt") })
    assert.equal(1, #problems)
    assert.truthy(problems[1]:find("json.lua:%d+: %-%-%-@param lines %(txt%) do not name the parameters %(text%)"),
                  problems[1])
  end)

  it("are valid Lua that returns the module table", function()
    for _, f in ipairs(FILES) do
      local chunk = assert(loadfile(t.root .. "/" .. f))
      assert.equal("table", type(chunk()), f)
    end
  end)
end)
