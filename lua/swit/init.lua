-- lua/swit/init.lua - the Lua API of swit: require "swit".
--
-- Loaded once into every worker's lua_State (the host embeds this file in
-- its binary; host/runtime/lua_state.c runs it after swit.core, the FFI
-- surface). It records what the user's scripts register (swit.on,
-- swit.use, ...) and runs the per-batch dispatch loop that the host enters
-- with one lua_pcall. The chunk returns two tables: the public `swit`
-- (what require "swit" gives scripts) and the host's entry points
-- (dispatch, finalize, ...), which the runtime keeps in the registry:
-- nothing internal hangs off the public table.
--
-- Ownership: a msg is a borrowed view into the worker's batch, valid for
-- the handler call only; msg:payload() and friends return Lua strings
-- (copies) that can be kept.
-- The host passes the module name and the bounds of the options that
-- have a config twin (host/runtime/lua_state.c, push_limits).
local _, LIMITS = ...
local ffi = require "ffi"
local json = require "swit.json"        -- decoder in C (bindings/lua_json.c)
local json_safe = require "cjson.safe"  -- encoder for table payloads

local core = require "swit.core"        -- the FFI surface (internal)
local api, W, C = core.api, core.W, core.C
local getinfo = debug.getinfo           -- before a script can replace it

local RES_RETRY, RES_REJECT = C.SWIT_RETRY, C.SWIT_REJECT
local RES_FATAL = C.SWIT_FATAL
local F_TRACED = C.SWIT_MSG_F_TRACED

local swit = { version = core.version, ABI = core.abi, null = json.null }
swit.metrics = require "swit.metrics"   -- counters, gauges, histograms
swit.breaker = require "swit.breaker"   -- circuit breakers for dependencies
local host = {}                         -- the host's entry points

-- Registrations are frozen once the scripts have loaded: swit.on and
-- friends called later (say from on_start) would silently do nothing.
local loaded = false
local function while_loading(what)
  if loaded then
    error(what .. ": handlers, middleware and timers can only be " ..
          "registered while the scripts load", 3)
  end
end

local reg = {
  subs = {},      -- { topic, group, ordering, max_attempts, dead_letter, fn }
  seen = {},      -- topic .. "\0" .. group -> true
  middleware = {},
  on_start = {},
  on_load = {},
  timers = {},
}

---------------------------------------------------------------------------
-- Messages (cdata metatype over swit_ffi_msg)

local str_out = ffi.new("const char *[2]")
local len_out = ffi.new("size_t[2]")

local Msg = {}

-- The slot of a msg still being handled, or an error: a msg is borrowed
-- for its handler call (copy what you keep: msg:payload(), msg:headers()).
local function live(r)
  local m = r.slot
  if m.serial ~= r.serial then
    error("msg used after its handler returned: a msg is valid only during " ..
          "its handler call; keep copies (msg:payload(), msg:headers())", 3)
  end
  return m
end

function Msg.topic(r)
  local m = live(r)
  return ffi.string(m.v.topic, m.v.topic_len)
end

function Msg.key(r)
  local m = live(r)
  if m.v.key_len == 0 then return nil end
  return ffi.string(m.v.key, m.v.key_len)
end

function Msg.payload(r)
  local m = live(r)
  return ffi.string(m.v.payload, m.v.payload_len)
end

function Msg.attempt(r)
  local m = live(r)
  return tonumber(m.attempt_no)
end

