-- lua/swit/test.lua - the swit.test module: what a user's busted spec run
-- by `swit test` uses to drive their handlers in-process.
--
-- Not embedded in the host and not loaded by it: it runs in busted's
-- LuaJIT and reaches libswit.so (SWIT_TEST_LIB, set by `swit test`)
-- through the FFI, using only the public API of swit.h. A host made here
-- reads the user's real config and scripts, with the broker section
-- replaced by the in-process memory broker, retries due at once (no
-- backoff), no admin server, HTTP ingress or script watch, and every
-- settle and publish recorded (swit_host_test_mode). The rest of the
-- config applies as written.
--
--   local t = require "swit.test"
--   local host = t.start()                 -- SWIT_TEST_CONFIG, or { config = path };
--                                          -- returns once on_start ran and all is idle
--   host:publish("orders.created", t.fixture("spec/order.json"), { key = "A-1" })
--   host:run()                             -- until idle
--   assert.equal(1, #host:published("payments.requested"))
--   host:advance(60000)                    -- swit.every timers, instantly
--   host:stop()
local ffi = require "ffi"

ffi.cdef [[
typedef struct swit_host_s swit_host_t;
int swit_host_new_from_string(swit_host_t **out, const char *yaml,
                              const char *base_dir, char *err, size_t errlen);
int swit_host_test_mode(swit_host_t *h, unsigned flags, char *err, size_t errlen);
int swit_host_test_take(swit_host_t *h, char *buf, size_t cap, size_t *len);
int swit_host_test_advance(swit_host_t *h, int64_t ms, int timeout_ms);
int swit_host_start(swit_host_t *h, char *err, size_t errlen);
int swit_host_publish(swit_host_t *h, const char *topic, const void *key,
                      size_t key_len, const void *payload, size_t payload_len,
                      const char *const *headers, uint64_t *confirm_id,
                      char *err, size_t errlen);
int swit_host_wait_idle(swit_host_t *h, int idle_ms, int timeout_ms);
int swit_host_stop(swit_host_t *h, int deadline_ms);
void swit_host_free(swit_host_t *h);
const char *swit_strerror(int code);
]]

local M = {}
local lib
local TEST_RECORD, TEST_NO_BACKOFF, TEST_NO_SERVERS = 1, 2, 4
local E_TIMEDOUT, E_SCRIPT, E_TOOBIG, E_FULL = -9, -4, -7, -6

local function C()
  if not lib then
    local path = os.getenv("SWIT_TEST_LIB")
    if not path or path == "" then
      error("swit.test: SWIT_TEST_LIB is not set: run the specs with `swit test`", 3)
    end
    lib = ffi.load(path)
  end
  return lib
end

local function read_file(path, level)
  local f, err = io.open(path, "rb")
  if not f then error("swit.test: " .. err, level + 1) end
  local s = f:read("*a")
  f:close()
  return s
end

-- The text of a fixture file (a path relative to the working directory,
-- where `swit test` runs).
function M.fixture(path)
  if type(path) ~= "string" then error("swit.test.fixture(path): path must be a string", 2) end
  return read_file(path, 2)
end

-- A minimal JSON encoder for table payloads (objects with string keys,
-- arrays, strings, finite numbers, booleans).
local function json(v, depth)
  depth = depth or 0
  if depth > 64 then error("swit.test: table too deep to encode", 0) end
  local ty = type(v)
  if ty == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t",
                ["\r"] = "\\r" })[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif ty == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("swit.test: cannot encode " .. tostring(v) .. " as JSON", 0)
    end
    return (math.floor(v) == v and math.abs(v) < 2^53) and ("%d"):format(v)
           or ("%.17g"):format(v)
  elseif ty == "boolean" then return tostring(v)
  elseif ty == "table" then
    local parts = {}
    if #v > 0 or next(v) == nil then
      for i = 1, #v do parts[i] = json(v[i], depth + 1) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, x in pairs(v) do
      if type(k) ~= "string" then error("swit.test: JSON object keys must be strings", 0) end
      parts[#parts + 1] = json(k) .. ":" .. json(x, depth + 1)
    end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("swit.test: cannot encode a " .. ty .. " as JSON", 0)
end
M.json = json

-- Decode records (format: swit.h, swit_host_test_take).
local FIELDS = { "kind", "topic", "key", "payload", "attempt", "result", "reason", "group" }

local function field(s, pos)
  local colon = s:find(":", pos, true)
  local n = tonumber(s:sub(pos, colon - 1))
  return s:sub(colon + 1, colon + n), colon + n + 1
end

local function decode(s, out)
  local pos = 1
  while pos <= #s do
    local colon = s:find(":", pos, true)
    local nf = tonumber(s:sub(pos, colon - 1))
    pos = colon + 1
    local r = { headers = {}, header_list = {} }
    for i = 1, nf do
      local v
      v, pos = field(s, pos)
      if i <= #FIELDS then r[FIELDS[i]] = v
      elseif i == 9 then if v == "0" then r.key = nil end
      elseif i % 2 == 0 then r._name = v
      else
        r.headers[r._name:lower()] = v
        r.header_list[#r.header_list + 1] = { r._name, v }
      end
    end
    r._name = nil
    r.attempt = tonumber(r.attempt)
    if r.reason == "" then r.reason = nil end
    out[#out + 1] = r
  end
end

local Host = {}
Host.__index = Host

local function check(rc, err, what)
  if rc ~= 0 then
    error(("swit.test: %s: %s"):format(what, err ~= nil and ffi.string(err) or
          ffi.string(C().swit_strerror(rc))), 3)
  end
end

-- Start a host on the user's config (opts.config, else SWIT_TEST_CONFIG)
-- with the memory broker; opts.yaml: extra YAML appended to the config;
-- opts.idle_ms (20): how long run() wants no activity; opts.timeout_ms
-- (30000): how long run() waits for that; opts.stop_ms: see stop().
-- Returns once on_start ran and the host is idle (as run()).
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("swit.test.start(opts): opts must be a table", 2) end
  local L = C()
  local path = opts.config or os.getenv("SWIT_TEST_CONFIG")
  if type(path) ~= "string" then
    error("swit.test.start: no config: pass { config = path } or run " ..
          "`swit test --config CONFIG`", 2)
  end
  local yaml = read_file(path, 2)
  local dir = path:match("^(.*)/[^/]*$") or "."
  -- The first `broker:` key (messaging.broker) becomes the memory broker:
  -- its nested lines are dropped (skip: the key's indent while inside).
  local lines, skip, replaced = {}, nil, false
  for line in (yaml .. "\n"):gmatch("([^\n]*)\n") do
    local indent = #line:match("^ *")
    local inside = skip and (line:match("^%s*$") or line:match("^%s*#") or indent > skip)
    if not inside then
      skip = nil
      if not replaced and line:match("^%s+broker:%s*{.*}%s*$") then  -- flow style
        lines[#lines + 1] = (" "):rep(indent) .. "broker: {type: memory}"
        replaced = true
      elseif not replaced and (line:match("^%s+broker:%s*$") or line:match("^%s+broker:%s*#")) then
        lines[#lines + 1] = line
        lines[#lines + 1] = (" "):rep(indent + 2) .. "type: memory"
        skip, replaced = indent, true
      else
        lines[#lines + 1] = line
      end
    end
  end
  local text = table.concat(lines, "\n") .. "\n" .. (opts.yaml or "")
  local h = ffi.new("swit_host_t *[1]")
  local err = ffi.new("char[1024]")
  check(L.swit_host_new_from_string(h, text, dir, err, 1024), err, path)
  local self = setmetatable({ h = h[0], err = err, records = {}, buf = ffi.new("char[?]", 65536),
                              bufsize = 65536 }, Host)
  ffi.gc(self.h, L.swit_host_free)
  check(L.swit_host_test_mode(self.h, TEST_RECORD + TEST_NO_BACKOFF + TEST_NO_SERVERS, err, 1024), err, "test mode")
  check(L.swit_host_start(self.h, err, 1024), err, "start")
  self.running = true
  self.idle_ms = opts.idle_ms or 20
  self.timeout_ms = opts.timeout_ms or 30000
  self.stop_ms = opts.stop_ms or 1000
  return self:run()
end

-- Publish one message: payload a string or a table (JSON-encoded);
-- opts.key, opts.headers ({ name = value }).
function Host:publish(topic, payload, opts)
  if type(topic) ~= "string" then error("host:publish(topic, payload): topic must be a string", 2) end
  if type(payload) == "table" then payload = json(payload) end
  if type(payload) ~= "string" then error("host:publish: payload must be a string or a table", 2) end
  opts = opts or {}
  local hv, n = nil, 0
  if opts.headers then
    local names = {}
    for k in pairs(opts.headers) do names[#names + 1] = k end
    table.sort(names)
    hv = ffi.new("const char *[?]", #names * 2 + 1)
    self._keep = { opts.headers }
    for _, k in ipairs(names) do
      hv[n], hv[n + 1] = tostring(k), tostring(opts.headers[k])
      n = n + 2
    end
  end
  local key = opts.key and tostring(opts.key)
  check(C().swit_host_publish(self.h, topic, key, key and #key or 0, payload, #payload,
                              hv, nil, self.err, 1024), self.err, "publish to " .. topic)
end

-- Collect what the host recorded.
function Host:_take()
  local L, len = C(), ffi.new("size_t[1]")
  while true do
    local rc = L.swit_host_test_take(self.h, self.buf, self.bufsize, len)
    if rc == 0 then return end
    if rc == E_TOOBIG then
      self.bufsize = tonumber(len[0])
      self.buf = ffi.new("char[?]", self.bufsize)
    elseif rc == E_FULL then
      error("swit.test: more than 64 MiB of records: some were not kept", 3)
    elseif rc < 0 then
      error("swit.test: " .. ffi.string(L.swit_strerror(rc)), 3)
    else
      decode(ffi.string(self.buf, len[0]), self.records)
    end
  end
end

-- Run until the host is idle (on_start done, nothing in flight, no retry
-- waiting) for opts.idle_ms; error after opts.timeout_ms.
function Host:run()
  local rc = C().swit_host_wait_idle(self.h, self.idle_ms, self.timeout_ms)
  self:_take()
  if rc == E_TIMEDOUT then
    error(("swit.test: the host did not go idle within %d ms (a handler that " ..
           "does not return is named in the log: 'stuck in a handler')")
          :format(self.timeout_ms), 2)
  elseif rc == E_SCRIPT then
    error("swit.test: an on_start function failed (see the log above)", 2)
  elseif rc ~= 0 then
    error("swit.test: " .. ffi.string(C().swit_strerror(rc)), 2)
  end
  return self
end

-- Move the clock of swit.every timers forward by ms (in steps of
-- opts.step ms, default all at once: a timer due several times in one
-- step runs once), run the timers due, then run until idle. Retries are
-- due at once anyway; timeouts and timestamps keep real time.
function Host:advance(ms, step)
  if type(ms) ~= "number" or ms < 1 or ms > 86400000 then
    error("host:advance(ms): ms must be a number in 1..86400000", 2)
  end
  step = step or ms
  if type(step) ~= "number" or step < 1 then error("host:advance(ms, step): step must be >= 1", 2) end
  if ms / step > 100000 then error("host:advance: more than 100000 steps", 2) end
  local left = ms
  while left > 0 do
    local d = math.min(step, left)
    local rc = C().swit_host_test_advance(self.h, d, self.timeout_ms)
    if rc ~= 0 then error("swit.test: advance: " .. ffi.string(C().swit_strerror(rc)), 2) end
    left = left - d
  end
  return self:run()
end

-- Every record so far, in order: { kind, topic, key, payload, attempt,
-- result, reason, group, headers = { lower-case name = value },
-- header_list = { {name, value}... } }.
function Host:events()
  self:_take()
  return self.records
end

local function select_kind(self, pred, topic)
  local out = {}
  for _, r in ipairs(self:events()) do
    if pred(r) and (topic == nil or r.topic == topic) then out[#out + 1] = r end
  end
  return out
end

function Host:published(topic)
  return select_kind(self, function(r) return r.kind == "publish" end, topic)
end
function Host:acked(topic)
  return select_kind(self, function(r) return r.kind == "ack" end, topic)
end
function Host:retried(topic)
  return select_kind(self, function(r) return r.kind == "retry" end, topic)
end
-- Dead-lettered after swit.reject (or an error the config classifies so).
function Host:rejected(topic)
  return select_kind(self, function(r) return r.kind == "dead" and r.result == "reject" end, topic)
end
-- Every message that went to its dead-letter topic (reject, fatal,
-- retries exhausted).
function Host:dead_lettered(topic)
  return select_kind(self, function(r) return r.kind == "dead" end, topic)
end

-- Forget the records so far.
function Host:clear()
  self:_take()
  self.records = {}
end

-- Stop: drain what is in flight for up to opts.stop_ms (default 1000),
-- then interrupt a handler still running; the host is freed when
-- collected.
function Host:stop()
  if self.running then
    self.running = false
    local rc = C().swit_host_stop(self.h, self.stop_ms)
    if rc ~= 0 then
      error("swit.test: stop: a handler still runs in Lua past the stop's deadline " ..
            "and was left behind (a loop that stays in compiled code cannot be " ..
            "interrupted: docs/lua-api.md, 'Limits')", 2)
    end
    self:_take()
  end
end

return M
