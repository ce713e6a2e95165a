-- spec/e2e/reload_spec.lua - hot reload through the swit binary: SIGHUP,
-- SIGUSR2 rollback, the file watch with an editor-style save, a storm of
-- SIGHUPs. Each test runs swit in the background, waits (bounded) for
-- lines in its output, and stops it with SIGTERM.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local start, signal, wait_for, stop, save = t.start, t.signal, t.wait_for, t.stop, t.save

local function version(tag)
  return ([[
local swit = require "swit"
swit.every(20, function() print("%s gen " .. swit.generation()) end)
]]):format(tag)
end

local yaml = [[
server: {admin: {listen: "127.0.0.1:0"}}
messaging:
  resources:
    subscribers: {worker_pool_size: 2}
lua:
  scripts: [v.lua]
  hot_reload: {watch: %s, debounce: 50ms}
]]

describe("hot reload #e2e", function()
  it("reloads on SIGHUP, keeps running code on a bad reload, rolls back on SIGUSR2", function()
    local p = start({ ["swit.yaml"] = yaml:format("false"), ["v.lua"] = version("one") })
    wait_for(p, "out", "one gen 1")
    save(p, "v.lua", version("two"))
    signal(p, "HUP")
    wait_for(p, "out", "two gen 2")
    save(p, "v.lua", "local swit = require 'swit'\nswit.every(20, function( end)\n")
    signal(p, "HUP")
    wait_for(p, "err", "reload rejected, generation 2 keeps running: [^\n]*v.lua:2:")
    signal(p, "USR2")
    wait_for(p, "out", "one gen 3")
    local _, err = stop(p)
    assert.matches("rollback: now running code generation 3", err)
  end)

  it("reloads when a script is saved by rename, with lua.hot_reload.watch", function()
    local p = start({ ["swit.yaml"] = yaml:format("true"), ["v.lua"] = version("one") })
    wait_for(p, "out", "one gen 1")
    save(p, "v.lua", version("two"))
    wait_for(p, "out", "two gen 2")
    local _, err = stop(p)
    assert.matches("hot reload: scripts changed", err)
  end)

  it("stays healthy through a storm of 50 SIGHUPs and ends on the newest code", function()
    local p = start({ ["swit.yaml"] = yaml:format("false"), ["v.lua"] = version("v0") })
    wait_for(p, "out", "v0 gen 1")
    for i = 1, 50 do
      save(p, "v.lua", version("v" .. i))
      signal(p, "HUP")
    end
    wait_for(p, "out", "v50 gen %d+")
    local out, err = stop(p)
    assert.is_nil(err:find("rejected"))
    assert.matches("stopped", err)
    -- after the newest code runs, no older version prints any more
    local last = out:match(".*\n(v%d+) gen %d+\n$")
    assert.equal("v50", last)
  end)
end)
