-- spec/rabbitmq/consumers_spec.lua - consumers on RabbitMQ: members of a
-- group compete (two swit processes split the work, each message once),
-- what a killed process had not acked goes to its successor, backpressure
-- (pause/resume) loses nothing, a retry waiting out its backoff does not
-- hold up the queue, and AMQP wildcards route as topic exchanges do.
package.path = "spec/rabbitmq/?.lua;" .. package.path
local R = require "rmq_support"

-- Handles `topic` in `group`, printing "got <payload>" (and whether the
-- broker redelivered it), sleeping `ms` per message.
local function worker_script(topic, group, ms)
  return ([[
local swit = require "swit"
local ffi = require "ffi"
ffi.cdef "int usleep(unsigned int usec);"
io.stdout:setvbuf("line")
swit.on(%q, { group = %q }, function(msg)
  if %d > 0 then ffi.C.usleep(%d * 1000) end
  print(("got %%s %%s"):format(msg:payload(), msg:header("amqp-redelivered") or "first"))
end)
swit.on_start(function() print("ready") end)
]]):format(topic, group, ms, ms)
end

local function publish_range(topic, first, last)
  local code, _, err = R.run(R.config(R.url, { name = "publisher" }), ([[
local swit = require "swit"
swit.on_start(function()
  for i = %d, %d do assert(swit.publish(%q, tostring(i))) end
end)
]]):format(first, last, topic))
  assert.equal(0, code, err)
end

local function ready(p)
  return R.wait_for(30, function() return p:stdout():find("ready", 1, true) end)
end

local function stop_all(procs)
  for _, p in ipairs(procs) do p:stop(30) end
end

-- Whether messages 1..n were each handled by one of the two processes.
local function all_got(first, second, n)
  local s1 = R.numbers(first:stdout(), "got")
  local s2 = R.numbers(second:stdout(), "got")
  for i = 1, n do
    if not s1[i] and not s2[i] then return false end
  end
  return true
end

