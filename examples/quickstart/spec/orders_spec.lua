-- spec/orders_spec.lua - the quickstart's handlers under `swit test`
-- (run from examples/quickstart: swit test). Each test starts the real
-- swit.yaml and orders.lua in-process on the memory broker.
local t = require "swit.test"

describe("quickstart orders", function()
  local host
  before_each(function() host = t.start() end)
  after_each(function() host:stop() end)

  it("bills each order and charges it, retrying the card timeout", function()
    -- t.start() returned once on_start's three orders were handled
    local pay = host:published("payments.requested")
    assert.equal(2, #pay)
    assert.equal("EUR", pay[1].headers.currency)
    local retried = host:retried("payments.requested")
    assert.equal(1, #retried)
    assert.equal("A-1002", retried[1].key)
    assert.matches("card network timeout", retried[1].reason)
    assert.equal(2, #host:acked("payments.requested"))  -- the retry succeeded
  end)

  it("dead-letters an order without id with the reason in its headers", function()
    local rejected = host:rejected("orders.created")
    assert.equal(1, #rejected)
    assert.equal("order without id", rejected[1].reason)
    local dlq = host:published("orders.created.dlq")
    assert.equal(1, #dlq)
    assert.equal("order without id", dlq[1].headers["x-swit-error"])
    assert.equal("orders.created", dlq[1].headers["x-swit-origin-topic"])
    assert.equal(1, #host:acked("orders.created.dlq"))  -- audit handled it
  end)

  it("prices an order published by the test, from a fixture", function()
    host:clear()                                -- forget on_start's orders
    host:publish("orders.created", t.fixture("spec/fixtures/order.json"),
                 { key = "T-1", headers = { source = "spec" } })
    host:run()
    local billed = host:acked("orders.created")
    assert.equal(1, #billed)
    assert.equal("quickstart", billed[1].headers["x-seen-by"])
    assert.equal("spec", billed[1].headers.source)
    local pay = host:published("payments.requested")
    assert.equal(1, #pay)
    assert.equal("T-1", pay[1].key)
    assert.matches('"amount":%s*25', pay[1].payload)
  end)
end)
