-- spec/e2e/https_spec.lua - the admin server and the ingress over TLS
-- (server.admin.tls, server.http.tls) and the ingress's own token
-- (server.http.token), issue 13 item 7; mutual TLS (client_ca_file). The certificates are made by the
-- test with the openssl command (a throwaway CA and a server certificate
-- for 127.0.0.1); curl checks them against that CA. Hostile cases: plain
-- HTTP to a TLS port, a key that does not match its certificate, a file
-- that is not PEM, one file of the pair missing, a wrong or missing token.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

-- A CA and a server certificate signed by it (SAN 127.0.0.1), plus a
-- second, unrelated key: files in a fresh dir.
local function make_certs()
  local dir = t.dir({ ["san.cnf"] = "subjectAltName=IP:127.0.0.1\n" })
  local q = t.quote(dir)
  local cmd = ([[cd %s &&
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=swit-test-ca \
  -keyout ca.key -out ca.pem &&
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
  -keyout server.key -out server.csr &&
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -extfile san.cnf -out server.pem &&
openssl genrsa -out other.key 2048 &&
openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key \
  -out client.csr &&
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -out client.pem &&
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=stranger \
  -keyout stranger.key -out stranger.pem]]):format(q)
  local code = t.sh(cmd .. " >/dev/null 2>&1")
  assert(code == 0, "openssl could not make the test certificates")
  return dir
end

local function yaml(certs, extra)
  return ([[
server:
  name: https
  admin:
    listen: "127.0.0.1:0"
    tls: {cert_file: %s/server.pem, key_file: %s/server.key}
  http:
    listen: "127.0.0.1:0"
    token: "s3cret"
    tls: {cert_file: %s/server.pem, key_file: %s/server.key}
%slua:
  scripts: [h.lua]
]]):format(certs, certs, certs, certs, extra or "")
end

local handler = [[
local swit = require "swit"
swit.on("in", function(msg) io.write("got " .. msg:payload() .. "\n") end)
]]

-- curl's status code (000 when no HTTP answer came) and body
local function curl(args)
  local _, out = t.sh("curl -s -m 5 -o - -w '\\n%{http_code}' " .. args)
  local body, code = out:match("^(.*)\n(%d%d%d)$")
  return code or "000", body or ""
end