function Msg.header(r, name)
  local m = live(r)
  if api.msg_header(m, name, #name, str_out, len_out) ~= 0 then
    return nil
  end
  return ffi.string(str_out[0], len_out[0])
end

function Msg.headers(r)
  local m = live(r)
  local t, i = {}, 0
  while api.msg_header_at(m, i, str_out, len_out,
                          str_out + 1, len_out + 1) == 0 do
    t[ffi.string(str_out[0], len_out[0])] = ffi.string(str_out[1], len_out[1])
    i = i + 1
  end
  return t
end

local TID_HEX = C.SWIT_TRACE_ID_HEX
local tid_out = ffi.new("char[?]", TID_HEX + 1)

function Msg.trace_id(r)
  local m = live(r)
  if api.msg_trace_id(W, m, tid_out) ~= 0 then return nil end
  return ffi.string(tid_out, TID_HEX)
end

function Msg.set_header(r, name, value)
  local m = live(r)
  if type(name) ~= "string" or type(value) ~= "string" then
    error("msg:set_header(name, value): both must be strings", 2)
  end
  if api.msg_set_header(W, m, name, #name, value, #value) ~= 0 then
    error("msg:set_header: out of memory", 2)
  end
end

local decode = json.decode

function Msg.json(r)
  local m = live(r)
  local v, err = decode(ffi.string(m.v.payload, m.v.payload_len))
  if v == nil then
    error("msg:json(): invalid JSON payload: " .. tostring(err), 2)
  end
  return v
end

ffi.metatype("swit_ffi_msgref", { __index = Msg })
local Ref = ffi.typeof("swit_ffi_msgref")

---------------------------------------------------------------------------
-- Results

local Result = {}
Result.__index = Result

local function result(code, reason, default)
  if reason == nil then reason = default end
  return setmetatable({ code = code, reason = tostring(reason) }, Result)
end

function swit.retry(err) return result(RES_RETRY, err, "retry requested") end
function swit.reject(reason) return result(RES_REJECT, reason, "rejected") end
function swit.fatal(reason) return result(RES_FATAL, reason, "fatal") end

---------------------------------------------------------------------------
-- Registration

-- NUL and control bytes: never part of a topic name (a C string would
-- cut it at NUL, a log line would break at a newline)
local CONTROL = "[%z\1-\31\127]"
local ORDERINGS = { key = true, none = true, partition = true }
local ON_OPTS = { group = "string", ordering = "string",
                  max_attempts = "number", dead_letter = "string",
                  exactly_once = "boolean", jetstream = "boolean" }

-- Set only in the config, where the host enforces them for every entry
-- point (host/resil/limit.c): one limit per subscription, not per handler.
local CONFIG_ONLY = { concurrency = true, rate_limit = true }

local function check_opts(opts)
  for k, v in pairs(opts) do
    local want = ON_OPTS[k]
    if CONFIG_ONLY[k] then
      error(("swit.on: option '%s' is not a handler option: set " ..
             "messaging.subscribers.<group>.%s in the config (one limit " ..
             "per subscription, docs/resilience.md)"):format(k, k), 3)
    end
    if not want then
      error(("swit.on: unknown option '%s' (expected group, ordering, " ..
             "max_attempts, dead_letter, exactly_once, jetstream)")
            :format(tostring(k)), 3)
    end
    if type(v) ~= want then
      error(("swit.on: option '%s' must be a %s, got %s")
            :format(k, want, type(v)), 3)
    end
  end
  if opts.ordering and not ORDERINGS[opts.ordering] then
    error(("swit.on: ordering must be \"key\", \"partition\" or \"none\", got %q")
          :format(opts.ordering), 3)
  end
  local n = opts.max_attempts
  if n and not (n >= LIMITS.max_attempts_min and n <= LIMITS.max_attempts_max
                and n == math.floor(n)) then
    error(("swit.on: max_attempts must be an integer in %d..%d (as " ..
           "messaging.subscribers.*.max_attempts), got %s")
          :format(LIMITS.max_attempts_min, LIMITS.max_attempts_max,
                  tostring(n)), 3)
  end
  for _, k in ipairs({ "group", "dead_letter" }) do
    local v = opts[k]
    if v and (v == "" or #v > LIMITS.topic_max or v:find(CONTROL) or
              v:find(" ")) then
      error(("swit.on: option '%s' must be 1..%d bytes without spaces or " ..
             "control characters"):format(k, LIMITS.topic_max), 3)
    end
  end
end

function swit.on(topic, opts, fn)
  while_loading("swit.on")
  if type(opts) == "function" and fn == nil then opts, fn = nil, opts end
  if type(topic) ~= "string" or topic == "" then
    error("swit.on(topic, [opts], fn): topic must be a non-empty string", 2)
  end
  if topic:find(CONTROL) then
    error("swit.on: the topic has a NUL or control character", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("swit.on(topic, [opts], fn): opts must be a table", 2)
  end
  if type(fn) ~= "function" then
    error("swit.on(topic, [opts], fn): fn must be a function", 2)
  end
  if #topic > LIMITS.topic_max or topic:find(" ") then
    error(("swit.on(topic, [opts], fn): topic must be at most %d bytes " ..
           "without spaces"):format(LIMITS.topic_max), 2)
  end
  opts = opts or {}
  check_opts(opts)
  if opts.dead_letter == topic then
    error(("swit.on: dead_letter '%s' is the handler's own topic (a failed " ..
           "message would come back to the handler that failed it)")
          :format(topic), 2)
  end
  local id = topic .. "\0" .. (opts.group or "")
  if reg.seen[id] then
    error(("swit.on: topic '%s' already has a handler for group '%s'")
          :format(topic, opts.group or "(default)"), 2)
  end
  reg.seen[id] = true
  reg.subs[#reg.subs + 1] = {
    topic = topic, group = opts.group, ordering = opts.ordering or "key",
    max_attempts = opts.max_attempts, dead_letter = opts.dead_letter,
    exactly_once = opts.exactly_once, jetstream = opts.jetstream,
    fn = fn, script = getinfo(2, "S").source,  -- the caller's chunk name
  }
end

function swit.use(fn)
  while_loading("swit.use")
  if type(fn) ~= "function" then
    error("swit.use(fn): fn must be a function(msg, next)", 2)
  end
  reg.middleware[#reg.middleware + 1] = fn
end

function swit.on_start(fn)
  while_loading("swit.on_start")
  if type(fn) ~= "function" then error("swit.on_start(fn): fn must be a function", 2) end
  reg.on_start[#reg.on_start + 1] = fn
end

-- A self-check run once when a code generation is validated (at start
-- and before a reload is accepted); an error rejects the generation.
function swit.on_load(fn)
  while_loading("swit.on_load")
  if type(fn) ~= "function" then error("swit.on_load(fn): fn must be a function", 2) end
  reg.on_load[#reg.on_load + 1] = fn
end

function swit.every(ms, fn)
  while_loading("swit.every")
  if type(ms) ~= "number" or not (ms >= 1 and ms <= LIMITS.every_max_ms) then
    error(("swit.every(duration_ms, fn): duration_ms must be a number in " ..
           "1..%d (a day), got %s"):format(LIMITS.every_max_ms, tostring(ms)), 2)
  end
  if type(fn) ~= "function" then error("swit.every(duration_ms, fn): fn must be a function", 2) end
  reg.timers[#reg.timers + 1] = { ms = ms, fn = fn, due = nil }
end

---------------------------------------------------------------------------
-- Publishing and logging

local errbuf = ffi.new("char[256]")
local hdr_cap = 16
local hdrs = ffi.new("swit_header[?]", hdr_cap)

local function fill_headers(t)
  local n = 0
  for k, v in pairs(t) do
    if type(k) ~= "string" or type(v) ~= "string" then
      return nil, "headers must map strings to strings"
    end
    if n == hdr_cap then
      local bigger = ffi.new("swit_header[?]", hdr_cap * 2)
      ffi.copy(bigger, hdrs, ffi.sizeof("swit_header") * hdr_cap)
      hdrs, hdr_cap = bigger, hdr_cap * 2
    end
    local h = hdrs[n]
    h.name, h.name_len, h.value, h.value_len = k, #k, v, #v
    n = n + 1
  end
  return n
end

function swit.publish(topic, payload, opts)
  if type(topic) ~= "string" or topic == "" then
    return nil, "swit.publish: topic must be a non-empty string"
  end
  if topic:find(CONTROL) then
    return nil, "swit.publish: the topic has a NUL or control character"
  end
  local pt = type(payload)
  if pt == "table" then
    local s, err = json_safe.encode(payload)
    if not s then return nil, "swit.publish: cannot encode payload as JSON: " .. err end
    payload = s
  elseif pt ~= "string" then
    return nil, "swit.publish: payload must be a string or a table, got " .. pt
  end
  local key, nh = nil, 0
  if opts ~= nil then
    if type(opts) ~= "table" then return nil, "swit.publish: opts must be a table" end
    key = opts.key
    if key ~= nil and type(key) ~= "string" then
      return nil, "swit.publish: opts.key must be a string"
    end
    if opts.headers ~= nil then
      local err
      nh, err = fill_headers(opts.headers)
      if not nh then return nil, "swit.publish: " .. err end
    end
  end
  local rc = api.publish(W, topic, #topic, key, key and #key or 0,
                         payload, #payload, hdrs, nh, errbuf,
                         ffi.sizeof(errbuf))
  if rc ~= 0 then return nil, ffi.string(errbuf) end
  return true
end

local LEVELS = {}                       -- "debug" -> SWIT_LOG_DEBUG, ...
for _, name in ipairs({ "debug", "info", "warn", "error" }) do
  LEVELS[name] = C["SWIT_LOG_" .. name:upper()]
end

function swit.log(level, fmt, ...)
  local lv = LEVELS[level]
  if not lv then
    error("swit.log(level, fmt, ...): level must be debug, info, warn or error", 2)
  end
  local s = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  api.log(W, lv, s, #s)
end

function swit.worker_id()
  return tonumber(W.id)
end

-- The code generation running this call: 1 at start, +1 per reload.
function swit.generation()
  return tonumber(W.generation)
end

---------------------------------------------------------------------------
-- Host entry points: the second table this chunk returns, kept by the
-- runtime in the registry and called through the Lua C API.

local handlers = {}   -- sub id -> handler wrapped in the middleware chain

local function chain(fn)
  local h = fn
  for i = #reg.middleware, 1, -1 do
    local mw, nxt = reg.middleware[i], h
    h = function(m) return mw(m, nxt) end
  end
  return h
end

-- After all scripts ran: the registrations, for the host to map to its
-- subscription ids (stable across generations).
function host.finalize()
  loaded = true
  local out = {}
  for i, s in ipairs(reg.subs) do
    out[i] = { topic = s.topic, group = s.group, ordering = s.ordering,
               max_attempts = s.max_attempts, dead_letter = s.dead_letter,
               exactly_once = s.exactly_once, jetstream = s.jetstream,
               script = s.script }
  end
  return out
end

-- ids[i] is the host's subscription id for registration i.
function host.bind(ids)
  for i, s in ipairs(reg.subs) do handlers[ids[i]] = chain(s.fn) end
end

-- Runs every on_load self-check; returns nil or the first error.
function host.on_load()
  for _, fn in ipairs(reg.on_load) do
    local ok, err = pcall(fn)
    if not ok then return "swit.on_load: " .. tostring(err) end
  end
  return nil
end

-- State hand-over between generations: the old state's swit.export()
-- result goes (serialized by the host) to the new state's swit.import().
function host.export()
  if type(swit.export) ~= "function" then return nil end
  return swit.export()
end

function host.import(t)
  if type(swit.import) == "function" then swit.import(t) end
end

local function set_result(m, r)
  local code, reason
  if getmetatable(r) == Result then
    code, reason = r.code, r.reason
  elseif r == false then
    code, reason = RES_RETRY, "handler returned false"
  else
    code, reason = RES_RETRY, "handler returned a " .. type(r) ..
      " (return nothing or true to ack, or swit.retry/reject/fatal)"
  end
  api.msg_set_result(W, m, code, reason, #reason)
end

-- One call per batch: messages from..n-1 of W.msgs. A Lua error aborts
-- the loop; the host marks W.cursor's message for retry and calls again
-- from the next one. Once the stop's deadline passed (W.stop) it returns
-- the first message it did not run; the host gives those back.
function host.dispatch(from, n)
  local msgs = W.msgs
  for i = from, n - 1 do
    if W.stop ~= 0 then return i end
    W.cursor = i
    local m = msgs + i
    local f = m.flags
    if f == 0 then
      local r = handlers[m.sub](Ref(m, m.serial))
      m.serial = 0                      -- the msg given out is stale now
      if r ~= nil and r ~= true then set_result(m, r) end
    elseif f == F_TRACED then           -- sampled: its span's times
      api.span_mark(W, i, 0)
      local r = handlers[m.sub](Ref(m, m.serial))
      m.serial = 0
      if r ~= nil and r ~= true then set_result(m, r) end
      api.span_mark(W, i, 1)
    end
  end
end

-- Runs every on_start function; returns nil or the first error.
function host.on_start()
  for _, fn in ipairs(reg.on_start) do
    local ok, err = pcall(fn)
    if not ok then return "swit.on_start: " .. tostring(err) end
  end
  return nil
end

-- Runs the swit.every timers that are due; returns the next due time in
-- ms (monotonic), or -1 when there are none.
function host.timers(now)
  local next_due = -1
  for _, t in ipairs(reg.timers) do
    if t.due == nil then t.due = now + t.ms end
    if now >= t.due then
      local ok, err = pcall(t.fn)
      if not ok then
        collectgarbage()      -- past lua.limits.memory: room to log again
        swit.log("error", "swit.every: %s", tostring(err))
      end
      t.due = now + t.ms
    end
    if next_due < 0 or t.due < next_due then next_due = t.due end
  end
  return next_due
end

return swit, host
