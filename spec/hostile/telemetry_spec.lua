-- spec/hostile/telemetry_spec.lua - telemetry never fails business logic
-- (issue 12, item 7): a handler that creates series without end past the
-- registry's cap keeps acking (one warning, a counter); label values and
-- help text with quotes, backslashes, newlines, NUL, control bytes and
-- invalid UTF-8 still give a /metrics that promtool accepts; a newline in
-- a log message cannot forge a log line. Also swit.on/swit.publish refuse
-- NUL in topic names.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"
local tcp = require "rawtcp"

local yaml = [[
server:
  name: tele
  admin: {listen: "127.0.0.1:0"}
  http: {listen: "127.0.0.1:0"}
messaging:
  subscribers:
    default: {max_attempts: 1}
  resources:
    subscribers: {worker_pool_size: 1}
lua:
  scripts: [h.lua]
]]

local handler = [[
local swit = require "swit"
local many = swit.metrics.counter("tele_many_total",
                                  "Help with \\ and \n a newline\0 and \1", { "id" })
local odd = swit.metrics.gauge("tele_odd", "odd labels", { "v" })
local done = 0
swit.on("work", function(msg)
  for i = 1, 3000 do many:labels(msg:payload() .. i):inc() end
  odd:labels('q"b\\s\nn\0z\r\1\127\255\192\128end'):set(1)
  done = done + 1
  swit.log("info", "handled %d\nFORGED error line", done)
  local ok, err = swit.publish("a\0b", "x")
  swit.log("info", "nul topic: %s %s", tostring(ok), tostring(err))
end)
]]

local start = t.start_servers

local metric = t.metric

describe("telemetry under hostile use #hostile", function()
  it("drops series past the cap without failing handlers, and /metrics parses", function()
    local p = start({ ["swit.yaml"] = yaml, ["h.lua"] = handler })
    for i = 1, 5 do
      local code = tcp.request(p.ing, ("POST /v1/publish/work HTTP/1.1\r\n" ..
        "Content-Length: 2\r\n\r\nm%d"):format(i))
      assert.equal(202, code)
    end
    -- 15000 series registrations, each a scan of the registry under its
    -- lock: ~1 s here, up to a minute under ThreadSanitizer (it intercepts
    -- strlen and memcmp), hence the longer wait in that build only
    t.wait_for(p, "err", "handled 5", t.tsan and 180 or 10)
    local text
    for _ = 1, 500 do                 -- until the 5th message is settled
      _, text = tcp.request(p.adm, "GET /metrics HTTP/1.1\r\n\r\n")
      if metric(text, 'swit_messages_consumed_total{broker="memory",topic="work",group="tele"}') == 5 then
        break
      end
      os.execute("sleep 0.01")
    end
    assert.is_true(metric(text, "swit_metric_series_dropped_total") > 0)
    assert.equal(5, metric(text, 'swit_messages_consumed_total{broker="memory",topic="work",group="tele"}'))
    assert.equal(0, metric(text, 'swit_consume_errors_total{broker="memory",topic="work",group="tele"}'))
    t.promtool_check(text, p.dir)
    local _, err = t.stop(p)
    assert.equal(1, t.count(err, "series cap"))
    -- one event per line: the newline in the message is escaped
    assert.equal(0, t.count(err, "^FORGED"))
    assert.equal(5, t.count(err, "handled %d\\nFORGED error line"))
    assert.equal(5, t.count(err, "nul topic: nil swit.publish: the topic has a NUL"))
  end)

  it("refuses a NUL in a swit.on topic at load", function()
    local dir = t.dir({ ["swit.yaml"] = yaml, ["h.lua"] = [[
local swit = require "swit"
swit.on("wo\0rk", function() end)
]] })
    local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
    os.execute("rm -rf " .. t.quote(dir))
    assert.are_not.equal(0, code)
    assert.matches("h.lua:2:.*NUL", err)
  end)
end)