describe("rabbitmq consumers #rabbitmq", function()
  it("splits a group's work between two processes, each message once", function()
    local P, N = R.prefix(), 400
    local yaml = R.config(R.url, { name = "competing" })
    local a = R.start_swit(yaml, worker_script(P .. "work", "workers", 2))
    local b = R.start_swit(yaml, worker_script(P .. "work", "workers", 2))
    local ok, why = pcall(function()
      assert.truthy(ready(a) and ready(b), "consumers did not start")
      publish_range(P .. "work", 1, N)
      R.wait_for(60, function()
        local _, na = R.numbers(a:stdout(), "got")
        local _, nb = R.numbers(b:stdout(), "got")
        return na + nb >= N
      end)
    end)
    stop_all({ a, b })
    assert.is_true(ok, why)
    local sa, na = R.numbers(a:stdout(), "got")
    local sb, nb = R.numbers(b:stdout(), "got")
    assert.equal(N, na + nb, a:stderr() .. b:stderr())
    for i = 1, N do
      assert.equal(1, (sa[i] or 0) + (sb[i] or 0), "message " .. i)
    end
    assert.is_true(na > 0 and nb > 0, ("split %d/%d"):format(na, nb))
  end)

  it("redelivers what a killed process had not acked to its successor", function()
    local P, N = R.prefix(), 300
    local yaml = R.config(R.url, { name = "crash" })
    local script = worker_script(P .. "crash", "crash", 10)
    local first = R.start_swit(yaml, script)
    local second
    local ok, why = pcall(function()
      assert.truthy(ready(first), "consumer did not start")
      publish_range(P .. "crash", 1, N)
      assert.truthy(R.wait_for(30, function()
        local _, n = R.numbers(first:stdout(), "got")
        return n >= 30
      end), "nothing handled before the kill")
      first:kill("KILL")
      first:wait(10)
      second = R.start_swit(yaml, script)
      R.wait_for(60, function() return all_got(first, second, N) end)
    end)
    if second then second:stop(30) end
    assert.is_true(ok, why)
    local s1 = R.numbers(first:stdout(), "got")
    local s2 = R.numbers(second:stdout(), "got")
    for i = 1, N do
      assert.truthy(s1[i] or s2[i], "lost message " .. i)
    end
    assert.matches("got %d+ true", second:stdout()) -- redelivered ones
  end)

  it("loses nothing when backpressure pauses and resumes consuming", function()
    local P, N = R.prefix(), 1500
    local code, out, err = R.run(R.config(R.url, {
      name = "pressure", workers = 1, subscriber = ", prefetch: 600",
      resources = ", max_in_flight: 64", lua = "  batch_size: 16\n" }), ([[
local swit = require "swit"
local ffi = require "ffi"
ffi.cdef "int usleep(unsigned int usec);"
swit.on(%q, function(msg) ffi.C.usleep(200) print("got " .. msg:payload()) end)
swit.on_start(function()
  for i = 1, %d do assert(swit.publish(%q, tostring(i))) end
end)
]]):format(P .. "bp", N, P .. "bp"), "1500ms")
    assert.equal(0, code, err)
    local set, lines = R.numbers(out, "got")
    assert.equal(N, lines)
    assert.equal(0, #R.missing(set, 1, N))
  end)

  it("lets other messages pass while one waits for its retry", function()
    local P = R.prefix()
    local code, out, err = R.run(R.config(R.url, {
      name = "retry", subscriber = ", prefetch: 2",
      retry = "max_attempts: 5, retry_delay: 400ms, retry_max_delay: 400ms" }), ([[
local swit = require "swit"
local tries = 0
swit.on(%q, { ordering = "none" }, function(msg)
  if msg:payload() == "slow" then
    tries = tries + 1
    if tries < 3 then error("not yet") end
  end
  print("done " .. msg:payload())
end)
swit.on_start(function()
  assert(swit.publish(%q, "slow"))
  for i = 1, 20 do assert(swit.publish(%q, tostring(i))) end
end)
]]):format(P .. "rt", P .. "rt", P .. "rt"), "1500ms")
    assert.equal(0, code, err)
    local lines = R.t.lines(out)
    assert.equal(21, #lines)
    assert.equal("done slow", lines[#lines])
  end)

  it("gives back at shutdown what it did not handle, for the next process", function()
    local P, N = R.prefix(), 200
    local yaml = R.config(R.url, { name = "graceful", workers = 1,
                                   server = ", shutdown_timeout: 200ms" })
    local script = worker_script(P .. "gb", "graceful", 20)
    local first = R.start_swit(yaml, script)
    local second
    local ok, why = pcall(function()
      assert.truthy(ready(first), "consumer did not start")
      publish_range(P .. "gb", 1, N)
      assert.truthy(R.wait_for(30, function()
        local _, n = R.numbers(first:stdout(), "got")
        return n >= 20
      end), "nothing handled before the stop")
      assert.is_true(first:stop(30), "did not stop on SIGTERM")
      second = R.start_swit(yaml, script)
      R.wait_for(60, function() return all_got(first, second, N) end)
    end)
    if second then second:stop(30) end
    assert.is_true(ok, why)
    local s1, n1 = R.numbers(first:stdout(), "got")
    local s2 = R.numbers(second:stdout(), "got")
    assert.is_true(n1 < N, "the first process handled everything before the stop")
    for i = 1, N do
      assert.truthy(s1[i] or s2[i], "lost message " .. i)
      assert.is_falsy(s1[i] and s2[i], "handled twice: " .. i)
    end
  end)

  it("declares and consumes again when its queue is deleted under it", function()
    local P = R.prefix()
    local topic = P .. "del"
    local p = R.start_swit(R.config(R.url, { name = "deleted" }), worker_script(topic, "deleted", 0))
    local ok, why = pcall(function()
      assert.truthy(ready(p), "consumer did not start")
      publish_range(topic, 1, 1)
      assert.truthy(R.wait_for(20, function() return p:stdout():find("got 1 ") end))
      assert.truthy(R.delete_queue("deleted." .. topic))
      assert.truthy(R.wait_for(20, function()
        local _, out = R.ctl("list_queues name consumers")
        return out:find("deleted." .. topic .. "\t1", 1, true)
      end), "queue not declared again:\n" .. p:stderr())
      publish_range(topic, 2, 2)
      assert.truthy(R.wait_for(20, function() return p:stdout():find("got 2 ") end))
    end)
    p:stop(30)
    assert.is_true(ok, why)
    assert.matches("cancelled the consumer", p:stderr())
  end)

  it("carries a message larger than an AMQP frame", function()
    local P = R.prefix()
    local code, out, err = R.run(R.config(R.url, { name = "large" }), ([[
local swit = require "swit"
local big = ("0123456789abcdef"):rep(65536) -- 1 MiB, many frames
swit.on(%q, function(msg) print(msg:payload() == big and "intact" or "damaged " .. #msg:payload()) end)
swit.on_start(function() assert(swit.publish(%q, big)) end)
]]):format(P .. "large", P .. "large"))
    assert.equal(0, code, err)
    assert.equal("intact\n", out)
  end)

  it("declares quorum queues with the configured arguments", function()
    local P = R.prefix()
    local code, out, err = R.run(R.config(R.url, { name = "quorum",
      broker_config = "    config: {queue_type: quorum, message_ttl: 1m, max_length: 1000, "
                      .. "overflow: reject-publish}" }), ([[
local swit = require "swit"
swit.on(%q, function(msg) print("got " .. msg:payload()) end)
swit.on_start(function() assert(swit.publish(%q, "q")) end)
]]):format(P .. "qq", P .. "qq"))
    assert.equal(0, code, err)
    assert.equal("got q\n", out)
    local _, list = R.ctl("list_queues name type arguments")
    local line = list:match("quorum%." .. P:gsub("%.", "%%.") .. "qq\t[^\n]*")
    assert.truthy(line, list)
    assert.matches("\tquorum\t", line)
    assert.matches('"x%-message%-ttl",60000', line)
    assert.matches('"x%-max%-length",1000', line)
    assert.matches('"x%-overflow","reject%-publish"', line)
    assert.matches('"x%-dead%-letter%-routing%-key","' .. P:gsub("%.", "%%.") .. 'qq%.dlq"', line)
    local dlq = list:match("quorum%." .. P:gsub("%.", "%%.") .. "qq%.dlq\t[^\n]*")
    assert.truthy(dlq, list)
    assert.is_nil(dlq:find("x-message-ttl", 1, true)) -- dead letters stay
  end)

  it("routes with AMQP wildcards", function()
    local P = R.prefix()
    local code, out, err = R.run(R.config(R.url, { name = "wild" }), ([[
local swit = require "swit"
swit.on(%q, function(msg) print("star " .. msg:topic()) end)
swit.on(%q, function(msg) print("hash " .. msg:topic()) end)
swit.on_start(function()
  for _, t in ipairs({ "orders.created", "orders.eu.created", "orders", "other.x" }) do
    assert(swit.publish(%q .. t, "x"))
  end
end)
]]):format(P .. "orders.*", P .. "orders.#", P), "1s")
    assert.equal(0, code, err)
    assert.equal(1, R.t.count(out, "^star "))
    assert.matches("star " .. P:gsub("%.", "%%.") .. "orders%.created", out)
    assert.equal(3, R.t.count(out, "^hash "))
    assert.is_nil(out:find("other.x", 1, true))
  end)
end)
