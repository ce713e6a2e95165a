-- spec/hostile/http_spec.lua - the admin server and the ingress against
-- requests no well-behaved client sends (issue 12, item 6): request
-- smuggling shapes, NUL and control bytes, bodies without a length,
-- chunk extensions, oversized bodies, reserved headers, floods of idle
-- connections and file-descriptor exhaustion. swit runs on the memory
-- broker with both servers on port 0; requests go over raw TCP
-- (spec/support/rawtcp.lua). No timing is asserted: floods are bounded
-- in count and every read has a receive timeout.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"
local tcp = require "rawtcp"
local cjson = require "cjson.safe"

local function yaml(extra_admin, extra_http)
  return ([[
server:
  name: hostile
  admin: {listen: "127.0.0.1:0", token: "tok"%s}
  http: {listen: "127.0.0.1:0"%s}
messaging:
  resources:
    memory: {max_message_size: 1024}
    subscribers: {worker_pool_size: 1}
lua:
  scripts: [h.lua]
]]):format(extra_admin or "", extra_http or "")
end

local handler = [[
local swit = require "swit"
swit.on("work", function(msg)
  swit.log("info", "got [%s] key=%s trace=%s", msg:payload(),
           tostring(msg:key()), tostring(msg:header("traceparent")))
end)
]]

local start = t.start_servers

local function json_error(body)
  local r = cjson.decode(body or "")
  return type(r) == "table" and r.ok == false and type(r.error) == "string"
end

