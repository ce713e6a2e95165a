-- lua/swit/metrics.lua - swit.metrics: counters, gauges and histograms
-- that handlers define and update, exported on the admin server's
-- /metrics beside the host's own swit_* metrics.
--
--   local orders = swit.metrics.counter("shop_orders_total", "Orders seen",
--                                       { "status" })
--   orders:labels("ok"):inc()
--   local size = swit.metrics.histogram("shop_order_items", "Items per order",
--                                       nil, { 1, 2, 5, 10, 50 })
--   size:observe(#order.items)
--
-- A series (a metric and one set of label values) is registered with the
-- host once per Lua state and cached here; updates are one FFI call each.
-- Counters and histograms count per worker and are summed at scrape time;
-- gauges are shared by all workers (last write wins), so set them from
-- timers or rarely, not per message. The FFI surface comes from
-- swit.core (lua/swit/core.lua).
local ffi = require "ffi"
local core = require "swit.core"

local api, W, C = core.api, core.W, core.C

local M = {}

local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                          10 }
local ERRORS = {
  [C.SWIT_E_INVAL] = "invalid name (use [a-zA-Z_:][a-zA-Z0-9_:]*, not " ..
                     "starting with swit_)",
  [C.SWIT_E_EXISTS] = "the name is already registered as another metric type",
  [C.SWIT_E_FULL] = "too many metric series",
  [C.SWIT_E_NOMEM] = "out of memory",
}

local REPLACEMENT = "\239\191\189" -- U+FFFD

