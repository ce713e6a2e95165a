-- spec/e2e/admin_spec.lua - the admin server, swit.metrics, the HTTP
-- ingress and the log settings through the swit binary. Each test runs
-- swit in the background with its servers on port 0, reads the bound
-- addresses from its log, talks to it with curl and stops it with SIGTERM.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"
local cjson = require "cjson.safe"

local start = t.start

local function wait_for(p, file, pattern)
  for _ = 1, 1000 do
    local s = t.read(p.dir .. "/" .. file) or ""
    local m = s:match(pattern)
    if m then return m end
    os.execute("sleep 0.01")
  end
  error(("timed out waiting for %q in %s:\n%s"):format(pattern, file,
        t.read(p.dir .. "/" .. file) or ""))
end

local stop = t.stop

-- curl: returns status, body
local function curl(args)
  local f = io.popen("curl -s -o /dev/stdout -w '\n%{http_code}' " .. args)
  local s = f:read("*a")
  f:close()
  local body, code = s:match("^(.*)\n(%d+)$")
  return tonumber(code), body
end

local yaml = [[
server:
  name: e2e
  admin: {listen: "127.0.0.1:0", token: "tok"}
  http: {listen: "127.0.0.1:0"}
  log: {format: %s, level: %s}
messaging:
  resources:
    subscribers: {worker_pool_size: 2}
lua:
  scripts: [h.lua]
]]

