-- spec/support/swit_run.lua - helpers for specs that drive the swit
-- binary: a scratch directory per test, files written into it, and a run
-- that returns exit code, stdout and stderr. Paths come from the SWIT_TEST_*
-- variables ctest sets (see spec/CMakeLists.txt).
--
-- How a process ended is always checked: a run (M.sh and everything on
-- it) whose stderr holds a sanitizer report raises an error whatever the
-- caller does with the exit code, and M.stop / M.ended check the exit code
-- of a background swit too. The broker suites' helpers build on these.
local M = {}

M.bin = os.getenv("SWIT_TEST_BIN") or "build/swit"
M.root = os.getenv("SWIT_TEST_ROOT") or "."
-- True in a ThreadSanitizer build: ctest sets TSAN_OPTIONS for every test
-- there (swit_tsan_env in CMakeLists.txt), and only there. Instrumented
-- code runs 5 to 40 times slower; a spec that waits on CPU-bound work
-- waits longer under TSan and says so where it does.
M.tsan = (os.getenv("TSAN_OPTIONS") or "") ~= ""
local tmp_root = os.getenv("SWIT_TEST_TMP") or "/tmp"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read = read

-- The first line of `name` in the run directory of a test fixture (the
-- directory is in the environment variable `var`): the URL or port a
-- broker server was given when it started on free ports.
function M.fixture(var, name)
  local dir = os.getenv(var)
  assert(dir and dir ~= "", var .. " is not set (run the suite through ctest)")
  local s = read(dir .. "/" .. name)
  assert(s, ("%s/%s missing: the fixture that writes it did not start"):format(dir, name))
  return (s:match("^[^\n]*"))
end

-- The first line of an AddressSanitizer, LeakSanitizer, UBSan or
-- ThreadSanitizer report in `text`, or nil.
function M.sanitizer_report(text)
  for _, pat in ipairs({ "[^\n]*ERROR: AddressSanitizer[^\n]*",
                         "[^\n]*ERROR: LeakSanitizer[^\n]*",
                         "[^\n]*runtime error: [^\n]*",
                         "[^\n]*WARNING: ThreadSanitizer[^\n]*" }) do
    local line = (text or ""):match(pat)
    if line then return line end
  end
end

-- Raise an error unless the process ended with `expect` (default 0;
-- "any" for a run killed on purpose) and left no sanitizer report.
function M.ended(code, err, expect, what)
  local report = M.sanitizer_report(err)
  if report then
    error(("%s: sanitizer report on stderr: %s\n%s"):format(what or "swit", report, err), 2)
  end
  expect = expect or 0
  if expect ~= "any" and code ~= expect then
    error(("%s: exit code %s, expected %s\n%s"):format(what or "swit", tostring(code),
          tostring(expect), err or ""), 2)
  end
end

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = sh_quote

local counter = 0

-- A fresh directory; files is { ["name"] = "content", ... }.
function M.dir(files)
  os.execute("mkdir -p " .. sh_quote(tmp_root))
  counter = counter + 1
  local p = io.popen("mktemp -d " .. sh_quote(tmp_root .. "/spec-XXXXXX"))
  local dir = p:read("*l")
  p:close()
  for name, content in pairs(files or {}) do
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(content)
    f:close()
  end
  return dir
end

-- Run a shell command line; returns code, stdout, stderr.
function M.sh(cmdline, env)
  local dir = M.dir()
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. sh_quote(v) .. " " end
  os.execute(("%s%s >%s/out 2>%s/err </dev/null; echo $? >%s/code")
             :format(prefix, cmdline, dir, dir, dir))
  local code = tonumber(read(dir .. "/code"))
  local out, err = read(dir .. "/out"), read(dir .. "/err")
  os.execute("rm -rf " .. sh_quote(dir))
  M.ended(code, err, "any", cmdline:match("^%S+"))
  return code, out, err
end

-- Run the swit binary with arguments (strings, quoted here).
function M.swit(args, env)
  local parts = { sh_quote(M.bin) }
  for _, a in ipairs(args) do parts[#parts + 1] = sh_quote(a) end
  return M.sh(table.concat(parts, " "), env)
end

-- A config (YAML text) and scripts in a fresh dir; runs
-- `swit run swit.yaml --exit-when-idle=<idle>` there.
function M.run_scripts(yaml, scripts, idle, env)
  local files = { ["swit.yaml"] = yaml }
  for k, v in pairs(scripts or {}) do files[k] = v end
  local dir = M.dir(files)
  local code, out, err = M.swit({ "run", dir .. "/swit.yaml",
                                  "--exit-when-idle=" .. (idle or "200ms") }, env)
  os.execute("rm -rf " .. sh_quote(dir))
  return code, out, err
end

-- Each case { "<keys of messaging.subscribers.spec, one YAML line>",
-- "<key path>: <message>" } is refused by `swit check` with exit 2 and
-- "swit.yaml:5:<col>: messaging.subscribers.spec.<key path>: <message>".
function M.refuses_subscriber_values(cases)
  for _, c in ipairs(cases) do
    local dir = M.dir({ ["swit.yaml"] = ([[
messaging:
  broker: {type: memory}
  subscribers:
    spec:
      %s
lua: {scripts: []}
]]):format(c[1]) })
    local code, out, err = M.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. sh_quote(dir))
    assert(code == 2, c[1] .. ": exit " .. tostring(code) .. ": " ..
           (out or "") .. (err or ""))
    local want = "swit%.yaml:5:%d+: messaging%.subscribers%.spec%." ..
                 c[2]:gsub("[%p]", "%%%0")
    assert(err:find(want), c[1] .. ": expected " .. c[2] .. " in: " .. err)
  end
