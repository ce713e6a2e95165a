-- lua/swit/breaker.lua - swit.breaker: circuit breakers for a handler's
-- own dependencies (a payment API, a database), shared by every worker
-- of the host (the state lives in C: host/resil/breaker.c).
--
--   local payments = swit.breaker("payments", { failure_threshold = 5,
--                                               recovery_timeout = "30s" })
--   swit.on("orders", function(msg)
--     if not payments:allow() then return swit.retry("payments circuit open") end
--     local ok, err = call_payments(msg)
--     if ok then payments:success() else payments:failure() end
--   end)
--
-- Every call that allow() let through should record its outcome (success
-- or failure): while half-open the breaker lets success_threshold trial
-- calls through and waits for their outcomes. Requires the swit module
-- (its cdef).
local ffi = require "ffi"

local C = ffi.C
local W = C.swit_ffi_worker_current()

local ERRORS = {
  [-1] = "invalid name (1..128 printable bytes) or options",
  [-11] = "a breaker of that name exists with other options",
  [-6] = "too many breakers (256)",
  [-2] = "out of memory",
}
local STATES = { [0] = "closed", [1] = "open", [2] = "half_open" }
local UNITS = { ms = 1, s = 1000, m = 60000, h = 3600000 }

-- milliseconds from a number (ms) or a duration string ("250ms", "30s")
local function ms(v, what)
  if type(v) == "number" and v >= 0 and v <= 1e11 then return math.floor(v) end
  if type(v) == "string" then
    local n, u = v:match("^(%d+%.?%d*)(%a*)$")
    if n and UNITS[u ~= "" and u or "ms"] then
      return math.floor(tonumber(n) * UNITS[u ~= "" and u or "ms"])
    end
  end
  error(("swit.breaker: %s must be milliseconds or a duration like \"30s\"")
        :format(what), 3)
end

local function int(v, dflt, what)
  if v == nil then return dflt end
  if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > 1e9 then
    error(("swit.breaker: %s must be an integer >= 0"):format(what), 3)
  end
  return v
end

local Breaker = {}
Breaker.__index = Breaker

function Breaker:allow() return C.swit_ffi_breaker_allow(W, self.id) == 1 end
function Breaker:success() C.swit_ffi_breaker_record(W, self.id, C.SWIT_BREAKER_SUCCESS) end
function Breaker:failure() C.swit_ffi_breaker_record(W, self.id, C.SWIT_BREAKER_FAILURE) end
-- a critical error: open now
function Breaker:trip() C.swit_ffi_breaker_record(W, self.id, C.SWIT_BREAKER_CRITICAL) end
function Breaker:state() return STATES[C.swit_ffi_breaker_state(W, self.id)] end

local cache = {}   -- name -> Breaker, per Lua state

return function(name, opts)
  if type(name) ~= "string" then
    error("swit.breaker(name, opts): name must be a string", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("swit.breaker(name, opts): opts must be a table", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "failure_threshold" and k ~= "success_threshold" and
       k ~= "recovery_timeout" and k ~= "failure_rate" and
       k ~= "min_calls" and k ~= "window" then
      error(("swit.breaker: unknown option '%s'"):format(tostring(k)), 2)
    end
  end
  local rate = opts.failure_rate or 0
  if type(rate) ~= "number" or not (rate >= 0 and rate <= 1) then
    error("swit.breaker: failure_rate must be a number within 0..1", 2)
  end
  local id = C.swit_ffi_breaker_get(W, name, #name,
    int(opts.failure_threshold, 5, "failure_threshold"),
    int(opts.success_threshold, 2, "success_threshold"),
    ms(opts.recovery_timeout or 30000, "recovery_timeout"), rate,
    int(opts.min_calls, 10, "min_calls"), ms(opts.window or 60000, "window"))
  if id < 0 then
    error(("swit.breaker('%s'): %s"):format(name, ERRORS[id] or tostring(id)), 2)
  end
  local b = cache[name]
  if not b then
    b = setmetatable({ id = id, name = name }, Breaker)
    cache[name] = b
  end
  return b
end
