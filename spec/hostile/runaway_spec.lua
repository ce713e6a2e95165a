-- spec/hostile/runaway_spec.lua - Lua that never returns, and scripts that
-- try to end the process: every call into Lua is bounded, a stop is
-- bounded whatever Lua does, and the exit code says whether it was clean
-- (docs/lua-api.md, "Limits"; docs/operations.md, "Stopping").
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

-- A swit run in the background (t.background keeps its exit code):
-- returns a process table for t.signal / t.wait_for, and `finish(p)` below.
local function start(yaml, scripts, args)
  local files = { ["swit.yaml"] = yaml }
  for k, v in pairs(scripts) do files[k] = v end
  local dir = t.dir(files)
  return { dir = dir, pid = t.background(dir, ("%s run swit.yaml %s")
                                               :format(t.quote(t.bin), args or "")) }
end

-- Wait (bounded) for the exit; returns code, out, err. A run that did not
-- end in time, or left a sanitizer report, raises an error; the caller
-- checks the code.
local function finish(p, seconds)
  local code
  for _ = 1, (seconds or 30) * 100 do
    code = t.code(p)
    if code then break end
    os.execute("sleep 0.01")
  end
  local out, err = t.read(p.dir .. "/out"), t.read(p.dir .. "/err")
  if not code then t.signal(p, "KILL") end
  os.execute("rm -rf " .. t.quote(p.dir))
  if not code then error(("swit did not exit within %d s\n%s"):format(seconds or 30, err or ""), 2) end
  t.ended(code, err, "any")
  return code, out, err
end

local function config(extra, shutdown)
  return ([[
server: {name: spec, admin: {listen: "off"}, shutdown_timeout: ]] ..
  (shutdown or "1s") .. [[}
messaging:
  subscribers:
    default: {max_attempts: 1}
  resources:
    subscribers: {worker_pool_size: 2}
lua:
  scripts: [h.lua]
  limits: {handler_timeout: 300ms, load_timeout: 300ms}
%s]]):format(extra or "")
end

-- A handler on "t" that runs `body` for each message, a dead-letter
-- printer, and on_start publishing one message.
local function handler(body)
  return ([[
local swit = require "swit"
swit.on("t", { ordering = "none" }, function(msg) %s end)
swit.on("t.dlq", function(msg) print("DLQ " .. (msg:header("x-swit-error") or "")) end)
swit.on_start(function() swit.publish("t", "go") end)
]]):format(body)
end

