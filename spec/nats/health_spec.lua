-- spec/nats/health_spec.lua - the host's readiness check (GET /readyz on
-- the admin server) follows the NATS connection and JetStream: ready
-- while connected, not ready while the server is down, ready again after
-- the reconnect. Uses a private nats-server (it is stopped mid-test).
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"


-- GET url: status code and body.
local function get(url)
  local code, out = N.run(("curl -s -m 5 -w '\\n%%{http_code}' %s"):format(N.t.quote(url)))
  if code ~= 0 then return nil, out end
  local body, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), body
end

local function broker_check(body)
  if not body then return nil end
  return body:match('"name":"broker_connectivity","status":"(%a+)","detail":"([^"]*)"')
end

describe("nats health #nats", function()
  it("JetStream: readiness follows the connection and JetStream", function()
    local srv, h = N.server("health"), nil
    finally(function() N.cleanup(h) N.server_stop(srv) end)
    local yaml = N.config({ url = srv.url, config = "jetstream: true, storage: memory" })
    h = N.spawn(yaml, 'require("swit").on("hz", function() end)\n')
    assert.truthy(N.running(h), h.err())
    local admin = N.wait(function() return h.err():match("admin listening on (http://[%d.:]+)") end, 10)
    assert.truthy(admin, h.err())
    local status, body = get(admin .. "/readyz")
    local st, detail = broker_check(body)
    assert.equal(200, status, body)
    assert.equal("ok", st, body)
    assert.matches("JetStream available", detail)

    os.execute(("%s stop %s >/dev/null"):format(N.t.quote(N.script), N.t.quote(srv.dir)))
    assert.truthy(N.wait(function()
      local s, b = get(admin .. "/readyz")
      return s == 503 and broker_check(b) == "fail"
    end, 15), h.err())

    N.server_restart(srv)
    assert.truthy(N.wait(function()
      local s, b = get(admin .. "/readyz")
      return s == 200 and broker_check(b) == "ok"
    end, 20), h.err())
    N.kill(h, "TERM")
    assert.equal(0, N.wait_exit(h, 20), h.err())
  end)
end)
