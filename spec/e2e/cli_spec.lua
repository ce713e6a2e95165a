-- spec/e2e/cli_spec.lua - the swit binary end to end: commands, exit
-- codes, the quickstart's output, and every kind of bad input a user
-- can give it (errors must name file:line and what was expected).
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

describe("swit #e2e", function()
  describe("the command line", function()
    it("prints its version", function()
      local code, out = t.swit({ "--version" })
      assert.equal(0, code)
      assert.matches("^swit %d+%.%d+%.%d+\n$", out)
    end)

    it("prints help that names every command and option", function()
      local code, out = t.swit({ "--help" })
      assert.equal(0, code)
      for _, word in ipairs({ "run CONFIG", "check CONFIG", "--exit-when-idle",
                              "Exit codes" }) do
        assert.truthy(out:find(word, 1, true), word)
      end
    end)

    it("prints the config reference from the field tables", function()
      local code, out = t.swit({ "config-reference" })
      assert.equal(0, code)
      for _, want in ipairs({ "| `messaging.resources.subscribers.worker_pool_size` | integer",
                              "`messaging.broker.config.queue_size`",
                              "`messaging.broker.config.subscribe_timeout` | duration",
                              "`messaging.broker.config.transactional_id`",
                              "`lua.hot_reload.debounce`" }) do
        assert.truthy(out:find(want, 1, true), want)
      end
    end)

    it("exits 2 with usage on bad arguments", function()
      local code, _, err = t.swit({ "frobnicate" })
      assert.equal(2, code)
      assert.matches("usage: swit run CONFIG", err)
      code, _, err = t.swit({ "run", "x.yaml", "--exit-when-idle=soon" })
      assert.equal(2, code)
      assert.matches("expected a duration", err)
    end)
  end)

  describe("the quickstart", function()
    it("runs the order flow and exits 0 when idle", function()
      -- a copy with the admin server on a free port (9090 may be taken)
      local src = t.root .. "/examples/quickstart/"
      local yaml, n = t.read(src .. "swit.yaml"):gsub("\n  name: quickstart\n",
        "\n  name: quickstart\n  admin: {listen: \"127.0.0.1:0\"}\n")
      assert.equal(1, n)
      local code, out, err = t.run_scripts(yaml, { ["orders.lua"] = t.read(src .. "orders.lua") },
                                           "300ms")
      assert.equal(0, code, err)
      assert.matches("billing:  order A%-1001 from ada, 1 item%(s%), total 19.00", out)
      assert.matches("billing:  order A%-1002 from grace, 2 item%(s%), total 126.00", out)
      assert.matches("payments: charged 19.00 EUR for order A%-1001 %(attempt 1%)", out)
      assert.matches("payments: charged 126.00 EUR for order A%-1002 %(attempt 2%)", out)
      assert.matches("audit:    dead letter from orders.created: .*%(order without id%)", out)
      assert.matches("card network timeout", err)
    end)

    it("passes swit check", function()
      local code, out = t.swit({ "check", t.root .. "/examples/quickstart/swit.yaml" })
      assert.equal(0, code)
      assert.matches("swit.yaml: ok", out)
    end)
  end)

  describe("bad config", function()
    local function run_yaml(yaml, scripts)
      return t.run_scripts(yaml, scripts)
    end

    it("reports malformed YAML with line and column, exit 2", function()
      local code, _, err = run_yaml("messaging:\n  broker: [unclosed\n")
      assert.equal(2, code)
      assert.matches("swit.yaml:%d+:%d+: YAML syntax error", err)
    end)

    it("reports an unknown key with its place and the keys expected", function()
      local code, _, err = run_yaml("server:\n  name: x\nmessaging:\n  brokr: {}\n")
      assert.equal(2, code)
      assert.matches("swit.yaml:4:3: messaging.brokr: unknown key", err)
    end)

    it("reports a wrong type", function()
      local code, _, err = run_yaml(
        "messaging:\n  resources:\n    subscribers:\n      worker_pool_size: lots\n")
      assert.equal(2, code)
      assert.matches("swit.yaml:4:%d+: messaging.resources.subscribers.worker_pool_size: expected an integer", err)
    end)

    it("reports a broker type that does not exist", function()
      local code, _, err = run_yaml("messaging:\n  broker:\n    type: kafak\n")
      assert.equal(2, code)
      assert.matches("swit.yaml:3:11: messaging.broker.type: expected one of kafka, memory, nats, rabbitmq", err)
    end)

    it("refuses to run or check with messaging disabled", function()
      local code, _, err = run_yaml("messaging:\n  enabled: false\n")
      assert.equal(2, code)
      assert.matches("messaging.enabled is false", err)
      local dir = t.dir({ ["swit.yaml"] = "messaging:\n  enabled: false\n" })
      code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
      assert.equal(2, code)
      assert.matches("messaging.enabled is false", err)
    end)

    it("refuses a key swit does not implement, in run and in check alike", function()
      local yaml = "messaging:\n  resources:\n    connections:\n      idle_timeout: 5m\n"
      local want = "swit.yaml:4:21: messaging.resources.connections.idle_timeout: "
        .. "not supported yet %(see docs/configuration.md%)"
      local code, _, err = run_yaml(yaml)
      assert.equal(2, code)
      assert.matches(want, err)
      local dir = t.dir({ ["swit.yaml"] = yaml })
      code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
      assert.equal(2, code)
      assert.matches(want, err)
    end)

    it("reports a missing script file", function()
      local code, _, err = run_yaml("lua:\n  scripts: [nowhere.lua]\n")
      assert.equal(2, code)
      assert.matches("swit.yaml:2:%d+: lua.scripts%[0%]: cannot read", err)
      assert.matches("nowhere.lua", err)
    end)

    it("expands ${VAR} and ${VAR:-default} from the environment", function()
      local yaml = t.config({ "s.lua" }, "")
        :gsub("name: spec", "name: \"${SWIT_TEST_NAME}-${SWIT_TEST_UNSET:-dflt}\"")
      local code, out = t.run_scripts(yaml, {
        ["s.lua"] = [[
local swit = require "swit"
swit.on("x", function() end)
swit.on_start(function() print("started") end)
]] }, "100ms", { SWIT_TEST_NAME = "envname" })
      assert.equal(0, code)
      assert.matches("started", out)
      local code2, _, err = t.run_scripts("server: {name: '${SWIT_TEST_MISSING}'}\n")
      assert.equal(2, code2)
      assert.matches("SWIT_TEST_MISSING is not set", err)
    end)
  end)

  describe("bad scripts", function()
    it("reports a Lua syntax error as file:line, exit 2", function()
      local code, _, err = t.run_scripts(t.config({ "bad.lua" }), {
        ["bad.lua"] = "local swit = require 'swit'\n\nswit.on('x', function(msg)\n  return (\nend)\n",
      })
      assert.equal(2, code)
      assert.matches("bad.lua:%d+:", err)
    end)

    it("reports an error at load time as file:line, exit 2", function()
      local code, _, err = t.run_scripts(t.config({ "boom.lua" }), {
        ["boom.lua"] = "local swit = require 'swit'\nerror('boom at load')\n",
      })
      assert.equal(2, code)
      assert.matches("boom.lua:2: boom at load", err)
    end)

    it("reports an invalid registration at the user's line", function()
      local code, _, err = t.run_scripts(t.config({ "reg.lua" }), {
        ["reg.lua"] = "local swit = require 'swit'\n\nswit.on('x', { colour = 'red' }, function() end)\n",
      })
      assert.equal(2, code)
      assert.matches("reg.lua:3: swit.on: unknown option 'colour'", err)
    end)

    it("refuses two handlers for one topic and group", function()
      local code, _, err = t.run_scripts(t.config({ "dup.lua" }), {
        ["dup.lua"] = "local swit = require 'swit'\nswit.on('x', function() end)\nswit.on('x', function() end)\n",
      })
      assert.equal(2, code)
      assert.matches("dup.lua:3: swit.on: topic 'x' already has a handler", err)
    end)

    it("refuses scripts whose registrations depend on the worker", function()
      local code, _, err = t.run_scripts(t.config({ "w.lua" }), {
        ["w.lua"] = "local swit = require 'swit'\nswit.on('a', function() end)\n" ..
                    "if swit.worker_id() ~= 1 then swit.on('b', function() end) end\n",
      })
      assert.equal(2, code)
      assert.matches("registered 1 handlers where the validated code registered 2", err)
    end)

    it("swit check reports script errors with file:line", function()
      local dir = t.dir({ ["swit.yaml"] = t.config({ "bad.lua" }),
                          ["bad.lua"] = "local x = = 1\n" })
      local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
      assert.equal(2, code)
      assert.matches("bad.lua:1:", err)
    end)

    it("retries a handler's runtime error, then dead-letters it and keeps running", function()
      local code, out, err = t.run_scripts(t.config({ "h.lua" }), {
        ["h.lua"] = [[
local swit = require "swit"
swit.on("jobs", function(msg)
  if msg:payload() == "bad" then error("cannot handle " .. msg:payload()) end
  print("handled " .. msg:payload())
end)
swit.on("jobs.dlq", function(msg)
  print(("dlq %s attempts=%s origin=%s error=%s"):format(msg:payload(),
    msg:header("x-swit-attempts"), msg:header("x-swit-origin-topic"),
    msg:header("x-swit-error")))
end)
swit.on_start(function()
  for _, p in ipairs({ "one", "bad", "two" }) do assert(swit.publish("jobs", p)) end
end)
]] })
      assert.equal(0, code, err)
      assert.matches("handled one", out)
      assert.matches("handled two", out)
      assert.matches("dlq bad attempts=3 origin=jobs error=[^\n]*h.lua:3: cannot handle bad", out)
      assert.equal(2, t.count(err, "failed %(attempt %d of 3%), retrying"))
    end)

    it("dead-letters a message whose payload is not JSON when msg:json() is used", function()
      local code, out = t.run_scripts(t.config({ "j.lua" }), {
        ["j.lua"] = [[
local swit = require "swit"
swit.on("in", function(msg) print("id " .. msg:json().id) end)
swit.on("in.dlq", function(msg) print("dlq: " .. msg:header("x-swit-error")) end)
swit.on_start(function()
  swit.publish("in", '{"id": 7}')
  swit.publish("in", '{"id": ')
end)
]] })
      assert.equal(0, code)
      assert.matches("id 7", out)
      assert.matches("dlq: [^\n]*invalid JSON payload", out)
    end)

    it("exits 1 when on_start fails under --exit-when-idle", function()
      local code, _, err = t.run_scripts(t.config({ "s.lua" }), {
        ["s.lua"] = "local swit = require 'swit'\nswit.on_start(function() error('no start') end)\n",
      })
      assert.equal(1, code)
      assert.matches("s.lua:2: no start", err)
    end)
  end)

  describe("signals", function()
    it("drains and exits 0 on SIGTERM", function()
      local dir = t.dir({ ["swit.yaml"] = t.config({ "s.lua" }), ["s.lua"] = [[
local swit = require "swit"
swit.on("tick", function(msg) end)
swit.every(10, function() swit.publish("tick", "x") end)
swit.on_start(function() print("up") end)
]] })
      local code, out, err = t.sh(("timeout --preserve-status -s TERM 1 %s run %s")
                                  :format(t.quote(t.bin), t.quote(dir .. "/swit.yaml")))
      assert.equal(0, code, err)
      assert.matches("up", out)
      assert.matches("Terminated received, stopping", err)
      assert.matches("stopped", err)
    end)
  end)
end)