-- s with control bytes (but \n) and invalid UTF-8 replaced by U+FFFD, so
-- /metrics always parses whatever a label value or help text holds.
local function clean(s)
  if not s:find("[%z\1-\9\11-\31\127-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local b = s:byte(i)
    local k = b >= 0xc2 and b <= 0xdf and 2 or b >= 0xe0 and b <= 0xef and 3
              or b >= 0xf0 and b <= 0xf4 and 4 or 1
    local ok = b == 10 or (b >= 0x20 and b < 0x7f)
    if k > 1 then
      local seq = s:sub(i, i + k - 1)
      local b2 = seq:byte(2) or 0
      ok = #seq == k and not seq:find("[^\128-\191]", 2)
           and not (b == 0xe0 and b2 < 0xa0) and not (b == 0xed and b2 >= 0xa0)
           and not (b == 0xf0 and b2 < 0x90) and not (b == 0xf4 and b2 >= 0x90)
      if not ok then k = 1 end
    end
    out[#out + 1] = ok and s:sub(i, i + k - 1) or REPLACEMENT
    i = i + k
  end
  return table.concat(out)
end

local function escape(v)
  return (clean(tostring(v)):gsub('[\\"\n]', { ["\\"] = "\\\\",
                                               ['"'] = '\\"', ["\n"] = "\\n" }))
end

local Series = {}
Series.__index = Series

function Series:inc(v)
  v = v or 1
  if self.kind == C.SWIT_METRIC_COUNTER then
    if v < 0 then error("counter:inc(v): v must be >= 0", 2) end
    api.metric_add(W, self.slot, v)
  elseif self.kind == C.SWIT_METRIC_GAUGE then
    api.metric_gauge(W, self.slot, v, 1)
  else
    error("inc: not a counter or gauge", 2)
  end
end

function Series:dec(v)
  if self.kind ~= C.SWIT_METRIC_GAUGE then error("dec: not a gauge", 2) end
  api.metric_gauge(W, self.slot, -(v or 1), 1)
end

function Series:set(v)
  if self.kind ~= C.SWIT_METRIC_GAUGE then error("set: not a gauge", 2) end
  api.metric_gauge(W, self.slot, v, 0)
end

function Series:observe(v)
  if self.kind ~= C.SWIT_METRIC_HISTOGRAM then
    error("observe: not a histogram", 2)
  end
  api.metric_observe(W, self.slot, self.nb, self.bounds, v)
end

local Family = {}
Family.__index = Family

local function series(fam, values)
  local parts = {}
  for i, name in ipairs(fam.labelnames) do
    local v = values[i]
    if v == nil then
      error(("%s: label '%s' needs a value"):format(fam.name, name), 3)
    end
    parts[i] = name .. '="' .. escape(v) .. '"'
  end
  local l = table.concat(parts, ",")
  local slot = api.metric_register(W, fam.kind, fam.name, #fam.name,
                                   fam.help, #fam.help, l, #l,
                                   fam.bounds, fam.nb)
  if slot == C.SWIT_E_FULL or slot == C.SWIT_E_NOMEM then
    -- telemetry never fails business logic: the host counted and warned
    -- (swit_metric_series_dropped_total); updates to this series do nothing
    return setmetatable({ slot = -1, kind = fam.kind, nb = fam.nb,
                          bounds = fam.bounds, dropped = true }, Series)
  end
  if slot < 0 then
    error(("swit.metrics: %s: %s"):format(fam.name,
          ERRORS[slot] or ("error " .. slot)), 3)
  end
  return setmetatable({ slot = slot, kind = fam.kind, nb = fam.nb,
                        bounds = fam.bounds }, Series)
end

-- The series for these label values (in labelnames order); cached.
function Family:labels(...)
  local n = select("#", ...)
  local key = n == 1 and tostring((...)) or table.concat({ ... }, "\0")
  local s = self.children[key]
  if not s then
    s = series(self, { ... })
    -- a dropped series is not kept: label values without end must not
    -- grow this table once the cap is reached
    if not s.dropped then self.children[key] = s end
  end
  return s
end

-- A family without labels is its own series.
for _, m in ipairs({ "inc", "dec", "set", "observe" }) do
  Family[m] = function(self, v)
    if not self.default then
      error(("%s has labels: use :labels(...):%s()"):format(self.name, m), 2)
    end
    return self.default[m](self.default, v)
  end
end

local function define(kind, name, help, labelnames, buckets)
  if type(name) ~= "string" or not name:match("^[a-zA-Z_:][a-zA-Z0-9_:]*$") then
    error("swit.metrics: the name must match [a-zA-Z_:][a-zA-Z0-9_:]*", 3)
  end
  if help ~= nil and type(help) ~= "string" then
    error("swit.metrics: help must be a string", 3)
  end
  labelnames = labelnames or {}
  if type(labelnames) ~= "table" then
    error("swit.metrics: labelnames must be a list of strings", 3)
  end
  for _, l in ipairs(labelnames) do
    if type(l) ~= "string" or not l:match("^[a-zA-Z_][a-zA-Z0-9_]*$") or
       l == "le" then
      error(("swit.metrics: bad label name %q"):format(tostring(l)), 3)
    end
  end
  local fam = setmetatable({ kind = kind, name = name,
                             help = clean(help or ""),
                             labelnames = labelnames, children = {}, nb = 0 },
                           Family)
  if kind == C.SWIT_METRIC_HISTOGRAM then
    buckets = buckets or DEFAULT_BUCKETS
    if #buckets < 1 or #buckets > C.SWIT_METRIC_MAX_BUCKETS then
      error(("swit.metrics: a histogram needs 1 to %d buckets")
            :format(C.SWIT_METRIC_MAX_BUCKETS), 3)
    end
    for i = 2, #buckets do
      if buckets[i] <= buckets[i - 1] then
        error("swit.metrics: buckets must be ascending", 3)
      end
    end
    fam.nb = #buckets
    fam.bounds = ffi.new("double[?]", #buckets, buckets)
  end
  if #labelnames == 0 then fam.default = series(fam, {}) end
  return fam
end

function M.counter(name, help, labelnames)
  return define(C.SWIT_METRIC_COUNTER, name, help, labelnames)
end

function M.gauge(name, help, labelnames)
  return define(C.SWIT_METRIC_GAUGE, name, help, labelnames)
end

function M.histogram(name, help, labelnames, buckets)
  return define(C.SWIT_METRIC_HISTOGRAM, name, help, labelnames, buckets)
end

return M