local function post(topic, body, headers)
  return ("POST /v1/publish/%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
          .. "%s\r\n%s"):format(topic, #body, headers or "", body)
end

local metric = t.metric

local function get(addr, path)
  return tcp.request(addr, ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n"):format(path))
end

describe("hostile HTTP #hostile", function()
  local p
  setup(function()
    p = start({ ["swit.yaml"] = yaml(), ["h.lua"] = handler })
  end)
  teardown(function() t.stop(p) end)

  it("refuses repeated, listed or conflicting Content-Length with 400", function()
    for _, h in ipairs({
      "Content-Length: 1\r\nContent-Length: 2\r\n",
      "Content-Length: 1\r\nContent-Length: 1\r\n",
      "Content-Length: 1, 1\r\n",
      "Content-Length: +1\r\n",
      "Content-Length: 99999999999999999999999\r\n",
    }) do
      local code, body = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\n"
                                     .. "Host: t\r\n" .. h .. "\r\nx")
      assert.equal(400, code, h)
      assert.is_true(json_error(body), h)
    end
  end)

  it("refuses Content-Length with Transfer-Encoding, and unknown codings", function()
    local code, body = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\n" ..
      "Host: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "1\r\nx\r\n0\r\n\r\n")
    assert.equal(400, code)
    assert.is_true(json_error(body))
    code = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\nHost: t\r\n" ..
                       "Transfer-Encoding: gzip, chunked\r\n\r\n")
    assert.equal(501, code)
    code = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.0\r\n" ..
                       "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
    assert.equal(400, code)
  end)

  it("refuses NUL and control bytes in the path, topic, key and header values", function()
    local cases = {
      "POST /v1/publish/wo\0rk HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
      "POST /v1/publish/wo%00rk HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
      "POST /v1/publish/wo%0Ark HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
      "POST /v1/publish/wo%1brk HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
      "POST /v1/publish/work%zz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
      post("work", "x", "Swit-Key: a\0b\r\n"),
      post("work", "x", "Swit-Key: a\1b\r\n"),
      post("work", "x", "Swit-Header-Kind: a\rb\r\n"),
      post("work", "x", "Swit-Header-Kind: a\nb\r\n"),
      post("work", "x", "Bad Name: v\r\n"),
      post("work", "x", "Name : v\r\n"),
      post("work", "x", "Name: v\r\n folded\r\n"),
    }
    for i, raw in ipairs(cases) do
      local code, body = tcp.request(p.ing, raw)
      assert.equal(400, code, "case " .. i)
      assert.is_true(json_error(body), "case " .. i)
    end
    local code = get(p.adm, "/admin/subscriptions/wo%00rk/pause")
    assert.equal(400, code)
    code = tcp.request(p.adm, "GET /healthz?group=a%00 HTTP/1.1\r\n\r\n")
    assert.equal(400, code)
  end)

  it("answers a POST without a length on HTTP/1.0 with 411, never an empty message", function()
    local code, body = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.0\r\n\r\n" ..
                                   "payload after the head")
    assert.equal(411, code)
    assert.is_true(json_error(body))
    assert.is_nil((t.read(p.dir .. "/err") or ""):find("got %[%]"))
  end)

  it("parses chunk extensions and trailers, and refuses a malformed chunk", function()
    local code = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\nHost: t\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n" ..
      "3;name=value;quoted=\"a b;c\"\r\nchu\r\n" ..
      "4 ; ext\r\nnked\r\n0\r\nTrailer-Field: v\r\n\r\n")
    assert.equal(202, code)
    t.wait_for(p, "err", "got %[chunked%]")
    for _, bad in ipairs({ "x\r\nabc\r\n0\r\n\r\n", "3;=v\r\nabc\r\n0\r\n\r\n",
                           "3\r\nabcX\r\n0\r\n\r\n", "3;q=\"open\r\nabc\r\n" }) do
      local c2, body = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\n" ..
        "Host: t\r\nTransfer-Encoding: chunked\r\n\r\n" .. bad)
      assert.equal(400, c2, bad)
      assert.is_true(json_error(body))
    end
  end)

  it("answers bodies over the limit with a JSON 413, by length or chunked", function()
    local code, body = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\n" ..
      "Host: t\r\nContent-Length: 100000\r\n\r\n")
    assert.equal(413, code)
    assert.is_true(json_error(body))
    local chunk = ("%x\r\n%s\r\n"):format(600, ("c"):rep(600))
    code, body = tcp.request(p.ing, "POST /v1/publish/work HTTP/1.1\r\n" ..
      "Host: t\r\nTransfer-Encoding: chunked\r\n\r\n" .. chunk .. chunk ..
      "0\r\n\r\n")
    assert.equal(413, code)
    assert.is_true(json_error(body))
    code, body = tcp.request(p.adm, "POST /admin/reload HTTP/1.1\r\n" ..
      "Content-Length: 10000000\r\n\r\n")
    assert.equal(413, code)
    assert.is_true(json_error(body))
  end)

  it("keeps x-swit-* and trace context headers away from clients", function()
    for _, h in ipairs({ "Swit-Header-Traceparent: 00-" .. ("a"):rep(32) ..
                         "-" .. ("b"):rep(16) .. "-01\r\n",
                         "Swit-Header-tracestate: x=y\r\n",
                         "Swit-Header-X-Swit-Attempt: 9\r\n" }) do
      local code, body = tcp.request(p.ing, post("work", "x", h))
      assert.equal(400, code, h)
      assert.matches("trust_headers", cjson.decode(body).error)
    end
  end)

  it("answers pipelined requests in order on one connection", function()
    local _, _, all = tcp.request(p.ing, post("work", "p1") .. post("work", "p2")
                                  .. "GET /nope HTTP/1.1\r\n\r\n")
    local codes = {}
    for c in all:gmatch("HTTP/1%.1 (%d%d%d)") do codes[#codes + 1] = tonumber(c) end
    assert.same({ 202, 202, 404 }, codes)
  end)

  it("answers other HTTP versions with 505 and a malformed request line with 400", function()
    assert.equal(505, (tcp.request(p.adm, "GET /healthz HTTP/2.0\r\n\r\n")))
    assert.equal(400, (tcp.request(p.adm, "GET /healthz\r\n\r\n")))
    assert.equal(400, (tcp.request(p.adm, "GET http://x/healthz HTTP/1.1\r\n\r\n")))
    assert.equal(400, (tcp.request(p.adm, "GET /healthz HTTP/1.1\n\n")))
    assert.equal(431, (tcp.request(p.adm, "GET /healthz HTTP/1.1\r\nX: " ..
                                   ("a"):rep(20000) .. "\r\n\r\n")))
  end)

  it("counts refused requests on /metrics", function()
    local _, body = get(p.adm, "/metrics")
    assert.is_true(metric(body, 'swit_http_bad_requests_total{server="ingress"}') > 0)
    assert.is_true(metric(body, 'swit_http_bad_requests_total{server="admin"}') > 0)
  end)
end)

