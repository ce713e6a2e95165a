-- spec/hostile/options_spec.lua - Lua options validated like their config
-- twins (one bound for every entry point): swit.on's max_attempts, topic,
-- group and dead_letter, swit.every's period, and the listen addresses
-- `swit check` refuses; each refused at load with file:line, exit 2.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local function check(yaml, script)
  local dir = t.dir({ ["swit.yaml"] = yaml, ["h.lua"] = script })
  local code, _, err = t.swit({ "check", dir .. "/swit.yaml" })
  os.execute("rm -rf " .. t.quote(dir))
  return code, err
end

local function config(admin, http)
  return ([[
server: {name: spec, admin: {listen: %s}, http: {listen: %s}}
lua:
  scripts: [h.lua]
]]):format(admin or '"off"', http or '"off"')
end

local function line2(body)
  return 'local swit = require "swit"\n' .. body .. "\n"
end

describe("options validated like their config twins #hostile", function()
  it("refuses each bad swit.on / swit.every argument with file:line", function()
    for body, want in pairs({
      ['swit.on("t", {max_attempts = 0}, function() end)'] = "max_attempts must be an integer in 1%.%.1000",
      ['swit.on("t", {max_attempts = 1001}, function() end)'] = "max_attempts must be an integer in 1%.%.1000",
      ['swit.on("t", {max_attempts = 0/0}, function() end)'] = "got nan",
      ['swit.on("t", {max_attempts = 1.5}, function() end)'] = "max_attempts must be an integer",
      ['swit.on("t", {max_attempts = "3"}, function() end)'] = "option 'max_attempts' must be a number",
      ['swit.on("t", {dead_letter = "t"}, function() end)'] = "dead_letter 't' is the handler's own topic",
      ['swit.on("t", {dead_letter = ""}, function() end)'] = "option 'dead_letter' must be 1%.%.249 bytes",
      ['swit.on("t", {dead_letter = ("d"):rep(250)}, function() end)'] = "option 'dead_letter' must be 1%.%.249 bytes",
      ['swit.on("t", {group = "a\\0b"}, function() end)'] = "option 'group' must be 1%.%.249 bytes",
      ['swit.on(("x"):rep(250), function() end)'] = "topic must be at most 249 bytes",
      ['swit.on("a\\0b", function() end)'] = "the topic has a NUL or control character",
      ['swit.on("a b", function() end)'] = "topic must be at most 249 bytes without spaces",
      ['swit.every(0/0, function() end)'] = "duration_ms must be a number in 1%.%.86400000 %(a day%), got nan",
      ['swit.every(math.huge, function() end)'] = "got inf",
      ['swit.every(-math.huge, function() end)'] = "got %-inf",
      ['swit.every(-5, function() end)'] = "got %-5",
      ['swit.every(0, function() end)'] = "got 0",
      ['swit.every(86400001, function() end)'] = "got 86400001",
    }) do
      local code, err = check(config(), line2(body))
      assert.equal(2, code, body)
      assert.matches("h%.lua:2: ", err, 1, false, body)
      assert.matches(want, err, 1, false, body)
    end
  end)

  it("accepts the bounds themselves", function()
    local code, err = check(config(), line2(
      'swit.on("t", {max_attempts = 1000, dead_letter = ("d"):rep(249)}, function() end)\n' ..
      'swit.on(("x"):rep(249), {max_attempts = 1}, function() end)\n' ..
      'swit.every(1, function() end)\nswit.every(86400000, function() end)'))
    assert.equal(0, code, err)
  end)

  it("swit check refuses listen addresses that cannot work, with file:line", function()
    for _, v in ipairs({ '"127.0.0.1:65536"', '"127.0.0.1:99999999999999999999"',
                         '"127.0.0.1:-1"', '"127.0.0.1:+80"', '"127.0.0.1: 80"',
                         '"127.0.0.1:"', '"localhost"', '":8080"', '"127.0.0.1:80x"',
                         '"[]:80"', '"127.0.0.1:8\\u00000"' }) do
      for _, which in ipairs({ "admin", "http" }) do
        local code, err = check(which == "admin" and config(v) or config(nil, v),
                                line2('swit.on("t", function() end)'))
        assert.equal(2, code, which .. " " .. v)
        assert.matches("swit%.yaml:1:%d+: server%." .. which .. "%.listen: ",
                       err, 1, false, v)
        assert.matches(v:find("u0000") and "a NUL byte in the value" or
                       "expected host:port with a port in 0%.%.65535",
                       err, 1, false, v)
      end
    end
    for _, v in ipairs({ '"127.0.0.1:0"', '"[::1]:65535"', '"off"' }) do
      local code, err = check(config(v, v), line2('swit.on("t", function() end)'))
      assert.equal(0, code, err)
    end
  end)
end)