describe("HTTPS and the ingress token #e2e", function()
  local certs
  setup(function() certs = make_certs() end)
  teardown(function() os.execute("rm -rf " .. t.quote(certs)) end)

  it("serves the admin server and the ingress over TLS, and the ingress " ..
     "wants its token", function()
    local p = t.start({ ["swit.yaml"] = yaml(certs), ["h.lua"] = handler })
    local err = t.wait_for(p, "err", "http ingress listening on https://[%d.:]+")
    local admin = err:match("admin listening on (https://[%d.:]+)")
    local ingress = err:match("http ingress listening on (https://[%d.:]+)")
    local ca = "--cacert " .. t.quote(certs .. "/ca.pem") .. " "
    assert.equal("200", (curl(ca .. admin .. "/healthz")))
    -- the certificate is checked: without the CA, curl refuses it
    assert.equal("000", (curl(admin .. "/healthz")))
    -- plain HTTP to the TLS port gets no HTTP answer, and swit goes on
    assert.equal("000", (curl(admin:gsub("^https", "http") .. "/healthz")))
    local post = ca .. "-X POST --data-binary "
    local code, body = curl(post .. "one " .. ingress .. "/v1/publish/in")
    assert.equal("401", code)
    assert.matches("server.http.token", body)
    code = curl(post .. "two -H 'Authorization: Bearer s3cre' " .. ingress ..
                "/v1/publish/in")
    assert.equal("401", code)
    code = curl(post .. "three -H 'Authorization: Bearer s3cret' " ..
                ingress .. "/v1/publish/in")
    assert.equal("202", code)
    t.wait_for(p, "out", "got three")
    local out = t.stop(p)
    assert.not_matches("got one", out)
    assert.not_matches("got two", out)
  end)

  it("refuses a key that does not match its certificate, naming the key",
     function()
    local y = yaml(certs):gsub("admin:\n    listen: \"127.0.0.1:0\"\n    tls: {cert_file: ([^,]+), key_file: [^}]+}",
      "admin:\n    listen: \"127.0.0.1:0\"\n    tls: {cert_file: %1, key_file: " ..
      certs .. "/other.key}")
    local code, _, err = t.run_scripts(y, { ["h.lua"] = handler })
    assert.not_equal(0, code)
    assert.matches("server.admin.tls.key_file: cannot use '[^']*other.key' " ..
                   "for TLS", err)
  end)

  it("refuses a certificate file that is not PEM", function()
    local dir = t.dir({ ["bad.pem"] = "not a certificate\n" })
    local y = yaml(certs):gsub("http:\n    listen: \"127.0.0.1:0\"\n    token: \"s3cret\"\n    tls: {cert_file: [^,]+,",
      "http:\n    listen: \"127.0.0.1:0\"\n    token: \"s3cret\"\n    tls: {cert_file: " ..
      dir .. "/bad.pem,")
    local code, _, err = t.run_scripts(y, { ["h.lua"] = handler })
    os.execute("rm -rf " .. t.quote(dir))
    assert.not_equal(0, code)
    assert.matches("server.http.tls.cert_file: cannot use '[^']*bad.pem' " ..
                   "for TLS", err)
  end)

  it("wants a client certificate from the CA with client_ca_file (mTLS)",
     function()
    local y = yaml(certs):gsub("tls: {cert_file: ([^,]+), key_file: ([^}]+)}",
      "tls: {cert_file: %1, key_file: %2, client_ca_file: " .. certs .. "/ca.pem}")
    local p = t.start({ ["swit.yaml"] = y, ["h.lua"] = handler })
    local err = t.wait_for(p, "err", "http ingress listening on https://[%d.:]+")
    local admin = err:match("admin listening on (https://[%d.:]+)")
    local ingress = err:match("http ingress listening on (https://[%d.:]+)")
    local ca = "--cacert " .. t.quote(certs .. "/ca.pem") .. " "
    local function as(who)
      return ca .. ("--cert %s --key %s "):format(t.quote(certs .. "/" .. who .. ".pem"),
                                                 t.quote(certs .. "/" .. who .. ".key"))
    end
    -- no client certificate, or one from another CA: no HTTP answer
    assert.equal("000", (curl(ca .. admin .. "/healthz")))
    assert.equal("000", (curl(as("stranger") .. admin .. "/healthz")))
    assert.equal("000", (curl(as("stranger") .. "-X POST --data-binary x " ..
                              "-H 'Authorization: Bearer s3cret' " .. ingress ..
                              "/v1/publish/in")))
    -- the CA's client: served; the ingress still wants its token
    assert.equal("200", (curl(as("client") .. admin .. "/healthz")))
    assert.equal("401", (curl(as("client") .. "-X POST --data-binary no " ..
                              ingress .. "/v1/publish/in")))
    assert.equal("202", (curl(as("client") .. "-X POST --data-binary yes " ..
                              "-H 'Authorization: Bearer s3cret' " .. ingress ..
                              "/v1/publish/in")))
    t.wait_for(p, "out", "got yes")
    local out = t.stop(p)
    assert.equal("got yes\n", out)
  end)

  it("refuses client_ca_file without HTTPS, or one that is not PEM", function()
    local dir = t.dir({ ["h.lua"] = handler, ["bad.pem"] = "not a CA\n" })
    t.save({ dir = dir }, "swit.yaml", [[
server:
  admin:
    listen: "127.0.0.1:0"
    tls: {client_ca_file: bad.pem}
lua:
  scripts: [h.lua]
]])
    local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    assert.equal(2, code, err)
    assert.matches("swit.yaml:4:%d+: server.admin.tls.client_ca_file: needs " ..
                   "cert_file and key_file", err)
    local y = yaml(certs):gsub("http:\n    listen: \"127.0.0.1:0\"\n    token: \"s3cret\"\n    tls: {cert_file: ([^,]+), key_file: ([^}]+)}",
      "http:\n    listen: \"127.0.0.1:0\"\n    token: \"s3cret\"\n    tls: {cert_file: %1, " ..
      "key_file: %2, client_ca_file: " .. dir .. "/bad.pem}")
    code, _, err = t.run_scripts(y, { ["h.lua"] = handler })
    os.execute("rm -rf " .. t.quote(dir))
    assert.not_equal(0, code)
    assert.matches("server.http.tls.client_ca_file: cannot use '[^']*bad.pem' " ..
                   "for TLS", err)
  end)

  it("refuses one file of the pair alone, and an unreadable one, at check",
     function()
    local y = ([[
server:
  admin:
    listen: "127.0.0.1:0"
    tls: {cert_file: %s/server.pem}
lua:
  scripts: [h.lua]
]]):format(certs)
    local dir = t.dir({ ["swit.yaml"] = y, ["h.lua"] = handler })
    local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    assert.equal(2, code)
    assert.matches("swit.yaml:4:%d+: server.admin.tls.cert_file: key_file " ..
                   "must be set too", err)
    t.save({ dir = dir }, "swit.yaml", y:gsub("}", ", key_file: nowhere.key}"))
    code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.equal(2, code)
    assert.matches("server.admin.tls.key_file: cannot read 'nowhere.key'", err)
  end)
end)
