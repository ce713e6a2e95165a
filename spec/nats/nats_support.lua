-- spec/nats/nats_support.lua - helpers for the NATS suites: swit running
-- in the background (pid, exit code, output files), waiting for a line in
-- a file, private nats-server instances for the fault specs, and the
-- paths of the test tools (nats_wire: plain-text protocol, no cnats;
-- nats_jspub: a JetStream publisher). Every wait is bounded in time.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local M = { t = t }

M.url = os.getenv("SWIT_TEST_NATS_URL") or "nats://127.0.0.1:14222"
M.port = tonumber(os.getenv("SWIT_TEST_NATS_PORT") or "14222")
M.script = os.getenv("SWIT_TEST_NATS_SCRIPT") or "scripts/nats-server.sh"
M.wire = os.getenv("SWIT_TEST_NATS_WIRE") or "build-nats/nats_wire"
M.jspub = os.getenv("SWIT_TEST_NATS_JSPUB") or "build-nats/nats_jspub"
M.fault_dir = os.getenv("SWIT_TEST_NATS_DIR") or "/tmp/swit-nats-faults"

local q = t.quote

function M.sleep(s)
  os.execute(("sleep %.3f"):format(s))
end

-- A topic prefix unique to this run.
local n = 0
function M.prefix(tag)
  n = n + 1
  return ("%s%d%04d%d."):format(tag or "n", os.time(), math.random(0, 9999), n)
end
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)

-- The messaging.broker section for a server URL and extra config.
function M.broker(url, config)
  return ("  broker:\n    type: nats\n    endpoints: [%q]\n%s"):format(
    url or M.url, config and ("    config: {%s}\n"):format(config) or "")
end

-- A whole config: broker section, subscriber settings, workers, scripts.
function M.config(opts)
  return ([[
server: {name: %s, shutdown_timeout: 5s}
messaging:
%s  subscribers:
    default: {max_attempts: 3, retry_delay: 10ms, retry_max_delay: 50ms%s}
  resources:
    subscribers: {worker_pool_size: %d%s}
%s
lua:
  scripts: [s.lua]
%s]]):format(opts.name or "nspec", M.broker(opts.url, opts.config),
             opts.subscriber and (", " .. opts.subscriber) or "",
             opts.workers or 2, opts.resources and (", " .. opts.resources) or "",
             opts.memory and ("    memory: {%s}"):format(opts.memory) or "",
             opts.lua or "")
end

-- Start `swit run` in the background in a fresh dir. Returns a handle:
-- { dir, pid, out(), err(), code() }.
function M.spawn(yaml, script, idle)
  local dir = t.dir({ ["swit.yaml"] = yaml, ["s.lua"] = script })
  local idle_arg = idle and (" --exit-when-idle=" .. idle) or ""
  os.execute(("( %s run %s%s >%s 2>%s </dev/null & echo $! >%s; wait $!; " ..
              "echo $? >%s ) >/dev/null 2>&1 &"):format(
    q(t.bin), q(dir .. "/swit.yaml"), idle_arg, q(dir .. "/out"),
    q(dir .. "/err"), q(dir .. "/pid"), q(dir .. "/code")))
  local h = { dir = dir }
  for _ = 1, 200 do
    h.pid = tonumber(t.read(dir .. "/pid") or "")
    if h.pid then break end
    M.sleep(0.01)
  end
  function h.out() return t.read(dir .. "/out") or "" end
  function h.err() return t.read(dir .. "/err") or "" end
  function h.code() return tonumber(t.read(dir .. "/code") or "") end
  return h
end

-- Wait until fn() is true, up to `secs`; returns the last value.
function M.wait(fn, secs)
  local v
  for _ = 1, math.floor((secs or 10) / 0.05) do
    v = fn()
    if v then return v end
    M.sleep(0.05)
  end
  return fn()
end

-- Wait for the process to exit; its exit code or nil.
function M.wait_exit(h, secs)
  return M.wait(function() return h.code() end, secs or 30)
end

function M.running(h)
  return M.wait(function() return h.err():find("running:", 1, true) end, 15)
end

function M.kill(h, sig)
  if h.pid then os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", h.pid)) end
end

function M.cleanup(h)
  if h and not h.code() then
    M.kill(h, "KILL")
    M.wait_exit(h, 5)
  end
  if h then os.execute("rm -rf " .. q(h.dir)) end
end

-- A private nats-server (own dir and ports) for specs that restart it.
function M.server(name, port, no_js)
  local dir = M.fault_dir .. "/" .. name
  local ok = os.execute(("%s start %s %d %d --fresh %s >/dev/null"):format(
    q(M.script), q(dir), port, port + 4000, no_js and "--no-js" or ""))
  assert(ok == true or ok == 0, "cannot start nats-server in " .. dir)
  return { dir = dir, port = port, url = ("nats://127.0.0.1:%d"):format(port),
           restart_cmd = ("%s kill %s && %s restart %s >/dev/null"):format(
             q(M.script), q(dir), q(M.script), q(dir)) }
end

function M.server_stop(s)
  if s then os.execute(("%s stop %s >/dev/null"):format(q(M.script), q(s.dir))) end
end

-- Run a tool to the end: code, stdout, stderr.
function M.run(cmd)
  return t.sh(cmd)
end

-- Start nats_wire sub in the background; returns a handle like spawn's.
function M.wire_sub(port, subject, count, timeout_ms, queue)
  local dir = t.dir()
  os.execute(("( %s sub %d %s %d %d -r %s %s >%s 2>%s; echo $? >%s ) " ..
              ">/dev/null 2>&1 &"):format(
    q(M.wire), port, q(subject), count, timeout_ms, q(dir .. "/ready"),
    queue and ("-q " .. q(queue)) or "",
    q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/code")))
  local h = { dir = dir }
  function h.ready() return t.read(dir .. "/ready") ~= nil end
  function h.out() return t.read(dir .. "/out") or "" end
  function h.code() return tonumber(t.read(dir .. "/code") or "") end
  assert(M.wait(h.ready, 10), "nats_wire sub did not get ready")
  return h
end

-- Numbers printed as "<word> <n>" lines, as a set and a count of lines.
function M.numbers(out, word)
  local seen, lines = {}, 0
  for line in out:gmatch("[^\n]+") do
    local v = line:match("^" .. word .. " (%d+)")
    if v then
      seen[tonumber(v)] = (seen[tonumber(v)] or 0) + 1
      lines = lines + 1
    end
  end
  return seen, lines
end

return M
