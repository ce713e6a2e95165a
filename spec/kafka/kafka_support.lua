-- spec/kafka/kafka_support.lua - helpers for the Kafka suites: the shared
-- mock cluster's bootstrap string, private mock clusters (for the fault
-- tests that take brokers down), kcat, swit configs for Kafka, and swit
-- runs in the background that a test can watch, signal and wait for.
-- Paths come from the SWIT_TEST_* variables brokers/kafka/broker.cmake
-- sets; everything a test writes lives under SWIT_TEST_TMP.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local M = { t = t }

local function env(name)
  return assert(os.getenv(name), name .. " is not set (run through ctest)")
end

function M.sleep(seconds)
  os.execute(("sleep %.3f"):format(seconds))
end

local function read_line(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*l")
  f:close()
  return s
end

-- The shared cluster of the kafka fixture.
function M.bootstrap()
  return assert(read_line(env("SWIT_TEST_KAFKA_BOOTSTRAP_FILE")),
                "no bootstrap string: is kafka.mock.start running?")
end

-- A unique prefix for topic and group names of one test.
local seq = 0
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
function M.prefix(tag)
  seq = seq + 1
  return ("%s%d%04d%d."):format(tag or "k", os.time(), math.random(0, 9999), seq)
end

---------------------------------------------------------------------------
-- Private mock clusters

local Mock = {}
Mock.__index = Mock

-- Start swit-kafka-mock with `brokers` brokers and the given topics
-- ("name:partitions"); returns an object with :down(), :up(), :stop().
function M.mock(brokers, topics)
  local dir = t.dir()
  local args = { "--brokers", tostring(brokers or 1) }
  for _, tp in ipairs(topics or {}) do
    args[#args + 1] = "--topic"
    args[#args + 1] = tp
  end
  local cmd = ("%s start %s %s -- %s"):format(t.quote(env("SWIT_TEST_KAFKA_SCRIPT")),
    t.quote(dir), t.quote(env("SWIT_TEST_KAFKA_MOCK")), table.concat(args, " "))
  local code, _, err = t.sh(cmd)
  assert(code == 0, "cannot start a mock cluster: " .. tostring(err))
  local m = setmetatable({ dir = dir }, Mock)
  m.bootstrap = assert(read_line(dir .. "/bootstrap"))
  return m
end

function Mock:signal(what)
  local code, _, err = t.sh(("%s %s %s"):format(t.quote(env("SWIT_TEST_KAFKA_SCRIPT")),
                                              what, t.quote(self.dir)))
  assert(code == 0, err)
end

function Mock:down() self:signal("down") end
function Mock:up() self:signal("up") end
-- Stop the cluster (again: a no-op); for busted's finally().
function Mock:stop()
  if self.stopped then return end
  self.stopped = true
  self:signal("stop")
  os.execute("rm -rf " .. t.quote(self.dir))
end

---------------------------------------------------------------------------
-- kcat

-- Produce lines "key<TAB>value" (keyed) to topic; returns code, err.
function M.produce(bootstrap, topic, lines, extra)
  local dir = t.dir({ msgs = table.concat(lines, "\n") .. "\n" })
  local code, _, err = t.sh(("kcat -P -b %s -t %s -K '\t' %s -l %s"):format(
    t.quote(bootstrap), t.quote(topic), extra or "", t.quote(dir .. "/msgs")))
  os.execute("rm -rf " .. t.quote(dir))
  return code, err
end

-- Consume a topic from the beginning to its end; `fmt` is kcat's -f,
-- `extra` more kcat arguments (e.g. "-X isolation.level=read_committed").
function M.consume(bootstrap, topic, fmt, count, extra)
  return t.sh(("kcat -C -b %s -t %s -o beginning -e -q %s %s -f %s"):format(
    t.quote(bootstrap), t.quote(topic), count and ("-c " .. count) or "",
    extra or "", t.quote(fmt or "%k\t%s\n")))
end

-- A group's committed offsets: { [partition] = offset } (-1001: none).
function M.committed(bootstrap, group, topic, partitions)
  local code, out, err = t.sh(("%s %s %s %s %d"):format(
    t.quote(env("SWIT_TEST_KAFKA_COMMITTED")), t.quote(bootstrap), t.quote(group),
    t.quote(topic), partitions))
  assert(code == 0, "kafka_committed: " .. tostring(err))
  local res = {}
  for p, o in out:gmatch("(%d+) (%-?%d+)") do res[tonumber(p)] = tonumber(o) end
  return res
end

---------------------------------------------------------------------------
-- swit configs and runs

-- A config for Kafka at `bootstrap` (the admin server on a free port);
-- `opts` may give the server name, shutdown timeout and more server
-- settings (", key: value"), broker config lines (YAML, indented 6), the session
-- timeout (ms; 3000: the mock rebalances a group after it, less 1 s), reconnect
-- (a YAML flow map), workers, max_in_flight, resources lines (indented 4),
-- messaging lines (indented 2) and extra top-level YAML.
function M.config(bootstrap, opts)
  opts = opts or {}
  return ([[
server: {name: %s, shutdown_timeout: %s, admin: {listen: "127.0.0.1:0"}%s}
messaging:
  broker:
    type: kafka
    endpoints: [%q]
    reconnect: %s
    config:
      session.timeout.ms: %d
      heartbeat.interval.ms: 500
%s  subscribers:
    default: {max_attempts: 3, retry_delay: 10ms, retry_max_delay: 50ms}
  resources:
    subscribers: {worker_pool_size: %d%s}
%s%slua:
  scripts: [s.lua]
%s]]):format(opts.name or "kspec", opts.shutdown or "10s", opts.server or "", bootstrap,
             opts.reconnect or "{}", opts.session or 3000, opts.broker or "",
             opts.workers or 2,
             opts.max_in_flight and (", max_in_flight: " .. opts.max_in_flight) or "",
             opts.resources or "", opts.messaging or "", opts.extra or "")
end

-- Run swit to completion (--exit-when-idle); returns code, out, err.
function M.run(yaml, script, idle)
  return t.run_scripts(yaml, { ["s.lua"] = script }, idle or "2s")
end

local Proc = {}
Proc.__index = Proc

-- Start swit in the background; `args` are extra arguments of `run`.
function M.spawn(yaml, script, args)
  local dir = t.dir({ ["swit.yaml"] = yaml, ["s.lua"] = script })
  local parts = { t.quote(t.bin), "run", "swit.yaml" }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = t.quote(a) end
  local p = setmetatable({ dir = dir }, Proc)
  p.pid = t.background(dir, table.concat(parts, " "))
  return p
end

function Proc:out() return t.read(self.dir .. "/out") or "" end
function Proc:err() return t.read(self.dir .. "/err") or "" end
function Proc:code() return t.code(self) end

function Proc:signal(sig)
  os.execute(("kill -%s %s 2>/dev/null"):format(sig, self.pid))
end

-- Wait until fn(self) is true or `timeout` seconds pass; returns it.
function Proc:wait(fn, timeout)
  local deadline = os.time() + (timeout or 60)
  repeat
    local v = fn(self)
    if v then return v end
    M.sleep(0.1)
  until os.time() > deadline
  return fn(self)
end

-- Wait for the process to end (up to `timeout` s); returns its code
-- (the caller checks it).
function Proc:finish(timeout)
  self.checked = true
  return self:wait(function(p) return p:code() end, timeout or 60)
end

-- For busted's finally(), so a failed test leaves nothing behind: stop
-- the process if it still runs (SIGTERM, then it must exit 0; SIGKILL
-- after 20 s is an error), remove its directory, and fail on a sanitizer
-- report or an exit code no one checked.
function Proc:clean()
  if self.cleaned then return end
  self.cleaned = true
  local expect = "any"
  if not self:code() then
    self:signal("TERM")
    expect = 0
    if not self:wait(function(p) return p:code() end, 20) then
      self:signal("KILL")
      self:wait(function(p) return p:code() end, 10)
      expect = "stopped by SIGTERM within 20 s"
    end
  elseif not self.checked then
    expect = 0
  end
  local code, err = self:code(), self:err()
  os.execute("rm -rf " .. t.quote(self.dir))
  t.ended(code, err, expect)
end

return M
