-- spec/kafka/security_spec.lua - Kafka transport security from
-- messaging.security (issue 13 item 1; docs/security.md "Broker transport
-- security"). librdkafka 2.0.2's mock cluster has no TLS listener and no
-- SaslHandshake/SaslAuthenticate handler, so no handshake is tested here:
-- the mapping is checked through what librdkafka reports (the protocol
-- in the broker name of its connect error: ssl://, sasl_ssl://,
-- sasl_plaintext://) and the refusals at start (exit 2, the swit key
-- named, librdkafka's text kept). The certificates are made with openssl.
local k = require "spec.kafka.kafka_support"
local t = k.t

local quiet = [[
local swit = require "swit"
swit.on_start(function() end)
]]

local function security(block)
  return "  security:\n" .. block .. "\n"
end

describe("kafka #kafka transport security", function()
  local dir
  setup(function()
    dir = t.dir({ ["bad.pem"] = "not a certificate\n" })
    local code = t.sh(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 " ..
                       "-subj /CN=swit-kafka-ca -keyout ca.key -out ca.pem >/dev/null 2>&1"):format(t.quote(dir)))
    assert(code == 0, "openssl could not make a CA")
  end)
  teardown(function() if dir then os.execute("rm -rf " .. t.quote(dir)) end end)

  it("maps TLS and SASL to librdkafka's security.protocol", function()
    local cases = {
      { ("    transport: {tls: {enabled: true, ca_file: %s/ca.pem}}"):format(dir), "ssl://127.0.0.1:1/" },
      { ("    transport: {tls: {enabled: true, ca_file: %s/ca.pem, cert_file: %s/ca.pem, key_file: %s/ca.key}}\n"
         .. "    authentication: {mechanism: SCRAM-SHA-512, username: u, password: p}"):format(dir, dir, dir),
        "sasl_ssl://127.0.0.1:1/" },
      { "    authentication: {mechanism: SCRAM-SHA-256, username: u, password: p}", "sasl_plaintext://127.0.0.1:1/" },
      { "    authentication: {mechanism: PLAIN, username: u, password: p}", "sasl_plaintext://127.0.0.1:1/" },
    }
    for _, c in ipairs(cases) do
      local code, _, err = k.run(k.config("127.0.0.1:1", { messaging = security(c[1]) }), quiet, "1s")
      assert.equal(0, code, c[1] .. ": " .. err)
      assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
    end
  end)

  it("exits 2 at start naming the key, with librdkafka's text", function()
    local cases = {
      { ("    transport: {tls: {enabled: true, ca_file: %s/bad.pem}}"):format(dir),
        "messaging.security.transport.tls.ca_file (or messaging.broker.config.ssl.ca.location): "
          .. "ssl.ca.location failed" },
      { ("    transport: {tls: {enabled: true, cert_file: %s/ca.pem, key_file: %s/bad.pem}}"):format(dir, dir),
        "messaging.security.transport.tls.key_file" },
      { "    authentication: {mechanism: GSSAPI, username: u, password: p}",
        'messaging.security.authentication.mechanism: "GSSAPI" is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512' },
      { "    authentication: {username: u, password: p}",
        'messaging.security.authentication.mechanism: "" is not PLAIN' },
      { "    authentication: {mechanism: PLAIN}",
        "messaging.security.authentication.mechanism needs messaging.security.authentication.username" },
      { "    authentication: {password: p}",
        "messaging.security.authentication.password needs messaging.security.authentication.username" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = k.run(k.config("127.0.0.1:1", { messaging = security(c[1]) }), quiet)
      assert.equal(2, code, c[1] .. ": " .. err)
      assert.equal("", out)
      assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
    end
  end)

  it("still lets librdkafka's own properties in messaging.broker.config win", function()
    local yaml = k.config("127.0.0.1:1", {
      broker = "      security.protocol: plaintext\n",
      messaging = security(("    transport: {tls: {enabled: true, ca_file: %s/ca.pem}}"):format(dir)) })
    local code, _, err = k.run(yaml, quiet, "1s")
    assert.equal(0, code, err)
    assert.falsy(err:find("ssl://", 1, true), err)
  end)
end)
