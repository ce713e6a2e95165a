-- spec/nats/nats_support.lua - helpers for the NATS suites: swit running
-- in the background (pid, exit code, output files), waiting for a line in
-- a file, private nats-server instances for the fault specs, and the
-- paths of the test tools (nats_wire: plain-text protocol, no cnats;
-- nats_jspub: a JetStream publisher). Every wait is bounded in time.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local M = { t = t }

M.url = t.fixture("SWIT_TEST_NATS_RUN", "url")
M.port = tonumber(t.fixture("SWIT_TEST_NATS_RUN", "port"))
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
server: {name: %s, shutdown_timeout: 5s, admin: {listen: "127.0.0.1:0"}}
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
  local h = { dir = dir }
  h.pid = t.background(dir, ("%s run swit.yaml%s"):format(q(t.bin), idle_arg))
  function h.out() return t.read(dir .. "/out") or "" end
  function h.err() return t.read(dir .. "/err") or "" end
  function h.code() return t.code(h) end
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

-- Wait for the process to exit; its exit code or nil (the caller checks
-- it; cleanup checks the stderr for a sanitizer report).
function M.wait_exit(h, secs)
  h.checked = true
  return M.wait(function() return h.code() end, secs or 30)
end

function M.running(h)
  return M.wait(function() return h.err():find("running:", 1, true) end, 15)
end

function M.kill(h, sig)
  if h.pid then os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", h.pid)) end
end

-- For finally(): stop a swit still running (SIGTERM; it must then exit
-- 0), and fail on a sanitizer report or on an exit code no one checked.
function M.cleanup(h)
  if not h then return end
  local expect = "any"
  if not h.code() then
    M.kill(h, "TERM")
    if not M.wait(function() return h.code() end, 20) then
      M.kill(h, "KILL")
      M.wait(function() return h.code() end, 5)
      expect = "stopped by SIGTERM within 20 s"
    else
      expect = 0
    end
  elseif not h.checked then
    expect = 0
  end
  local code, err = h.code(), h.err()
  os.execute("rm -rf " .. q(h.dir))
  t.ended(code, err, expect)
end

-- A private nats-server (own dir, free ports) for specs that restart it.
function M.server(name, no_js)
  local dir = M.fault_dir .. "/" .. name
  local ok = os.execute(("%s start %s auto auto --fresh %s >/dev/null"):format(
    q(M.script), q(dir), no_js and "--no-js" or ""))
  assert(ok == true or ok == 0, "cannot start nats-server in " .. dir)
  local port = assert(tonumber(t.read(dir .. "/port")), "no port file in " .. dir)
  return { dir = dir, port = port, url = ("nats://127.0.0.1:%d"):format(port),
           restart_cmd = ("%s kill %s && %s restart %s >/dev/null"):format(
             q(M.script), q(dir), q(M.script), q(dir)) }
end

-- Start a stopped private server again, on the same ports.
function M.server_restart(s)
  local ok = os.execute(("%s restart %s >/dev/null"):format(q(M.script), q(s.dir)))
  assert(ok == true or ok == 0, "cannot restart nats-server in " .. s.dir)
  return s
end

-- A port nothing listens on (probed free, then left unbound).
function M.dead_port()
  local code, out = t.sh(q(t.root .. "/scripts/free-port.sh"))
  assert(code == 0, "scripts/free-port.sh failed")
  return assert(tonumber(out:match("%d+")))
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