describe("ingress with server.http.trust_headers #hostile", function()
  it("lets a trusted client set traceparent", function()
    local p = start({ ["swit.yaml"] = yaml(nil, ", trust_headers: true"),
                      ["h.lua"] = handler })
    local tp = "00-" .. ("a"):rep(32) .. "-" .. ("b"):rep(16) .. "-01"
    local code = tcp.request(p.ing, post("work", "traced",
                                         "Swit-Header-Traceparent: " .. tp .. "\r\n"))
    assert.equal(202, code)
    t.wait_for(p, "err", "got %[traced%] key=nil trace=" .. tp:gsub("%-", "%%-"))
    t.stop(p)
  end)
end)

describe("connection floods #hostile", function()
  it("keeps the reserve for health checks and sheds the oldest idle connection at the cap", function()
    local p = start({ ["swit.yaml"] = yaml(", max_connections: 8"),
                      ["h.lua"] = handler })
    local idle = {}
    for i = 1, 4 do idle[i] = assert(tcp.connect(p.adm)) end
    -- the 4 unreserved slots are taken: only health checks now
    local code, body = get(p.adm, "/metrics")
    assert.equal(503, code)
    assert.is_true(json_error(body))
    assert.equal(200, (get(p.adm, "/healthz")))
    -- a flood of idle connections past the cap: health still answers
    for i = 5, 40 do idle[i] = assert(tcp.connect(p.adm)) end
    assert.equal(200, (get(p.adm, "/healthz")))
    for _, fd in ipairs(idle) do tcp.close(fd) end
    local text
    for _ = 1, 500 do               -- until the closes are seen
      code, text = get(p.adm, "/metrics")
      if code == 200 then break end
      os.execute("sleep 0.01")
    end
    assert.equal(200, code)
    assert.is_true(metric(text, 'swit_http_connections_shed_total{server="admin"}') > 0)
    t.stop(p)
  end)

  it("backs off on EMFILE without a log flood, and health answers when the flood ends", function()
    -- few descriptors for swit: the flood exhausts them
    local p = start({ ["swit.yaml"] = yaml(", max_connections: 4096"),
                      ["h.lua"] = handler }, "ulimit -n 64;")
    local fds = {}
    for i = 1, 300 do
      local fd = tcp.connect(p.adm, 1)
      if fd then fds[#fds + 1] = fd end
    end
    -- the oldest connection gives up its descriptor: a health check gets in
    assert.equal(200, (get(p.adm, "/healthz")))
    for _, fd in ipairs(fds) do tcp.close(fd) end
    local code, text
    for _ = 1, 500 do
      code, text = get(p.adm, "/metrics")
      if code == 200 then break end
      os.execute("sleep 0.01")
    end
    assert.equal(200, code)
    assert.equal(200, (get(p.adm, "/healthz")))
    assert.is_true(metric(text, 'swit_http_accept_errors_total{server="admin"}') > 0)
    local _, err = t.stop(p)
    -- one line per 10 s at most (the flood lasts a few seconds at most)
    assert.is_true(t.count(err, "accept failed") <= 3, err)
  end)
end)