describe("runaway Lua #hostile", function()
  describe("while loading", function()
    it("swit check refuses a script that never finishes, with file:line", function()
      local dir = t.dir({ ["swit.yaml"] = config(), ["h.lua"] =
        'local swit = require "swit"\nswit.on("t", function() end)\nwhile true do end\n' })
      local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
      os.execute("rm -rf " .. t.quote(dir))
      assert.equal(2, code)
      assert.matches("h%.lua:3: loading the scripts took longer than " ..
                     "lua.limits.load_timeout %(300 ms%)", err)
    end)

    it("refuses an on_load that never returns, and a loop that catches errors", function()
      for _, src in ipairs({
        'local swit = require "swit"\nswit.on_load(function() while true do end end)\n',
        'while true do pcall(function() while true do end end) end\n',
      }) do
        local dir = t.dir({ ["swit.yaml"] = config(), ["h.lua"] = src })
        local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
        os.execute("rm -rf " .. t.quote(dir))
        assert.equal(2, code)
        assert.matches("lua.limits.load_timeout", err)
      end
    end)

    it("swit run exits 2 on a script that never finishes loading", function()
      local code, _, err = t.run_scripts(config(), { ["h.lua"] = "while true do end" })
      assert.equal(2, code)
      assert.matches("h%.lua:1: loading the scripts took longer", err)
    end)

    it("refuses os.exit() at load instead of ending the process", function()
      local code, _, err = t.run_scripts(config(), { ["h.lua"] = "os.exit(0)" })
      assert.equal(2, code)
      assert.matches("os.exit%(%) while loading the scripts: refused", err)
    end)
  end)

  describe("on reload", function()
    it("rejects new code that never finishes loading; the running code keeps serving", function()
      local p = start(config(), { ["h.lua"] = [[
local swit = require "swit"
swit.on("t", function(msg) print("v1 " .. msg:payload()) end)
swit.every(50, function() swit.publish("t", "tick") end)
]] })
      t.wait_for(p, "out", "v1 tick", 10)
      t.save(p, "h.lua", 'local swit = require "swit"\n' ..
             'swit.on("t", function(msg) print("v2") end)\nwhile true do end\n')
      t.signal(p, "HUP")
      local err = t.wait_for(p, "err", "rejected", 10)
      assert.matches("h%.lua:3: loading the scripts took longer than " ..
                     "lua.limits.load_timeout", err)
      local before = #(t.read(p.dir .. "/out") or "")
      for _ = 1, 500 do                        -- v1 still runs afterwards
        if #(t.read(p.dir .. "/out") or "") > before then break end
        os.execute("sleep 0.01")
      end
      t.signal(p, "TERM")
      local code, out = finish(p, 20)
      assert.equal(0, code)
      assert.is_nil(out:find("v2", 1, true))
      assert.truthy(#out > before)
    end)
  end)

  describe("in a handler", function()
    it("marks a stuck handler and interrupts interpreted code at the stop: a clean exit", function()
      local p = start(config(), { ["h.lua"] =
        handler("while true do pcall(function() local x = os.time() end) end") })
      t.wait_for(p, "err", "stuck in a handler", 10)
      t.signal(p, "TERM")
      local code, _, err = finish(p, 20)
      assert.equal(0, code)
      assert.matches("gets no new unordered work", err)
      assert.is_nil(err:find("left behind", 1, true))
    end)

    it("bounds a stop when a compiled loop cannot be interrupted: exit 3", function()
      local p = start(config(), { ["h.lua"] = handler("while true do end") })
      t.wait_for(p, "err", "stuck in a handler", 10)
      t.signal(p, "TERM")
      local code, _, err = finish(p, 20)
      assert.equal(3, code)
      assert.matches("worker %d is still in a handler after the shutdown deadline", err)
      assert.matches("stopped, not cleanly: 1 worker%(s%) left running in Lua", err)
    end)

    it("exits 3 at once on a second signal during the stop", function()
      local p = start(config(nil, "60s"), { ["h.lua"] = handler("while true do end") })
      t.wait_for(p, "err", "stuck in a handler", 10)
      t.signal(p, "TERM")
      t.wait_for(p, "err", "stopping", 10)
      os.execute("sleep 0.7")   -- a copy within 0.5 s is the same signal
      t.signal(p, "TERM")
      local code, _, err = finish(p, 10)
      assert.equal(3, code)
      assert.matches("second Terminated during the stop: exiting now", err)
    end)

    it("turns os.exit(7) into a graceful stop that exits 7", function()
      local code, out, err = t.run_scripts(config(), { ["h.lua"] =
        handler("os.exit(7)") }, "5s")
      assert.equal(7, code)
      assert.matches("a script called os.exit%(7%): the host stops gracefully", err)
      assert.is_nil(out:find("DLQ", 1, true))   -- given back, not dead-lettered
    end)
  end)

  describe("in on_start", function()
    it("names on_start when it runs past handler_timeout", function()
      local p = start(config(), { ["h.lua"] = [[
local swit = require "swit"
swit.on("t", function() end)
swit.on_start(function() while true do local x = os.time() end end)
]] }, "--exit-when-idle=200ms")
      t.wait_for(p, "err", "stuck in on_start", 10)
      t.signal(p, "TERM")        -- the stop interrupts it (interpreted code)
      local code, _, err = finish(p, 20)
      assert.equal(0, code)        -- a stop by signal, and a clean one
      assert.matches("on_start took longer than lua.limits.handler_timeout", err)
    end)
  end)

  describe("a msg kept past its handler", function()
    it("raises a clear error in a timer and in a later handler, never reads a reused slot", function()
      local code, out = t.run_scripts(config(nil):gsub("worker_pool_size: 2",
                                                       "worker_pool_size: 1"),
        { ["h.lua"] = [[
local swit = require "swit"
local kept, n = nil, 0
swit.on("t", function(msg)
  n = n + 1
  if kept then
    local ok, err = pcall(kept.payload, kept)
    print("handler " .. n .. ": " .. tostring(ok) .. " " .. tostring(err))
  end
  kept = msg
end)
swit.every(20, function()
  if kept then
    local ok, err = pcall(kept.topic, kept)
    print("timer: " .. tostring(ok) .. " " .. tostring(err))
    kept = nil
  end
end)
swit.on_start(function() for i = 1, 50 do swit.publish("t", "m" .. i) end end)
]] }, "500ms")
      assert.equal(0, code)
      assert.matches("handler 2: false msg used after its handler returned", out)
      assert.is_nil(out:find(": true", 1, true))     -- never a stale read
    end)
  end)
end)
