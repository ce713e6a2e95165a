-- spec/nats/bad_input_spec.lua - what swit says and does on bad input:
-- an unreachable server, JetStream asked of a server without it, invalid
-- adapter settings, a received message over max_message_size, and a
-- publish over the server's max_payload.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"

local DEAD_PORT = N.dead_port() -- nothing listens there

describe("nats bad input #nats", function()
  it("keeps retrying an unreachable server in the backing-off state, without crashing", function()
    local url = ("nats://127.0.0.1:%d"):format(DEAD_PORT)
    local code, out, err = N.t.run_scripts(N.config({ url = url }), {
      ["s.lua"] = [[
local swit = require "swit"
swit.on("nowhere", function() end)
swit.on_start(function() print("started") end)
]] }, "1500ms")
    assert.equal(0, code, err)
    assert.matches("started", out)
    assert.truthy(err:find("connecting -> backing-off: cannot reach " .. url, 1, true), err)
    assert.truthy(err:find("next try in", 1, true), err)
    assert.falsy(err:find("-> connected", 1, true), err)
  end)

  describe("JetStream disabled on the server", function()
    local srv
    setup(function() srv = N.server("nojs", true) end)
    teardown(function() N.server_stop(srv) end)

    it("fails the start with a clear error when the config asks for JetStream", function()
      local code, _, err = N.t.run_scripts(N.config({ url = srv.url, config = "jetstream: true" }), {
        ["s.lua"] = 'require("swit").on("x", function() end)\n' })
      assert.equal(2, code, err)
      assert.truthy(err:find("messaging.broker.config.jetstream: true, but JetStream is not " ..
                             "enabled on the NATS server at " .. srv.url, 1, true), err)
    end)

    it("fails the start when one subscription asks for JetStream", function()
      local code, _, err = N.t.run_scripts(N.config({ url = srv.url }), {
        ["s.lua"] = 'require("swit").on("x", { jetstream = true }, function() end)\n' })
      assert.equal(2, code, err)
      assert.truthy(err:find("JetStream is not enabled on the NATS server at " .. srv.url, 1, true), err)
    end)
  end)

  it("rejects invalid adapter settings with the key and the reason", function()
    local code, _, err = N.t.run_scripts(N.config({ config = "storage: tape" }), {
      ["s.lua"] = 'require("swit").on("x", function() end)\n' })
    assert.equal(2, code, err)
    assert.matches("messaging.broker.config.storage: expected one of file, memory", err)
    code, _, err = N.t.run_scripts(N.config({ config = "fetch_batch: 0" }), {
      ["s.lua"] = 'require("swit").on("x", function() end)\n' })
    assert.equal(2, code, err)
    assert.matches("messaging.broker.config.fetch_batch", err)
    code, _, err = N.t.run_scripts(N.config({ config = "max_pings: 3" }), {
      ["s.lua"] = 'require("swit").on("x", function() end)\n' })
    assert.equal(2, code, err)
    assert.matches("messaging.broker.config.max_pings: unknown key", err)
  end)

  for _, mode in ipairs({ "core", "JetStream" }) do
    it(mode .. ": dead-letters a received message over max_message_size with the reason", function()
      local P = N.prefix("b")
      local dlq = N.wire_sub(N.port, P .. "big.dlq", 1, 20000)
      local h = N.spawn(N.config({ memory = "max_message_size: 1KB",
                                   config = mode == "JetStream" and "jetstream: true, storage: memory" }),
        ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on(P .. "big", function(msg) print("handled " .. #msg:payload()) end)
]], "1s")
      finally(function() N.cleanup(h) end)
      assert.truthy(N.running(h), h.err())
      local code, _, err = N.run(("%s pub %d %s 1 -p %s"):format(N.t.quote(N.wire), N.port,
                                 P .. "big", string.rep("x", 4000)))
      assert.equal(0, code, err)
      code, _, err = N.run(("%s pub %d %s 1 -p small"):format(N.t.quote(N.wire), N.port, P .. "big"))
      assert.equal(0, code, err)
      assert.equal(0, N.wait_exit(h, 30), h.err())
      assert.equal(0, N.wait(dlq.code, 20), dlq.out())
      local out = h.out()
      assert.matches("handled 6\n", out)
      assert.falsy(out:find("handled 4001", 1, true), out)
      assert.truthy(dlq.out():find("hdr x-swit-error: message of 4001 bytes (payload+key+headers) " ..
                                   "exceeds messaging.resources.memory.max_message_size (1024)",
                                   1, true), dlq.out())
    end)
  end

  it("refuses a publish over the server's max_payload with a clear error", function()
    local P = N.prefix("p")
    local code, out, err = N.t.run_scripts(N.config({}), {
      ["s.lua"] = ("local P = %q\n"):format(P) .. [[
local swit = require "swit"
swit.on_start(function()
  local ok, e = swit.publish(P .. "huge", string.rep("x", 2 * 1024 * 1024))
  print(tostring(ok) .. " " .. tostring(e))
end)
]] }, "300ms")
    assert.equal(0, code, err)
    assert.matches("nil publish to '[^']+huge': 2097152 bytes exceed the server's max_payload %(1048576%)", out)
  end)
end)
