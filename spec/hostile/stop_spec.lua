-- spec/hostile/stop_spec.lua - accepted means kept (issue 12, item 3): a
-- graceful stop first closes intake (the ingress answers 503, timers stop),
-- then handles what the host already accepted - a 202 from the ingress, a
-- true from swit.publish on the memory broker - or, past the deadline,
-- counts what it could not handle in the log. Nothing is handled twice and
-- nothing vanishes without a count. The flood is bounded in count; no
-- timing is asserted.
package.path = "spec/support/?.lua;" .. package.path
local t = require "swit_run"

local function yaml(shutdown, extra)
  return ([[
server:
  name: stop
  admin: {listen: "off"}
  http: {listen: "127.0.0.1:0"}
  shutdown_timeout: %s
messaging:
  resources:
    subscribers: {worker_pool_size: 2}
lua:
  scripts: [h.lua]
%s]]):format(shutdown, extra or "")
end

-- one write per line: lines of concurrent workers never mix
local recorder = [[
local swit = require "swit"
swit.on("in", function(msg) io.write("got " .. msg:payload() .. "\n") end)
]]

-- Each `got N` line of out, counted per N.
local function handled(out)
  local seen, dup = {}, 0
  for id in (out or ""):gmatch("got (%S+)\n") do
    if seen[id] then dup = dup + 1 end
    seen[id] = true
  end
  return seen, dup
end

-- 3000 messages accepted by the memory broker before any intake closes
local publisher = [[
local swit = require "swit"
swit.on_start(function()
  for i = 1, 3000 do assert(swit.publish("in", tostring(i))) end
  print("published")
end)
]]

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

describe("a graceful stop #hostile", function()
  it("handles every message the ingress answered 202 for, once, when " ..
     "stopped mid-flood", function()
    local p = t.start({ ["swit.yaml"] = yaml("10s"), ["h.lua"] = recorder })
    local err = t.wait_for(p, "err", "http ingress listening on http://[%d.:]+")
    local url = err:match("http ingress listening on (http://[%d.:]+)")
    -- 4 clients, 300 POSTs each at most; each line: "<id> <status>"
    local flood = t.dir({ ["flood.sh"] = [[
i=0
while [ $i -lt 300 ]; do
  s=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST \
      --data-binary "$2-$i" "$1/v1/publish/in")
  echo "$2-$i $s" >>"$2.res"
  i=$((i+1))
done
: >"$2.done"
]] })
    for _, c in ipairs({ "a", "b", "c", "d" }) do
      os.execute(("cd %s && sh flood.sh %s %s >/dev/null 2>&1 &")
                 :format(t.quote(flood), url, c))
    end
    t.wait_for(p, "out", "got a%-20", 30)   -- mid-flood
    local out, stderr = t.stop(p)
    -- every client saw the end: its loop finished (refused connections
    -- answer at once), so no answer is still on its way to a .res file
    for _, c in ipairs({ "a", "b", "c", "d" }) do
      local done = false
      for _ = 1, 6000 do                     -- bounded: 60 s
        done = io.open(flood .. "/" .. c .. ".done") ~= nil
        if done then break end
        os.execute("sleep 0.01")
      end
      assert.is_true(done, "client " .. c .. " did not finish its 300 requests")
    end
    local accepted, statuses = {}, {}
    for _, c in ipairs({ "a", "b", "c", "d" }) do
      local f = io.open(flood .. "/" .. c .. ".res")
      for line in f:lines() do
        local id, code = line:match("^(%S+) (%d+)$")
        statuses[code] = (statuses[code] or 0) + 1
        if code == "202" then accepted[id] = true end
      end
      f:close()
    end
    os.execute("rm -rf " .. t.quote(flood))
    local seen, dup = handled(out)
    assert.equal(0, dup, "handled twice")
    local missing = {}
    for id in pairs(accepted) do
      if not seen[id] then missing[#missing + 1] = id end
    end
    assert.same({}, missing, "202 but never handled")
    for id in pairs(seen) do                 -- nothing else was handled
      assert.truthy(id:match("^[abcd]%-%d+$"), id)
    end
    assert.is_true(count(accepted) >= 20, "the flood was accepted at first")
    assert.matches("stopped", stderr)
  end)

  it("handles what swit.publish accepted on the memory broker before it " ..
     "stops", function()
    local p = t.start({ ["swit.yaml"] = yaml("20s"), ["h.lua"] = recorder .. publisher })
    t.wait_for(p, "out", "published", 20)
    local out, err = t.stop(p)
    local seen, dup = handled(out)
    assert.equal(0, dup)
    assert.equal(3000, count(seen), err)
    assert.not_matches("never handled", err)
  end)

  it("counts in the log what it could not handle by the deadline", function()
    -- a slow handler, and far more messages than fit in the deadline
    local p = t.start({ ["swit.yaml"] = yaml("500ms"), ["h.lua"] = [[
local swit = require "swit"
swit.on("in", function(msg)
  local x = 0
  for i = 1, 2000000 do x = x + i end
  io.write("got " .. msg:payload() .. "\n")
end)
]] .. publisher })
    t.wait_for(p, "out", "published", 20)
    local out, err = t.stop(p)
    local seen, dup = handled(out)
    assert.equal(0, dup)
    local lost = tonumber(err:match("memory broker: (%d+) accepted " ..
                                    "message%(s%) were never handled"))
    assert.is_not_nil(lost, err)
    assert.equal(3000, count(seen) + lost)
    assert.matches("stopped", err)
  end)

  it("handles every message its timers published before the stop", function()
    local p = t.start({ ["swit.yaml"] = yaml("2s"), ["h.lua"] = recorder ..
      [[
local swit = require "swit"
local n = 0
swit.every(5, function() n = n + 1 swit.publish("in", "tick" .. n) end)
swit.on_start(function() print("up") end)
]] })
    t.wait_for(p, "out", "got tick3", 20)
    local out, err = t.stop(p)
    local seen, dup = handled(out)
    assert.equal(0, dup)
    assert.not_matches("never handled", err)
    -- every tick published was handled: the ticks are 1..N without a gap
    local n = count(seen)
    for i = 1, n do assert.is_true(seen["tick" .. i], "tick" .. i) end
  end)
end)
