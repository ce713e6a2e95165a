-- spec/lua/api_spec.lua - the Lua API (docs/lua-api.md), one behaviour per
-- test, each running real scripts in the swit binary on the memory broker.
-- Plus the FFI contract: the cdef Lua uses is the header and swit.h's
-- constant lists, the ABI numbers agree, nothing internal is public.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local function run(script, extra_yaml)
  return t.run_scripts(t.config({ "s.lua" }, extra_yaml), { ["s.lua"] = script })
end

describe("swit #lua", function()
  describe("msg", function()
    it("exposes topic, key, payload, headers, attempt and JSON", function()
      local code, out, err = run([[
local swit = require "swit"
swit.on("a.b", function(msg)
  local h = msg:headers()
  print(("topic=%s key=%s payload=%s h1=%s H1=%s missing=%s n=%s attempt=%d json=%s")
    :format(msg:topic(), tostring(msg:key()), msg:payload(), msg:header("h1"),
            msg:header("H1"), tostring(msg:header("nope")), h.h2,
            msg:attempt(), msg:json().v))
end)
swit.on_start(function()
  assert(swit.publish("a.b", '{"v":"x"}', { key = "k1", headers = { h1 = "one", h2 = "two" } }))
end)
]])
      assert.equal(0, code, err)
      assert.matches("topic=a.b key=k1 payload={\"v\":\"x\"} h1=one H1=one missing=nil n=two attempt=1 json=x", out)
    end)

    it("gives nil for a message without a key", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", function(msg) print("key " .. tostring(msg:key())) end)
swit.on_start(function() swit.publish("t", "x") end)
]])
      assert.equal(0, code)
      assert.matches("key nil", out)
    end)

    it("passes binary payloads and keys through byte for byte", function()
      local code, out = run([[
local swit = require "swit"
local blob = "\0\1\2\255 bytes\0"
swit.on("bin", function(msg)
  print(msg:payload() == blob and msg:key() == "\0k\255" and "same" or "different")
end)
swit.on_start(function() swit.publish("bin", blob, { key = "\0k\255" }) end)
]])
      assert.equal(0, code)
      assert.matches("same", out)
    end)
  end)

  describe("swit.use", function()
    it("runs middleware in order around the handler, set_header visible inside", function()
      local code, out = run([[
local swit = require "swit"
swit.use(function(msg, next)
  print("outer before")
  msg:set_header("x-trace", "abc")
  local r = next(msg)
  print("outer after")
  return r
end)
swit.use(function(msg, next)
  print("inner before " .. msg:header("x-trace"))
  return next(msg)
end)
swit.on("t", function(msg) print("handler " .. msg:header("X-Trace")) end)
swit.on_start(function() swit.publish("t", "x") end)
]])
      assert.equal(0, code)
      assert.same({ "outer before", "inner before abc", "handler abc", "outer after" },
                  t.lines(out))
    end)

    it("can stop a message by returning a result without calling next", function()
      local code, out = run([[
local swit = require "swit"
swit.use(function(msg, next)
  if msg:topic() == "t" and msg:payload() == "spam" then return swit.reject("filtered") end
  return next(msg)
end)
swit.on("t", function(msg) print("handled " .. msg:payload()) end)
swit.on("t.dlq", function(msg) print("dlq " .. msg:payload() .. " " .. msg:header("x-swit-error")) end)
swit.on_start(function() swit.publish("t", "spam") swit.publish("t", "ham") end)
]])
      assert.equal(0, code)
      assert.matches("handled ham", out)
      assert.matches("dlq spam filtered", out)
      assert.is_nil(out:find("handled spam"))
    end)
  end)

  describe("results", function()
    it("retries swit.retry up to max_attempts, then dead-letters with the count", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", { max_attempts = 4 }, function(msg)
  print("attempt " .. msg:attempt())
  return swit.retry("not yet")
end)
swit.on("t.dlq", function(msg)
  print(("dlq attempts=%s error=%s"):format(msg:header("x-swit-attempts"), msg:header("x-swit-error")))
end)
swit.on_start(function() swit.publish("t", "x") end)
]])
      assert.equal(0, code)
      assert.equal(4, t.count(out, "^attempt %d$"))
      assert.matches("attempt 4", out)
      assert.matches("dlq attempts=4 error=not yet", out)
    end)

    it("dead-letters swit.fatal at once and logs an error", function()
      local code, out, err = run([[
local swit = require "swit"
swit.on("t", function(msg) return swit.fatal("disk on fire") end)
swit.on("t.dlq", function(msg) print("dlq " .. msg:header("x-swit-attempts")) end)
swit.on_start(function() swit.publish("t", "x") end)
]])
      assert.equal(0, code)
      assert.matches("dlq 1", out)
      assert.matches("error %[worker %d%] fatal: message of 't' goes to 't.dlq'[^\n]*disk on fire", err)
    end)

    it("uses the dead_letter option as the dead-letter topic", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", { dead_letter = "graveyard" }, function() return swit.reject("no") end)
swit.on("graveyard", function(msg) print("buried " .. msg:payload()) end)
swit.on_start(function() swit.publish("t", "x") end)
]])
      assert.equal(0, code)
      assert.matches("buried x", out)
    end)

    it("treats an unexpected return value as a retryable failure", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", { max_attempts = 1 }, function() return 42 end)
swit.on("t.dlq", function(msg) print(msg:header("x-swit-error")) end)
swit.on_start(function() swit.publish("t", "x") end)
]])
      assert.equal(0, code)
      assert.matches("handler returned a number", out)
    end)
  end)

  describe("swit.publish", function()
    it("encodes a table payload as JSON", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", function(msg) local o = msg:json() print(o.n, o.list[2], o.name) end)
swit.on_start(function() assert(swit.publish("t", { n = 3, list = { "a", "b" }, name = "z" })) end)
]])
      assert.equal(0, code)
      assert.matches("3\tb\tz", out)
    end)

    it("returns nil and a message for bad arguments", function()
      local code, out = run([[
local swit = require "swit"
swit.on_start(function()
  print(select(2, swit.publish("", "x")))
  print(select(2, swit.publish("t", 42)))
  print(select(2, swit.publish("t", "x", { key = 5 })))
  print(select(2, swit.publish("t", "x", { headers = { a = 1 } })))
end)
]])
      assert.equal(0, code)
      assert.matches("topic must be a non%-empty string", out)
      assert.matches("payload must be a string or a table, got number", out)
      assert.matches("opts.key must be a string", out)
      assert.matches("headers must map strings to strings", out)
    end)
  end)

  describe("ordering", function()
    it("keeps per-key order across workers and spreads keys", function()
      local code, out, err = run([[
local swit = require "swit"
swit.on("t", function(msg)
  print(("%s %s %d"):format(msg:key(), msg:payload(), swit.worker_id()))
end)
swit.on_start(function()
  for i = 1, 2000 do
    local k = "k" .. (i % 10)
    assert(swit.publish("t", tostring(i), { key = k }))
  end
end)
]])
      assert.equal(0, code, err)
      local last, workers_of, n = {}, {}, 0
      for _, line in ipairs(t.lines(out)) do
        local k, v, w = line:match("^(%S+) (%d+) (%d+)$")
        v = tonumber(v)
        assert.is_true(v > (last[k] or 0), "order broken for " .. k)
        last[k] = v
        workers_of[k] = workers_of[k] or {}
        workers_of[k][w] = true
        n = n + 1
      end
      assert.equal(2000, n)
      local used = {}
      for k, ws in pairs(workers_of) do
        local c = 0
        for w in pairs(ws) do c = c + 1; used[w] = true end
        assert.equal(1, c, "key " .. k .. " ran on more than one worker")
      end
      assert.is_not_nil(next(used))
    end)

    it("lets ordering = \"none\" use every worker", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", { ordering = "none" }, function(msg) print("w" .. swit.worker_id()) end)
swit.on_start(function() for i = 1, 2000 do swit.publish("t", "x", { key = "same" }) end end)
]])
      assert.equal(0, code)
      assert.is_true(t.count(out, "^w0$") > 0 and t.count(out, "^w1$") > 0)
    end)
  end)

  describe("groups", function()
    it("gives every group every message", function()
      local code, out = run([[
local swit = require "swit"
swit.on("t", { group = "a" }, function(msg) print("a " .. msg:payload()) end)
swit.on("t", { group = "b" }, function(msg) print("b " .. msg:payload()) end)
swit.on_start(function() for i = 1, 50 do swit.publish("t", tostring(i)) end end)
]])
      assert.equal(0, code)
      assert.equal(50, t.count(out, "^a %d+$"))
      assert.equal(50, t.count(out, "^b %d+$"))
    end)
  end)

  describe("lifecycle", function()
    it("runs on_start once, on one worker", function()
      local code, out = run([[
local swit = require "swit"
swit.on_start(function() print("start on " .. swit.worker_id()) end)
]])
      assert.equal(0, code)
      assert.same({ "start on 0" }, t.lines(out))
    end)

    it("runs swit.every periodically", function()
      local code, out = run([[
local swit = require "swit"
local n = 0
swit.every(20, function() n = n + 1 print("tick " .. n) end)
]])
      assert.equal(0, code)
      assert.is_true(t.count(out, "^tick %d+$") >= 1)
    end)

    it("sends swit.log to stderr and print to stdout", function()
      local code, out, err = run([[
local swit = require "swit"
swit.on_start(function()
  swit.log("warn", "low on %s: %d left", "coffee", 2)
  print("to stdout")
end)
]])
      assert.equal(0, code)
      assert.matches("warn  %[worker 0%] low on coffee: 2 left", err)
      assert.equal("to stdout\n", out)
    end)

    it("refuses registrations after the scripts have loaded", function()
      local code, out, err = run([[
local swit = require "swit"
swit.on_start(function()
  local ok, e = pcall(swit.on, "late", function() end)
  print(ok, e)
end)
]])
      assert.equal(0, code, err)
      assert.matches("false\t[^\n]*swit.on: handlers, middleware and timers can only be registered while the scripts load", out)
    end)

    it("rejects a bad log level", function()
      local code, _, err = run([[
local swit = require "swit"
swit.log("loud", "x")
]])
      assert.equal(2, code)
      assert.matches("s.lua:2: swit.log%(level, fmt, ...%): level must be", err)
    end)

    it("reports an error of require with file:line for a missing module", function()
      local code, _, err = run([[
local swit = require "swit"
local missing = require "does.not.exist"
]])
      assert.equal(2, code)
      assert.matches("s.lua:2: module 'does.not.exist' not found", err)
    end)

    it("finds modules on lua.package_path", function()
      local dir = t.dir({
        ["swit.yaml"] = t.config({ "s.lua" }, "  package_path: [lib]\n"),
        ["s.lua"] = "local util = require 'util'\nlocal swit = require 'swit'\nswit.on_start(function() print(util.hello()) end)\n",
      })
      os.execute("mkdir -p " .. t.quote(dir .. "/lib"))
      local f = assert(io.open(dir .. "/lib/util.lua", "w"))
      f:write("return { hello = function() return 'hi from lib' end }\n")
      f:close()
      local code, out = t.swit({ "run", dir .. "/swit.yaml", "--exit-when-idle=100ms" })
      assert.equal(0, code)
      assert.matches("hi from lib", out)
    end)
  end)

  describe("the FFI contract", function()
    -- The X(NAME, value, text) entries of swit.h's SWIT_*_MAP lists.
    local function header_constants()
      local h = assert(t.read(t.root .. "/host/include/swit/swit.h"))
      local lists, consts = {}, {}
      for block in h:gmatch("#define SWIT_[A-Z_]+_MAP%(X%)(.-[^\\])\n") do
        local items = {}
        for name, value in block:gmatch("X%((SWIT_[A-Z0-9_]+),%s*(%-?%d+)") do
          items[#items + 1] = name .. " = " .. value
          consts[#consts + 1] = { name = name, value = tonumber(value) }
        end
        lists[#lists + 1] = "enum { " .. table.concat(items, ", ") .. " };\n"
      end
      return table.concat(lists), consts
    end

    local function cmake_var(pattern)
      local cm = assert(t.read(t.root .. "/CMakeLists.txt"))
      return assert(cm:match(pattern), pattern)
    end

    it("hands Lua the header itself, after swit.h's constant lists, as its cdef", function()
      local code, out, err = run([[
local core = require "swit.core"
swit_cdef = core.cdef
require("swit").on_start(function() io.write(swit_cdef) end)
]])
      assert.equal(0, code, err)
      local header = assert(t.read(t.root .. "/bindings/swit_ffi.h"))
      local enums, consts = header_constants()
      assert.is_true(#consts >= 20)
      local want = enums .. header:gsub("^#[^\n]*", ""):gsub("\n#[^\n]*", "\n")
      assert.equal(want, out)
    end)

    it("gives Lua every constant of swit.h's lists under its C name and value", function()
      local _, consts = header_constants()
      local names = {}
      for i, c in ipairs(consts) do names[i] = ("%q"):format(c.name) end
      local code, out, err = run(([[
local C = require("swit.core").C
require("swit").on_start(function()
  for _, name in ipairs({ %s }) do print(name .. "=" .. C[name]) end
end)
]]):format(table.concat(names, ", ")))
      assert.equal(0, code, err)
      local want = {}
      for i, c in ipairs(consts) do want[i] = c.name .. "=" .. c.value end
      assert.same(want, t.lines(out))
    end)

    it("checks the ABI number and version the build stamped on both sides", function()
      local code, out, err = run([[
local swit, core = require "swit", require "swit.core"
swit.on_start(function() print(core.api.abi, core.abi, swit.ABI, swit.version) end)
]])
      assert.equal(0, code, err)
      local abi = cmake_var("set%(SWIT_FFI_ABI (%d+)%)")
      local version = cmake_var("project%(swit VERSION ([%d.]+)")
      assert.equal(("%s\t%s\t%s\t%s"):format(abi, abi, abi, version),
                   t.lines(out)[1])
    end)

    it("keeps the host's entry points off the public swit table", function()
      local code, out, err = run([[
local swit = require "swit"
swit.on_start(function()
  local found = {}
  for k in pairs(swit) do
    if type(k) ~= "string" or k:sub(1, 1) == "_" then found[#found + 1] = tostring(k) end
  end
  print("underscored: [" .. table.concat(found, " ") .. "]")
  print("dispatch: " .. tostring(swit.dispatch) .. " " .. tostring(swit._dispatch))
end)
]])
      assert.equal(0, code, err)
      assert.same({ "underscored: []", "dispatch: nil nil" }, t.lines(out))
    end)

    it("runs without the binary exporting any symbol of swit (no -rdynamic)", function()
      local code, out = t.sh("nm -D --defined-only " .. t.quote(t.bin))
      assert.equal(0, code)
      assert.is_nil(out:match("swit_[%w_]*"))
    end)
  end)
end)
