-- spec/rabbitmq/rmq_support.lua - helpers for the RabbitMQ suites: the
-- servers the test fixtures started (brokers/rabbitmq/broker.cmake sets
-- the SWIT_TEST_RABBITMQ_* variables), swit processes in the background
-- (started, waited for, stopped by PID), rabbitmqctl, amqp-tools and the
-- management HTTP API. Every wait is bounded in time.
package.path = "spec/support/?.lua;spec/rabbitmq/?.lua;" .. package.path
local t = require "swit_run"
local cjson = require "cjson"

local M = { t = t }

-- The URLs the fixtures wrote when they started on free ports; a suite
-- needs only its own fixture (the fault suites the fault node).
local function fixture(var, name)
  local ok, v = pcall(t.fixture, var, name)
  return ok and v or nil
end
M.url = fixture("SWIT_TEST_RABBITMQ_RUN", "url")
M.fault_url = fixture("SWIT_TEST_RABBITMQ_FAULT_RUN", "url")
M.http = fixture("SWIT_TEST_RABBITMQ_RUN", "http")
assert(M.url or M.fault_url, "no RabbitMQ fixture started (run the suites through ctest)")
M.script = os.getenv("SWIT_TEST_RABBITMQ_SCRIPT") or "scripts/rabbitmq.sh"
M.run_dir = os.getenv("SWIT_TEST_RABBITMQ_RUN") or "build-rabbitmq/rabbitmq-run"
M.fault_run_dir = os.getenv("SWIT_TEST_RABBITMQ_FAULT_RUN") or
                  "build-rabbitmq/rabbitmq-fault-run"
local q = t.quote

math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
local seq = 0
-- A topic prefix no other run uses.
function M.prefix()
  seq = seq + 1
  return ("r%d%04d%d."):format(os.time(), math.random(0, 9999), seq)
end

function M.sleep(s) os.execute("sleep " .. s) end

-- A swit config for `url` with extra YAML under messaging (indented 2)
-- and at the top level.
function M.config(url, opts)
  opts = opts or {}
  return ([[
server: {name: %s, admin: {listen: "127.0.0.1:0"}%s}
messaging:
  broker:
    type: rabbitmq
    endpoints: [%s]
    reconnect: {delay: 100ms, max_delay: 1s%s}
%s
%s  subscribers:
    default: {%s%s}
  resources:
    subscribers: {worker_pool_size: %d%s}
%s
lua:
  scripts: [s.lua]
%s]]):format(opts.name or "rmqspec", opts.server or "", opts.endpoints or ("'" .. url .. "'"),
             opts.reconnect or "", opts.broker_config or "",
             opts.messaging or "",
             opts.retry or "max_attempts: 3, retry_delay: 10ms, retry_max_delay: 50ms",
             opts.subscriber or "", opts.workers or 2,
             opts.resources or "", opts.memory or "", opts.lua or "")
end

-- Run swit to completion (--exit-when-idle): code, stdout, stderr.
function M.run(yaml, script, idle)
  return t.run_scripts(yaml, { ["s.lua"] = script }, idle or "700ms")
end

---------------------------------------------------------------------------
-- Background processes

local Proc = {}
Proc.__index = Proc

-- Start a shell command in the background; stdout, stderr and the exit
-- code go to files.
function M.spawn(cmdline)
  local dir = t.dir()
  local p = setmetatable({ dir = dir, out = dir .. "/out", err = dir .. "/err" }, Proc)
  p.pid = t.background(dir, cmdline)
  return p
end

-- Start `swit run` on a config and script (no idle exit).
function M.start_swit(yaml, script)
  local dir = t.dir({ ["swit.yaml"] = yaml, ["s.lua"] = script })
  return M.spawn(q(t.bin) .. " run " .. q(dir .. "/swit.yaml"))
end

function Proc:stdout() return t.read(self.out) or "" end
function Proc:stderr() return t.read(self.err) or "" end

function Proc:alive()
  return t.code(self) == nil
