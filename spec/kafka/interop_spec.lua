-- spec/kafka/interop_spec.lua - swit against an independent Kafka client
-- (kcat) on the shared mock cluster: kcat produces keyed messages, a swit
-- script consumes and republishes them transformed, kcat reads them back;
-- binary keys and payloads pass through byte for byte.
local k = require "spec.kafka.kafka_support"
local t = k.t

describe("kafka #kafka interop with kcat", function()
  it("consumes 10,000 keyed messages and republishes them in key order", function()
    local bs, P = k.bootstrap(), k.prefix("i")
    local lines, keys, per_key = {}, 100, 100
    for i = 1, keys * per_key do
      local key = "key" .. (i % keys)
      lines[#lines + 1] = ("%s\t%d"):format(key, i)
    end
    local code, err = k.produce(bs, P .. "in", lines)
    assert.equal(0, code, err)

    local out
    code, out, err = k.run(k.config(bs), ([[
local swit = require "swit"
swit.on(%q, { group = %q }, function(msg)
  assert(swit.publish(%q, "T" .. msg:payload(), { key = msg:key() }))
end)
]]):format(P .. "in", P .. "g", P .. "out"))
    assert.equal(0, code, err)
    assert.equal("", out)

    code, out, err = k.consume(bs, P .. "out")
    assert.equal(0, code, err)
    local last, n, seen_keys = {}, 0, 0
    for key, v in out:gmatch("(%S+)\tT(%d+)\n") do
      v = tonumber(v)
      if not last[key] then seen_keys = seen_keys + 1 end
      assert.is_true(v > (last[key] or 0), "order broken for " .. key)
      assert.equal("key" .. (v % keys), key)
      last[key] = v
      n = n + 1
    end
    assert.equal(keys * per_key, n)
    assert.equal(keys, seen_keys)
  end)

  it("passes non-UTF-8 keys and binary payloads through byte for byte", function()
    local bs, P = k.bootstrap(), k.prefix("b")
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local blob = table.concat(bytes):rep(3)
    local key = "\255\254\128k\0x"
    local dir = t.dir({ blob = blob, key = key })
    -- kcat sends a whole file as one message (-k cannot carry a NUL, so
    -- the key comes from a swit publish of the same bytes below)
    local code, _, err = t.sh(("kcat -P -b %s -t %s -k %s %s"):format(
      t.quote(bs), t.quote(P .. "in"), t.quote("\255\254\128"), t.quote(dir .. "/blob")))
    assert.equal(0, code, err)

    local out
    code, out, err = k.run(k.config(bs), ([[
local swit = require "swit"
local function hex(s) return (s:gsub(".", function(c) return ("%%02x"):format(c:byte()) end)) end
swit.on(%q, { group = %q }, function(msg)
  print("in " .. hex(msg:key()) .. " " .. #msg:payload())
  assert(swit.publish(%q, msg:payload(), { key = %q }))
end)
]]):format(P .. "in", P .. "g", P .. "out", key))
    assert.equal(0, code, err)
    assert.equal("in fffe80 " .. #blob .. "\n", out)

    code, out, err = k.consume(bs, P .. "out", "%s", 1)
    assert.equal(0, code, err)
    assert.is_true(out == blob, "payload changed on the way")
    code, out, err = k.consume(bs, P .. "out", "%k", 1)
    assert.equal(0, code, err)
    assert.is_true(out == key, "key changed on the way")
    os.execute("rm -rf " .. t.quote(dir))
  end)
end)
