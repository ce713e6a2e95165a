-- spec/nats/tls_spec.lua - NATS transport security (issue 13 item 1,
-- docs/security.md "Broker transport security") against nats-server
-- instances this spec starts itself (not the suite's fixture): TLS with
-- client certificates required, users with passwords, an NKEY user, and a
-- second server that takes a token. The certificates are made here with
-- openssl (a CA, a server certificate for localhost/127.0.0.1, a client
-- certificate, an expired one, one for another host (served by a third
-- server), an unrelated CA);
-- the NKEY (ed25519 by openssl, encoded here as nkeys does: base32 with a
-- prefix byte and a CRC16). Every wait is bounded; the servers are
-- stopped in teardown.
package.path = "spec/nats/?.lua;" .. package.path
local N = require "nats_support"
local t = N.t
local bit = require "bit"
local q = t.quote

-- ---------------------------------------------------------------------
-- NKEYs: base32 (RFC 4648, no padding) of prefix .. raw key .. crc16
-- (XMODEM, little-endian), as github.com/nats-io/nkeys encodes them.

local function crc16(s)
  local crc = 0
  for i = 1, #s do
    crc = bit.bxor(crc, bit.lshift(s:byte(i), 8))
    for _ = 1, 8 do
      if bit.band(crc, 0x8000) ~= 0 then
        crc = bit.band(bit.bxor(bit.lshift(crc, 1), 0x1021), 0xffff)
      else
        crc = bit.band(bit.lshift(crc, 1), 0xffff)
      end
    end
  end
  return crc
end

local B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
local function base32(s)
  local out, acc, bits = {}, 0, 0
  for i = 1, #s do
    acc = bit.bor(bit.lshift(bit.band(acc, 0xff), 8), s:byte(i))
    bits = bits + 8
    while bits >= 5 do
      bits = bits - 5
      local v = bit.band(bit.rshift(acc, bits), 31)
      out[#out + 1] = B32:sub(v + 1, v + 1)
    end
  end
  if bits > 0 then
    local v = bit.band(bit.lshift(acc, 5 - bits), 31)
    out[#out + 1] = B32:sub(v + 1, v + 1)
  end
  return table.concat(out)
end

local function nkey_encode(prefix, raw)
  local s = prefix .. raw
  local c = crc16(s)
  return base32(s .. string.char(bit.band(c, 0xff), bit.rshift(c, 8)))
end

-- A user NKEY: public key ("U...") and seed ("SU..."), from an ed25519
-- key made by openssl (the last 32 bytes of its PKCS#8 and SPKI DER).
local function make_nkey(dir)
  local code = t.sh(("cd %s && openssl genpkey -algorithm ed25519 -outform DER -out nk.der && " ..
                     "openssl pkey -inform DER -in nk.der -pubout -outform DER -out nkpub.der")
                    :format(q(dir)) .. " >/dev/null 2>&1")
  assert(code == 0, "openssl could not make an ed25519 key")
  local priv = assert(t.read(dir .. "/nk.der")):sub(-32)
  local pub = assert(t.read(dir .. "/nkpub.der")):sub(-32)
  local user = 20 * 8 -- nkeys PrefixByteUser
  local seed_prefix = string.char(bit.bor(18 * 8, bit.rshift(user, 5)),
                                  bit.lshift(bit.band(user, 31), 3))
  return nkey_encode(string.char(user), pub), nkey_encode(seed_prefix, priv)
end

-- ---------------------------------------------------------------------
-- Certificates

local function make_certs()
  local dir = t.dir({
    ["server.cnf"] = "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    ["wrong.cnf"] = "subjectAltName=DNS:wrong.example\n",
    ["client.cnf"] = "extendedKeyUsage=clientAuth\n",
  })
  local cmd = ([[cd %s &&
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=swit-tls-ca -keyout ca.key -out ca.pem &&
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem &&
for n in server wrong expired client; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=$n -keyout $n.key -out $n.csr || exit 1
done &&
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.cnf -out server.pem &&
openssl x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile wrong.cnf -out wrong.pem &&
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.cnf -out client.pem &&
openssl x509 -req -in expired.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days -1 -extfile client.cnf -out expired.pem]]):format(q(dir))
  local code, out = t.sh(cmd .. " 2>&1")
  assert(code == 0, "openssl could not make the test certificates: " .. tostring(out))
  return dir
end

-- ---------------------------------------------------------------------
-- A private nats-server on a free port: `auth` is its authorization
-- block, `cert` the server certificate's base name. Returns {port, pid}.

local servers = {}

local function alive(pid)
  local r = os.execute(("kill -0 %d 2>/dev/null"):format(pid))
  return r == 0 or r == true
end

local function start_server(dir, name, cert, auth)
  for _ = 1, 5 do
    local _, out = t.sh(q(t.root .. "/scripts/free-port.sh"))
    local port = assert(tonumber(out:match("%d+")), "scripts/free-port.sh failed")
    local conf = ([[
listen: "127.0.0.1:%d"
tls {
  cert_file: "%s/%s.pem"
  key_file: "%s/%s.key"
  ca_file: "%s/ca.pem"
  verify: true
  timeout: 5
}
authorization {
%s
}
]]):format(port, dir, cert, dir, cert, dir, auth)
    local f = assert(io.open(("%s/%s.conf"):format(dir, name), "w"))
    f:write(conf)
    f:close()
    local log = ("%s/%s.log"):format(dir, name)
    local pidf = ("%s/%s.pid"):format(dir, name)
    os.execute(("nats-server -c %s -l %s -P %s >/dev/null 2>&1 &"):format(
      q(dir .. "/" .. name .. ".conf"), q(log), q(pidf)))
    local ready = N.wait(function()
      local l = t.read(log) or ""
      return l:find("Server is ready", 1, true) or l:find("[FTL]", 1, true)
    end, 15)
    local pid = tonumber(t.read(pidf) or "")
    if pid then servers[#servers + 1] = pid end
    if ready and not (t.read(log) or ""):find("[FTL]", 1, true) then
      return { port = port, pid = pid, log = log }
    end
    if pid then os.execute(("kill %d 2>/dev/null"):format(pid)) end
  end
  error("nats-server " .. name .. " did not start (" .. dir .. ")")
end

-- ---------------------------------------------------------------------
-- swit against it

local function yaml(port, tls, conf, host)
  return ([[
server: {name: tlsspec, shutdown_timeout: 5s, admin: {listen: "off"}}
messaging:
  broker:
    type: nats
    endpoints: ["nats://%s:%d"]
    reconnect: {delay: 50ms, max_delay: 200ms, max_attempts: 2}
%s  security:
    transport:
      tls: {%s}
lua:
  scripts: [s.lua]
]]):format(host or "localhost", port, conf and ("    config: {%s}\n"):format(conf) or "", tls)
end

local function tls_block(dir, o)
  o = o or {}
  return ("enabled: true, ca_file: %s/%s.pem, cert_file: %s/%s.pem, key_file: %s/%s.key%s"):format(
    dir, o.ca or "ca", dir, o.cert or "client", dir, o.cert or "client",
    o.extra and (", " .. o.extra) or "")
end

local roundtrip = [[
local swit = require "swit"
swit.on("tls.check", function(msg) print("got " .. msg:payload()) end)
swit.on_start(function() assert(swit.publish("tls.check", "secret-hello")) end)
]]

-- Start swit; it must refuse to run: returns its exit code and stderr.
local function refused(cfg)
  local h = N.spawn(cfg, roundtrip)
  local code = N.wait_exit(h, 60)
  local err = h.err()
  N.cleanup(h)
  return code, err
end

describe("NATS transport security #nats", function()
  local dir, main, tok, wrong, nkey_pub
  setup(function()
    dir = make_certs()
    local seed
    nkey_pub, seed = make_nkey(dir)
    local f = assert(io.open(dir .. "/user.nk", "w"))
    f:write(seed, "\n")
    f:close()
    os.execute("chmod 600 " .. q(dir .. "/user.nk"))
    main = start_server(dir, "main", "server", ([[
  users: [
    {user: alice, password: "pw-alice"}
    {nkey: "%s"}
  ]
]]):format(nkey_pub))
    tok = start_server(dir, "tok", "server", '  token: "tok-s3cret"')
    wrong = start_server(dir, "wrong", "wrong", '  users: [{user: alice, password: "pw-alice"}]')
  end)
  teardown(function()
    for _, pid in ipairs(servers) do os.execute(("kill %d 2>/dev/null"):format(pid)) end
    for _, pid in ipairs(servers) do
      N.wait(function() return not alive(pid) end, 10)
    end
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  local function works(cfg)
    local h = N.spawn(cfg, roundtrip)
    finally(function() N.cleanup(h) end)
    assert.truthy(N.running(h), h.err())
    assert.truthy(N.wait(function() return h.out():find("got secret-hello", 1, true) end, 20),
                  h.out() .. h.err())
    N.kill(h, "TERM")
    assert.equal(0, N.wait_exit(h, 30), h.err())
  end

  it("mTLS + user/password: publish and consume end to end", function()
    works(yaml(main.port, tls_block(dir), 'user: alice, password: "pw-alice"'))
  end)

  it("mTLS + messaging.security.authentication.username/password", function()
    local cfg = yaml(main.port, tls_block(dir))
      .. "" -- authentication goes under security
    cfg = cfg:gsub("  security:\n", '  security:\n    authentication: {username: alice, password: "pw-alice"}\n')
    works(cfg)
  end)

  it("mTLS + NKEY seed", function()
    works(yaml(main.port, tls_block(dir),
               ("nkey: %s, nkey_seed_file: %s/user.nk"):format(nkey_pub, dir)))
  end)

  it("mTLS + token", function()
    works(yaml(tok.port, tls_block(dir), 'token: "tok-s3cret"'))
  end)

  it("checks an IP endpoint against the certificate's IP address", function()
    works(yaml(main.port, tls_block(dir), 'user: alice, password: "pw-alice"', "127.0.0.1"))
  end)

  it("an explicit tls_hostname that the certificate carries", function()
    works(yaml(main.port, tls_block(dir), 'user: alice, password: "pw-alice", tls_hostname: localhost',
               "127.0.0.1"))
  end)

  it("refuses a server certificate from another CA", function()
    local code, err = refused(yaml(main.port, tls_block(dir, { ca = "other" }),
                                   'user: alice, password: "pw-alice"'))
    assert.equal(2, code, err)
    assert.truthy(err:find("messaging.security.transport.tls", 1, true), err)
  end)

  it("is refused with an expired client certificate", function()
    local code, err = refused(yaml(main.port, tls_block(dir, { cert = "expired" }),
                                   'user: alice, password: "pw-alice"'))
    assert.equal(2, code, err)
    assert.truthy(err:find("messaging.security.transport.tls", 1, true), err)
  end)

  it("refuses a server whose certificate is for another host", function()
    for _, host in ipairs({ "localhost", "127.0.0.1" }) do
      local code, err = refused(yaml(wrong.port, tls_block(dir), 'user: alice, password: "pw-alice"', host))
      assert.equal(2, code, host .. ": " .. err)
      assert.truthy(err:find("messaging.security.transport.tls", 1, true), err)
    end
    -- the same server, told the name its certificate carries
    works(yaml(wrong.port, tls_block(dir), 'user: alice, password: "pw-alice", tls_hostname: wrong.example'))
  end)

  it("refuses a tls_hostname the server's certificate does not carry", function()
    local code, err = refused(yaml(main.port, tls_block(dir), 'user: alice, password: "pw-alice", tls_hostname: wrong.other'))
    assert.equal(2, code, err)
    assert.truthy(err:find("messaging.security.transport.tls", 1, true), err)
  end)

  it("is refused with a bad password", function()
    local code, err = refused(yaml(main.port, tls_block(dir), 'user: alice, password: "nope"'))
    assert.equal(2, code, err)
    assert.truthy(err:find("Authorization Violation", 1, true), err)
    assert.truthy(err:find("check messaging.broker.config", 1, true), err)
  end)

  it("is refused with a bad token", function()
    local code, err = refused(yaml(tok.port, tls_block(dir), 'token: "nope"'))
    assert.equal(2, code, err)
    assert.truthy(err:find("Authorization Violation", 1, true), err)
    assert.truthy(err:find("check messaging.broker.config", 1, true), err)
  end)

  it("refuses contradictory or unreadable credentials at start, naming the key", function()
    local cases = {
      { 'user: alice, token: "x"', "messaging.broker.config.token" },
      { "nkey: " .. nkey_pub, "nkey_seed_file go together" },
      { ("nkey: %s, nkey_seed_file: %s/none.nk"):format(nkey_pub, dir),
        "messaging.broker.config.nkey_seed_file: cannot read" },
      { ("creds_file: %s/none.creds"):format(dir),
        "messaging.broker.config.creds_file: cannot read" },
      { 'password: "x"', "messaging.broker.config.password needs" },
    }
    for _, c in ipairs(cases) do
      local code, err = refused(yaml(main.port, tls_block(dir), c[1]))
      assert.equal(2, code, c[1] .. ": " .. err)
      assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
    end
    local code, err = refused(yaml(main.port, tls_block(dir, { extra = "verify_server: false" }),
                                   "tls_hostname: localhost"))
    assert.equal(2, code, err)
    assert.truthy(err:find("messaging.broker.config.tls_hostname", 1, true), err)
  end)
end)