local handler = [[
local swit = require "swit"
local seen = swit.metrics.counter("shop_orders_total", "Orders seen", { "kind" })
local size = swit.metrics.histogram("shop_order_bytes", "Payload size", nil,
                                    { 4, 16, 64 })
local last = swit.metrics.gauge("shop_last_size", "Last payload size")
swit.on("orders", function(msg)
  seen:labels(msg:header("kind") or "none"):inc()
  size:observe(#msg:payload())
  last:set(#msg:payload())
  swit.log("info", "order %s", msg:payload())
end)
]]

describe("admin server #e2e", function()
  it("serves Lua and host metrics after a workload through the ingress", function()
    local p = start({ ["swit.yaml"] = yaml:format("text", "info"),
                      ["h.lua"] = handler })
    local adm = wait_for(p, "err", "admin listening on http://([%d.:]+)")
    local ing = wait_for(p, "err", "http ingress listening on http://([%d.:]+)")
    for i = 1, 10 do
      local code = curl(("-X POST -H 'Swit-Header-Kind: %s' --data '%s' " ..
                         "http://%s/v1/publish/orders")
                        :format(i <= 7 and "a" or "b", ("x"):rep(i), ing))
      assert.equal(202, code)
    end
    local text
    for _ = 1, 200 do
      local _, body = curl("http://" .. adm .. "/metrics")
      text = body
      if t.metric(text, 'swit_messages_consumed_total{broker="memory",topic="orders",group="e2e"}') == 10 then
        break
      end
      os.execute("sleep 0.02")
    end
    assert.equal(10, t.metric(text, 'swit_messages_consumed_total{broker="memory",topic="orders",group="e2e"}'))
    assert.equal(10, t.metric(text, 'swit_messages_published_total{broker="memory",topic="orders"}'))
    assert.equal(7, t.metric(text, 'shop_orders_total{kind="a"}'))
    assert.equal(3, t.metric(text, 'shop_orders_total{kind="b"}'))
    assert.equal(4, t.metric(text, 'shop_order_bytes_bucket{le="4"}'))
    assert.equal(10, t.metric(text, 'shop_order_bytes_bucket{le="16"}'))
    assert.equal(10, t.metric(text, "shop_order_bytes_count"))
    assert.equal(55, t.metric(text, "shop_order_bytes_sum"))
    assert.is_number(t.metric(text, "shop_last_size"))
    t.promtool_check(text, p.dir)
    stop(p)
  end)

  it("reloads, rejects a bad reload with file:line and rolls back, with the token", function()
    local p = start({ ["swit.yaml"] = yaml:format("text", "info"),
                      ["h.lua"] = handler })
    local adm = wait_for(p, "err", "admin listening on http://([%d.:]+)")
    local base = "-X POST http://" .. adm .. "/admin/reload"
    assert.equal(401, (curl(base)))
    local code, body = curl("-H 'Authorization: Bearer tok' " .. base)
    assert.equal(200, code)
    assert.equal(2, cjson.decode(body).generation)
    local f = io.open(p.dir .. "/h.lua", "w")
    f:write("local swit = require 'swit'\nswit.on('orders', function( end)\n")
    f:close()
    code, body = curl("-H 'Authorization: Bearer tok' " .. base)
    assert.equal(422, code)
    local r = cjson.decode(body)
    assert.is_false(r.ok)
    assert.matches("h.lua:2:", r.error)
    assert.equal(2, r.generation)
    code, body = curl("-H 'Authorization: Bearer tok' '" ..
                      base:gsub("^%-X POST ", "") .. "?rollback=1' -X POST")
    assert.equal(200, code)
    assert.equal(3, cjson.decode(body).generation)
    local _, status = curl("http://" .. adm .. "/admin/status")
    assert.equal(3, cjson.decode(status).generation)
    stop(p)
  end)

  it("keeps answering /healthz while a reload is loading its scripts, and refuses a second reload with 409", function()
    -- once the file "slow" exists, loading h.lua says "slow load" and
    -- waits for the file "go" (at most 4 s, under lua.limits.load_timeout):
    -- the reload is in progress, for certain, until the test writes "go"
    local slow = [[
local f = io.open("slow")
if f then
  f:close()
  print("slow load")
  io.stdout:flush()
  for _ = 1, 400 do
    local go = io.open("go")
    if go then go:close() break end
    os.execute("sleep 0.01")
  end
end
]] .. handler
    local p = start({ ["swit.yaml"] = yaml:format("text", "info"),
                      ["h.lua"] = slow })
    local adm = wait_for(p, "err", "admin listening on http://([%d.:]+)")
    io.open(p.dir .. "/slow", "w"):close()
    local auth = "-H 'Authorization: Bearer tok' -X POST http://" .. adm ..
                 "/admin/reload"
    os.execute(("curl -s -o %s/reload.json %s &"):format(t.quote(p.dir), auth))
    wait_for(p, "out", "slow load")              -- the first reload runs
    local code, body = curl(auth)                -- one at a time
    assert.equal(409, code)
    assert.is_false(cjson.decode(body).ok)
    -- /healthz answers while the reload waits: each request is bounded
    -- (-m 2) well below the reload's own wait (4 s), so one that waited
    -- for the reload fails here
    for _ = 1, 3 do
      local f = io.popen("curl -s -m 2 -o /dev/null -w '%{http_code}' http://" ..
                         adm .. "/healthz")
      local status = f:read("*a")
      f:close()
      assert.equal("200", status)
      assert.equal("", t.read(p.dir .. "/reload.json") or "", "the reload ended early")
    end
    io.open(p.dir .. "/go", "w"):close()
    for _ = 1, 1000 do                           -- bounded: 10 s
      if (t.read(p.dir .. "/reload.json") or "") ~= "" then break end
      os.execute("sleep 0.01")
    end
    local r = cjson.decode(t.read(p.dir .. "/reload.json"))
    assert.is_true(r.ok)
    assert.equal(2, r.generation)
    stop(p)
  end)

  it("names the worker, topic and script of a handler stuck past handler_timeout", function()
    local conf = [[
server:
  name: e2e
  admin: {listen: "127.0.0.1:0"}
  http: {listen: "127.0.0.1:0"}
messaging:
  resources:
    subscribers: {worker_pool_size: 1}
lua:
  scripts: [a.lua, b.lua]
  limits: {handler_timeout: 100ms}
]]
    local p = start({ ["swit.yaml"] = conf, ["a.lua"] = [[
local swit = require "swit"
swit.on("fast", function() end)
]], ["b.lua"] = [[
local swit = require "swit"
swit.on("stuck", function()
  local t0 = os.clock()
  while os.clock() - t0 < 1.5 do end
end)
]] })
    local adm = wait_for(p, "err", "admin listening on http://([%d.:]+)")
    local ing = wait_for(p, "err", "http ingress listening on http://([%d.:]+)")
    assert.equal(202, (curl(("-X POST --data x http://%s/v1/publish/stuck"):format(ing))))
    local detail
    for _ = 1, 100 do
      local code, body = curl("http://" .. adm .. "/healthz")
      if code == 503 then
        for _, c in ipairs(cjson.decode(body).checks) do
          if c.name == "workers" then detail = c.detail end
        end
        break
      end
      os.execute("sleep 0.02")
    end
    assert.is_string(detail)
    -- the script path as lua.scripts resolves it, and only that script
    assert.matches("^worker 0 has been in a handler for [%d.]+ s %(topic " ..
                   "'stuck', script [^,;]*b%.lua%)$", detail)
    assert.is_nil(detail:find("a.lua", 1, true))
    stop(p)
  end)

  it("writes JSON log lines with worker, topic and message", function()
    local p = start({ ["swit.yaml"] = yaml:format("json", "info"),
                      ["h.lua"] = handler })
    local ing = wait_for(p, "err", 'http ingress listening on http://([%d.:]+)')
    assert.equal(202, (curl(("-X POST --data 'o-1' http://%s/v1/publish/orders")
                            :format(ing))))
    wait_for(p, "err", "order o%-1")
    local _, err = stop(p)
    local found = false
    for line in err:gmatch("[^\n]+") do   -- every line, the command's too
      local j = cjson.decode(line)
      assert.is_table(j, line)
      assert.is_string(j.time)
      assert.is_string(j.level)
      assert.is_string(j.msg)
      if j.msg:find("order o%-1") then
        found = true
        assert.equal("orders", j.topic)
        assert.is_number(j.worker)
      end
    end
    assert.is_true(found)
  end)

  it("drops lines below server.log.level", function()
    local code, _, err = t.run_scripts(yaml:format("text", "warn")
                                         :gsub("admin: {[^}]*}", "admin: {listen: \"off\"}")
                                         :gsub("http: {[^}]*}", "http: {listen: off}"),
                                       { ["h.lua"] = handler }, "100ms")
    assert.equal(0, code)
    assert.equal(0, t.count(err, " info "))
  end)
end)
