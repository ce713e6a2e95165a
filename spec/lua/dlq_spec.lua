-- spec/lua/dlq_spec.lua - the dead-letter options' hostile input
-- (docs/resilience.md, "Dead letters"): messaging.subscribers.<name>.
-- dead_letter values refused by `swit check` with file:line and the key,
-- and `swit dlq replay` arguments refused with exit 2 before any broker
-- is reached. What the options and the replay do on each broker is the
-- conformance suite's (spec/conformance: two cases).
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

describe("dead letters", function()
  it("refuses hostile dead_letter values with file:line and the key", function()
    local cases = {
      { "dead_letter: {ttl: -1s}", "dead_letter.ttl: expected a duration" },
      { "dead_letter: {ttl: 9000h}", "dead_letter.ttl: expected a duration in 0ms..8760h" },
      { "dead_letter: {ttl: soon}", "dead_letter.ttl: expected a duration" },
      { "dead_letter: {ttl: [1s]}", "dead_letter.ttl: expected a scalar" },
      { "dead_letter: {include_metadata: maybe}", "dead_letter.include_metadata: expected a boolean" },
      { "dead_letter: {include_metadata: \"\"}", "dead_letter.include_metadata: expected a boolean" },
      { "dead_letter: {topic: x}", "dead_letter.topic: unknown key" },
      { "dead_letter: {ttl: 1s, ttl: 2s}", "dead_letter.ttl: duplicate key" },
      { "dead_letter: true", "dead_letter: expected a mapping" },
    }
    t.refuses_subscriber_values(cases)
  end)

  it("refuses the ttl at start on a broker that cannot expire a message", function()
    local code, _, err = t.run_scripts([[
messaging:
  broker: {type: memory}
  subscribers:
    default: {dead_letter: {ttl: 1m}}
lua: {scripts: [s.lua]}
]], { ["s.lua"] = "require('swit').on('t', function() end)" }, "200ms")
    assert.equal(2, code, err)
    assert.matches("subscribe 't' %(group '[^']+'%): messaging%.subscribers%.<group or " ..
                   "default>%.dead_letter%.ttl: broker 'memory' cannot expire single " ..
                   "messages", err)
  end)

  it("refuses bad swit dlq replay arguments before reaching a broker", function()
    local dir = t.dir({ ["swit.yaml"] = "messaging:\n  broker: {type: memory}\n" ..
                                        "lua: {scripts: []}\n" })
    local cfg = dir .. "/swit.yaml"
    local cases = {
      { {}, "usage: swit dlq replay" },
      { { "replay" }, "usage: swit dlq replay" },
      { { "replay", cfg }, "usage: swit dlq replay" },
      { { "drain", cfg, "t.dlq" }, "usage: swit dlq replay" },
      { { "replay", cfg, "t.dlq", "--max" }, "usage: swit dlq replay" },
      { { "replay", cfg, "t.dlq", "--max", "0" }, "--max: expected a positive number" },
      { { "replay", cfg, "t.dlq", "--max", "-5" }, "--max: expected a positive number" },
      { { "replay", cfg, "t.dlq", "--max", "3x" }, "--max: expected a positive number" },
      { { "replay", cfg, "t.dlq", "--idle", "0" }, "--idle: expected seconds in" },
      { { "replay", cfg, "t.dlq", "--idle", "nan" }, "--idle: expected seconds in" },
      { { "replay", cfg, "t.dlq", "--timeout", "1e9" }, "--timeout: expected seconds in" },
      { { "replay", cfg, "t.dlq", "--to", "" }, "--to: topic '' is empty" },
      { { "replay", cfg, "t.dlq", "--to", "a\tb" }, "has a space or control character" },
      { { "replay", cfg, "t.dlq", "--to", ("x"):rep(250) }, "longer than 249 bytes" },
      { { "replay", cfg, "" }, "topic '' is empty" },
      { { "replay", cfg, "t.dlq", "--bogus", "1" }, "unknown option '--bogus'" },
      { { "replay", dir .. "/missing.yaml", "t.dlq" }, "missing.yaml" },
      { { "replay", cfg, "t.dlq", "--max", "1" }, "lives inside one process" },
    }
    for _, c in ipairs(cases) do
      local args = { "dlq" }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      local code, _, err = t.swit(args)
      assert.equal(2, code, table.concat(args, " ") .. ": " .. (err or ""))
      assert.matches(c[2], err, 1, true)
    end
    os.execute("rm -rf " .. t.quote(dir))
  end)
end)
