-- spec/e2e/security_spec.lua - message security and the audit log
-- through the swit binary (docs/security.md): a publish through the
-- ingress reaches the Lua handler decrypted and verified; a keyring
-- rotation on SIGHUP switches the signing key without a restart; a bad
-- keyring on reload keeps the running keys; POST /admin/reload and a
-- pause are audited with the requester's address; consumed payloads are
-- redacted in the audit log; `swit check` refuses an unknown provider.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local start, signal, wait_for, stop = t.start, t.signal, t.wait_for, t.stop

local K1 = "key k1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"
local K2 = "key k2 QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=\n"

-- A keyring outside the run dir, mode 0600 (the provider's rule).
local function keyring(dir, text, mode)
  local tmp = dir .. "/ring.tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  os.execute(("chmod %s %s"):format(mode or "600", t.quote(tmp)))
  assert(os.rename(tmp, dir .. "/ring"))
end

local function curl(args)
  local f = io.popen("curl -s -o /dev/stdout -w '\n%{http_code}' " .. args)
  local s = f:read("*a")
  f:close()
  local body, code = s:match("^(.*)\n(%d+)$")
  return tonumber(code), body
end

local yaml = [[
server:
  name: shop
  admin: {listen: "127.0.0.1:0", token: "tok"}
  http: {listen: "127.0.0.1:0"}
messaging:
  resources:
    subscribers: {worker_pool_size: 2}
  security:
    message:
      encryption: {enabled: true, key_provider: file, keyring: %s/ring, topics: [orders]}
      signing: {enabled: true, key_provider: file, keyring: %s/ring, topics: [orders]}
    audit:
      enabled: true
      output: %s/audit.log
      log_payload: true
      sensitive_fields: [card.number]
lua:
  scripts: [h.lua]
]]

local handler = [[
local swit = require "swit"
swit.on("orders", function(msg)
  local sig = msg:header("x-swit-sig") or "none:"
  print(("got %s signed %s"):format(msg:payload(), sig:match("^([^:]*)")))
end)
]]

describe("message security #e2e", function()
  it("round-trips through the ingress, rotates keys on SIGHUP, audits with redaction", function()
    local keys = t.dir()
    keyring(keys, K1 .. K2 .. "active k1\n")
    local p = start({ ["swit.yaml"] = yaml:format(keys, keys, keys), ["h.lua"] = handler })
    local adm = wait_for(p, "err", "admin listening on http://([%d.:]+)")
    adm = adm:match("admin listening on http://([%d.:]+)")
    local ing = wait_for(p, "err", "http ingress listening on http://([%d.:]+)")
    ing = ing:match("http ingress listening on http://([%d.:]+)")
    local body = '{"card":{"number":"4111","exp":"12/30"},"n":1}'
    local post = ("-X POST --data '%s' http://%s/v1/publish/orders"):format(body, ing)

    assert.equal(202, (curl(post)))
    wait_for(p, "out", 'got {"card":{"number":"4111","exp":"12/30"},"n":1} signed k1')

    -- rotation without a restart
    keyring(keys, K1 .. K2 .. "active k2\n")
    signal(p, "HUP")
    wait_for(p, "err", "now running")
    assert.equal(202, (curl(post)))
    wait_for(p, "out", "signed k2")

    -- a keyring others can read is refused on reload; k2 stays
    keyring(keys, K2 .. "active k2\n", "644")
    signal(p, "HUP")
    wait_for(p, "err", "reload rejected[^\n]*chmod 600")
    keyring(keys, K1 .. K2 .. "active k2\n")

    -- admin actions are audited with who asked
    local auth = "-H 'Authorization: Bearer tok' -X POST http://" .. adm
    assert.equal(200, (curl(auth .. "/admin/reload")))
    assert.equal(200, (curl(auth .. "/admin/subscriptions/orders/pause")))
    local _, metrics = curl("http://" .. adm .. "/metrics")
    assert.matches("\nswit_msgsec_rejected_total 0\n", metrics)
    assert.matches("\nswit_audit_dropped_total 0\n", metrics)
    assert.matches("\nswit_audit_lines_total %d+\n", metrics)
    local out, err = stop(p)
    assert.equal(2, t.count(out, "^got "))
    assert.is_nil(err:find("4111"))

    local audit = t.read(keys .. "/audit.log")
    os.execute("rm -rf " .. t.quote(keys))
    assert.equal(2, t.count(audit, '"event":"consume".*"topic":"orders".*"result":"ack".*"number":"%[REDACTED%]","exp":"12/30"'))
    assert.equal(2, t.count(audit, '"event":"publish","thread":"other","remote":"127%.0%.0%.1:%d+","topic":"orders".*"result":"ok"'))
    assert.equal(1, t.count(audit, '"event":"admin","action":"reload","remote":"127%.0%.0%.1:%d+","result":"ok"'))
    assert.equal(1, t.count(audit, '"event":"admin","action":"pause","target":"orders","remote":"127%.0%.0%.1:%d+","result":"ok"'))
    assert.is_nil(audit:find("4111"))
  end)

  it("is refused by swit check with an unknown key provider, naming the key", function()
    local dir = t.dir({ ["swit.yaml"] = [[
messaging:
  security:
    message:
      encryption:
        enabled: true
        key_provider: vault
        keyring: secret/orders
]] })
    local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(2, code)
    assert.matches('swit.yaml:6:23: messaging.security.message.encryption.key_provider: unknown key provider "vault"', err, 1, true)
  end)
end)
