-- spec/support/swit_run.lua - helpers for specs that drive the swit
-- binary: a scratch directory per test, files written into it, and a run
-- that returns exit code, stdout and stderr. Paths come from the SWIT_TEST_*
-- variables ctest sets (see spec/CMakeLists.txt).
local M = {}

M.bin = os.getenv("SWIT_TEST_BIN") or "build/swit"
M.root = os.getenv("SWIT_TEST_ROOT") or "."
local tmp_root = os.getenv("SWIT_TEST_TMP") or "/tmp"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read = read

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

-- The usual config for one script on the memory broker.
function M.config(scripts, extra)
  local list = {}
  for _, s in ipairs(scripts) do list[#list + 1] = s end
  return ([[
server: {name: spec}
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

-- A swit running in the background in a scratch dir made of `files`
-- (`swit run swit.yaml`); out and err are files there, read as they grow.
function M.start(files, env)
  local dir = M.dir(files)
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. sh_quote(v) .. " " end
  os.execute(("cd %s && (%s%s run swit.yaml >out 2>err & echo $! >pid)")
             :format(sh_quote(dir), prefix, sh_quote(M.bin)))
  return { dir = dir, pid = assert(tonumber(read(dir .. "/pid"))) }
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

-- SIGTERM, wait (up to 30 s) for the exit; returns out, err.
function M.stop(p)
  M.signal(p, "TERM")
  for _ = 1, 3000 do
    if os.execute(("kill -0 %d 2>/dev/null"):format(p.pid)) ~= 0 then break end
    os.execute("sleep 0.01")
  end
  local out, err = read(p.dir .. "/out"), read(p.dir .. "/err")
  os.execute("rm -rf " .. sh_quote(p.dir))
  return out, err
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
  os.execute(("cd %s && (%s %s run swit.yaml >out 2>err & echo $! >pid)")
             :format(sh_quote(dir), prefix or "", sh_quote(M.bin)))
  local p = { dir = dir, pid = assert(tonumber(read(dir .. "/pid"))) }
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

-- The value of one series (name with its labels, as written) in a
-- /metrics text, or nil.
function M.metric(text, series)
  for line in text:gmatch("[^\n]+") do
    local v = line:match("^" .. series:gsub("[%p]", "%%%0") .. " (%S+)$")
    if v then return tonumber(v) end
  end
end

return M