end

-- The exit code once the process ended, else nil.
function Proc:code()
  return t.code(self)
end

function Proc:kill(sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", self.pid))
end

-- Wait up to `secs` for the process to end; true if it did.
function Proc:wait(secs)
  return M.wait_for(secs or 30, function() return not self:alive() end) and true
end

-- SIGTERM, wait, then SIGKILL if it would not stop (false). A process
-- that stopped must have exited 0 without a sanitizer report; one that
-- had ended before must have left no sanitizer report.
function Proc:stop(secs)
  local running = self:alive()
  self:kill("TERM")
  if not self:wait(secs or 30) then
    self:kill("KILL")
    self:wait(5)
    return false
  end
  t.ended(self:code(), self:stderr(), running and 0 or "any")
  return true
end

-- Wait up to `secs` (wall clock) for pred() to hold; returns its last
-- value.
function M.wait_for(secs, pred)
  local deadline = os.time() + secs
  repeat
    local v = pred()
    if v then return v end
    M.sleep(0.1)
  until os.time() > deadline
  return pred()
end

-- Numbers printed as "<word> <n>" lines: a set and a count of lines.
function M.numbers(text, word)
  local set, lines = {}, 0
  for n in (text or ""):gmatch(word .. " (%d+)") do
    set[tonumber(n)] = (set[tonumber(n)] or 0) + 1
    lines = lines + 1
  end
  return set, lines
end

function M.missing(set, from, to)
  local miss = {}
  for i = from, to do
    if not set[i] then miss[#miss + 1] = i end
  end
  return miss
end

---------------------------------------------------------------------------
-- Server tools

local function sh(cmd)
  local code, out, err = t.sh(cmd)
  return code, out or "", err or ""
end
M.sh = sh

-- rabbitmqctl against a fixture node (run_dir defaults to the main one).
function M.ctl(args, run_dir)
  return sh(q(M.script) .. " ctl " .. q(run_dir or M.run_dir) .. " " .. args)
end

function M.restart(run_dir)
  return sh(q(M.script) .. " restart " .. q(run_dir))
end

-- amqp-publish one message; args is a list of extra arguments.
function M.amqp_publish(url, routing_key, body, args)
  local parts = { "amqp-publish", "-u", q(url), "-e", "swit", "-r", q(routing_key),
                  "-b", q(body) }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = q(a) end
  return sh(table.concat(parts, " "))
end

-- The management HTTP API (main server): method, path, JSON body.
function M.api(method, path, body)
  local dir = t.dir({ body = body and cjson.encode(body) or "" })
  local code, out = sh(("curl -sf -u guest:guest -X %s -H 'content-type: application/json' "
                        .. "--data-binary @%s %s"):format(method, q(dir .. "/body"),
                        q(M.http .. path)))
  os.execute("rm -rf " .. q(dir))
  if code ~= 0 then return nil, "curl exit " .. code end
  if out == "" then return true end
  return cjson.decode(out)
end

local function esc(s) return (s:gsub("[^%w%-_.~]", function(c) return ("%%%02X"):format(c:byte()) end)) end
M.esc = esc

-- A plain queue bound to the swit exchange with `key`, for inspection.
function M.inspect_queue(name, key)
  assert(M.api("PUT", "/api/exchanges/%2F/swit", { type = "topic", durable = true }))
  assert(M.api("PUT", "/api/queues/%2F/" .. esc(name), { durable = false, auto_delete = false }))
  assert(M.api("POST", "/api/bindings/%2F/e/swit/q/" .. esc(name), { routing_key = key }))
end

-- Take up to n messages from a queue (properties, headers, payload).
function M.get_messages(queue, n)
  return M.api("POST", "/api/queues/%2F/" .. esc(queue) .. "/get",
               { count = n or 10, ackmode = "ack_requeue_false", encoding = "auto" })
end

function M.delete_queue(name)
  return M.api("DELETE", "/api/queues/%2F/" .. esc(name))
end

return M
