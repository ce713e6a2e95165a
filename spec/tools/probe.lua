-- spec/tools/probe.lua - run by `swit check` for spec/tools/annotations_spec.lua:
-- prints what the real `swit` module offers, one line per member:
--   <class> <name> function <param,param,...>   (or ? for a C function)
--   <class> <name> field
-- Classes are those of editor/luals/swit/*.lua. Everything is read from
-- the module the binary loaded: the msg methods from a second run of the
-- same lua/swit/init.lua with ffi.metatype captured (the first run's
-- metatype cannot be read back), the options of swit.on from its own
-- table, those of swit.publish by what it reads, the reload hooks by
-- calling the host's entry points. Errors here fail the check.
local swit = require "swit"
local ffi = require "ffi"
local root = assert(os.getenv("SWIT_PROBE_ROOT"), "SWIT_PROBE_ROOT")

local function emit(class, name, kind, params)
  print(("%s %s %s %s"):format(class, name, kind, params or ""))
end

local function params(f, skip)
  local info = debug.getinfo(f, "Su")
  if info.what == "C" then return "?" end
  local p = {}
  for i = 1 + skip, info.nparams do p[#p + 1] = (debug.getlocal(f, i)) end
  if info.isvararg then p[#p + 1] = "..." end
  return table.concat(p, ",")
end

-- skip = 1 for methods: their first parameter is the object
local function members(class, t, skip)
  for k, v in pairs(t) do
    if type(k) == "string" and not k:find("^__") then
      if type(v) == "function" then emit(class, k, "function", params(v, skip))
      else emit(class, k, "field") end
    end
  end
end

local function upvalue(f, name)
  for i = 1, 255 do
    local n, v = debug.getupvalue(f, i)
    if n == nil then break end
    if n == name then return v end
  end
  error("no upvalue " .. name)
end

members("swit", swit, 0)
members("swit.metrics", swit.metrics, 0)
members("swit.json", require "swit.json", 0)

local c = swit.metrics.counter("annotations_probe_total", "probe", { "l" })
members("swit.Metric", getmetatable(c), 1)
members("swit.Series", getmetatable(c:labels("x")), 1)
members("swit.Breaker", getmetatable(swit.breaker("annotations_probe")), 1)
for k in pairs(upvalue(swit.breaker, "OPTIONS")) do
  emit("swit.BreakerOpts", k, "field")
end

local r = swit.retry("probe")
members("swit.Result", r, 0)
members("swit.Result", getmetatable(r), 1)

-- the msg methods: lua/swit/init.lua run again in this state
local Msg
local metatype = ffi.metatype
ffi.metatype = function(ct, mt)
  if ct == "swit_ffi_msgref" then Msg = mt.__index end
  return ffi.typeof(ct)
end
local again = assert(loadfile(root .. "/lua/swit/init.lua"))("swit")
ffi.metatype = metatype
for k in pairs(swit) do assert(again[k] ~= nil, "lua/swit/init.lua is not the module loaded: " .. k) end
for k in pairs(again) do assert(swit[k] ~= nil, "lua/swit/init.lua is not the module loaded: " .. k) end
members("swit.Msg", assert(Msg, "no metatype for swit_ffi_msgref"), 1)

for k in pairs(upvalue(upvalue(swit.on, "check_opts"), "ON_OPTS")) do
  emit("swit.OnOpts", k, "field")
end

local read = {}
swit.publish("probe", "x", setmetatable({}, { __index = function(_, k) read[k] = true end }))
for k in pairs(read) do emit("swit.PublishOpts", k, "field") end

-- the reload hooks: the host's entry points call what scripts define
local host = debug.getregistry()["swit.host"]
function swit.export() return "probe-export" end
if host.export() == "probe-export" then emit("swit", "export", "field") end
swit.export = nil
local got
function swit.import(v) got = v end
host.import("probe-import")
if got == "probe-import" then emit("swit", "import", "field") end
swit.import = nil
