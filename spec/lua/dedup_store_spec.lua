-- spec/lua/dedup_store_spec.lua - durable deduplication (docs/resilience.md,
-- "Deduplication"): messaging.subscribers.<name>.dedup.store: sqlite keeps
-- the handled ids in a SQLite file, so a message published again after a
-- restart is acked unhandled; `swit check` creates no file; a file that
-- cannot be a store stops the start with exit 2 and the key; bad
-- store/path combinations are refused with file:line.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local function yaml(dedup)
  return ([[
server: {name: spec}
messaging:
  broker: {type: memory}
  subscribers:
    spec: {dedup: %s}
lua: {scripts: [s.lua]}
]]):format(dedup)
end

-- publishes the ids given in SPEC_IDS (space-separated), one message each
local script = [[
local swit = require "swit"
swit.on("orders", { group = "spec" }, function(msg) print("handled " .. msg:payload()) end)
swit.on_start(function()
  for id in os.getenv("SPEC_IDS"):gmatch("%S+") do
    assert(swit.publish("orders", id, { headers = { ["x-swit-id"] = id } }))
  end
end)
]]

local function run(dir, ids)
  return t.swit({ "run", dir .. "/swit.yaml", "--exit-when-idle=200ms" },
                { SPEC_IDS = ids })
end

describe("dedup store sqlite", function()
  it("remembers handled ids across a restart", function()
    local dir = t.dir({ ["swit.yaml"] = yaml("{enabled: true, store: sqlite, path: ids.db}"),
                        ["s.lua"] = script })
    finally(function() os.execute("rm -rf " .. t.quote(dir)) end)
    local code, out, err = t.swit({ "check", dir .. "/swit.yaml" })
    assert.equal(0, code, err)
    assert.is_nil(io.open(dir .. "/ids.db"), "swit check created the store")
    code, out, err = run(dir, "a b")
    assert.equal(0, code, err)
    assert.equal(2, #t.lines(out), out)
    assert.equal(1, t.count(out, "^handled a$"), out)
    assert.equal(1, t.count(out, "^handled b$"), out)
    code, out, err = run(dir, "a b c")
    assert.equal(0, code, err)
    assert.equal("handled c\n", out)
    local f = io.open(dir .. "/ids.db", "rb")
    assert.truthy(f, "no store file")
    assert.equal("SQLite format 3\0", f:read(16))
    f:close()
  end)

  it("refuses a file that cannot be a store, at start, with the key", function()
    local dir = t.dir({ ["swit.yaml"] = "", ["s.lua"] = script,
                        ["notdb"] = ("not a database\n"):rep(200) })
    finally(function() os.execute("rm -rf " .. t.quote(dir)) end)
    os.execute("mkdir " .. t.quote(dir .. "/adir"))
    local cases = {
      { "notdb", "file is not a database" },
      { "adir", "unable to open database file" },
      { "no/such/dir/ids.db", "unable to open database file" },
    }
    for _, c in ipairs(cases) do
      local f = assert(io.open(dir .. "/swit.yaml", "w"))
      f:write(yaml(("{enabled: true, store: sqlite, path: %q}"):format(c[1])))
      f:close()
      local code, _, err = run(dir, "a")
      assert.equal(2, code, c[1] .. ": " .. err)
      assert.matches("messaging.subscribers.spec.dedup.path: cannot use '[^']*" ..
                     c[1]:gsub("%p", "%%%0") .. "' as a SQLite dedup store: " ..
                     c[2], err)
    end
  end)

  it("refuses bad store and path combinations with file:line", function()
    t.refuses_subscriber_values({
      { "dedup: {enabled: true, store: sqlite}", "dedup.store: store sqlite needs dedup.path" },
      { "dedup: {enabled: true, store: sqlite, path: \"\"}", "dedup.store: store sqlite needs dedup.path" },
      { "dedup: {enabled: true, path: ids.db}", "dedup.path: only with dedup.store: sqlite" },
      { "dedup: {enabled: true, store: redis}", "dedup.store: expected one of memory, sqlite" },
      { "dedup: {enabled: true, store: [sqlite]}", "dedup.store: expected a scalar" },
    })
  end)
end)