end

-- The usual config for one script on the memory broker.
function M.config(scripts, extra)
  local list = {}
  for _, s in ipairs(scripts) do list[#list + 1] = s end
  return ([[
server: {name: spec, admin: {listen: "127.0.0.1:0"}}
messaging:
  broker: {type: memory}
  subscribers:
    default: {max_attempts: 3, retry_delay: 5ms, retry_max_delay: 20ms}
  resources:
    subscribers: {worker_pool_size: 2}
lua:
  scripts: [%s]
%s]]):format(table.concat(list, ", "), extra or "")
end

-- Start a shell command line in the background in `dir`: its stdout,
-- stderr, pid and (once it ended) exit code go to files out, err, pid
-- and code there. Returns the pid.
function M.background(dir, cmdline)
  os.execute(("cd %s && ( %s >out 2>err </dev/null & echo $! >pid; wait $!; " ..
              "echo $? >code.tmp; mv code.tmp code ) >/dev/null 2>&1 &"):format(
    sh_quote(dir), cmdline))
  for _ = 1, 500 do
    local pid = tonumber(read(dir .. "/pid") or "")
    if pid then return pid end
    os.execute("sleep 0.01")
  end
  error("no pid from the background command " .. cmdline)
end

-- A swit running in the background in a scratch dir made of `files`
-- (`swit run swit.yaml`); out and err are files there, read as they grow.
function M.start(files, env)
  local dir = M.dir(files)
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. sh_quote(v) .. " " end
  return { dir = dir, pid = M.background(dir, prefix .. sh_quote(M.bin) .. " run swit.yaml") }
end

-- The exit code of a background process once it ended, else nil.
function M.code(p)
  return tonumber(read(p.dir .. "/code") or "")
end

function M.signal(p, sig)
  os.execute(("kill -%s %d"):format(sig, p.pid))
end

-- Wait (up to `seconds`, default 10) until `pattern` is in the process's
-- "out" or "err" file; returns the file's text.
function M.wait_for(p, file, pattern, seconds)
  for _ = 1, (seconds or 10) * 100 do
    local s = read(p.dir .. "/" .. file) or ""
    if s:find(pattern) then return s end
    os.execute("sleep 0.01")
  end
  error(("timed out waiting for %q in %s:\n%s"):format(pattern, file,
        read(p.dir .. "/" .. file) or ""))
end

-- SIGTERM, wait (up to 30 s) for the exit, which must be `expect`
-- (default 0) with no sanitizer report; returns out, err, code.
function M.stop(p, expect)
  M.signal(p, "TERM")
  local code
  for _ = 1, 3000 do
    code = M.code(p)
    if code then break end
    os.execute("sleep 0.01")
  end
  if not code then M.signal(p, "KILL") end
  local out, err = read(p.dir .. "/out"), read(p.dir .. "/err")
  os.execute("rm -rf " .. sh_quote(p.dir))
  if not code then error("swit did not stop within 30 s of SIGTERM\n" .. (err or ""), 2) end
  M.ended(code, err, expect)
  return out, err, code
end

-- Write a file the way editors do: aside, then rename over.
function M.save(p, name, text)
  local tmp = p.dir .. "/." .. name .. ".swp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, p.dir .. "/" .. name))
end

-- M.start with the admin server and the ingress on port 0 (a shell
-- `prefix` such as "ulimit -n 64;" may come first): the process with
-- adm and ing, their bound addresses.
function M.start_servers(files, prefix)
  local dir = M.dir(files)
  local p = { dir = dir, pid = M.background(dir, (prefix or "") .. " " .. sh_quote(M.bin) ..
                                                 " run swit.yaml") }
  local err = M.wait_for(p, "err", "http ingress listening on http://[%d.:]+")
  p.adm = err:match("admin listening on http://([%d.:]+)")
  p.ing = err:match("http ingress listening on http://([%d.:]+)")
  return p
end

-- The value of the Prometheus series `series` (name and labels as
-- written) in text, or nil.
function M.metric(text, series)
  for line in (text or ""):gmatch("[^\n]+") do
    local v = line:match("^" .. series:gsub("[%p]", "%%%0") .. " (%S+)$")
    if v then return tonumber(v) end
  end
end

-- promtool accepts the /metrics text `text` (written to a file in
-- `dir`). A build configured with -DSWIT_WITH_PROMTOOL=OFF sets
-- SWIT_TEST_PROMTOOL=0 and skips the check, saying so; in any other
-- build a missing promtool fails the test.
function M.promtool_check(text, dir)
  if os.getenv("SWIT_TEST_PROMTOOL") == "0" then
    io.stderr:write("configured with SWIT_WITH_PROMTOOL=OFF: exposition not validated\n")
    return
  end
  local path = dir .. "/metrics.txt"
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local code, out, err = M.sh("promtool check metrics < " .. sh_quote(path))
  assert(code == 0, ("promtool check metrics exited %s:\n%s%s"):format(
    tostring(code), out or "", err or ""))
end

-- Lines of s as a list.
function M.lines(s)
  local t = {}
  for line in (s or ""):gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

-- Count lines matching a Lua pattern.
function M.count(s, pattern)
  local n = 0
  for _, line in ipairs(M.lines(s)) do
    if line:find(pattern) then n = n + 1 end
  end
  return n
end

return M
