-- orders.lua - the quickstart's order flow.
--
-- on_start publishes a few orders. "billing" validates each one, prices
-- it and asks for payment; "payments" charges it (failing once on the
-- first try, to show a retry); an order without an id is rejected and
-- lands on the dead-letter topic, where "audit" reports it.
local swit = require "swit"

swit.use(function(msg, next)             -- Lua middleware around every handler
  msg:set_header("x-seen-by", "quickstart")
  return next(msg)
end)

swit.on("orders.created", { group = "billing" }, function(msg)
  local order = msg:json()
  if not order.id then return swit.reject("order without id") end
  local total = 0
  for _, item in ipairs(order.items) do total = total + item.qty * item.price end
  print(("billing:  order %s from %s, %d item(s), total %.2f")
        :format(order.id, order.customer, #order.items, total))
  assert(swit.publish("payments.requested", { order = order.id, amount = total },
                      { key = order.id, headers = { currency = "EUR" } }))
end)

swit.on("payments.requested", { group = "payments" }, function(msg)
  local p = msg:json()
  if p.order == "A-1002" and msg:attempt() == 1 then
    error("card network timeout")                -- retried with backoff
  end
  print(("payments: charged %.2f %s for order %s (attempt %d)")
        :format(p.amount, msg:header("currency"), p.order, msg:attempt()))
end)

swit.on("orders.created.dlq", { group = "audit" }, function(msg)
  print(("audit:    dead letter from %s: %s (%s)")
        :format(msg:header("x-swit-origin-topic"), msg:payload(),
                msg:header("x-swit-error")))
end)

swit.on_start(function()
  local orders = {
    { id = "A-1001", customer = "ada",   items = { { qty = 2, price = 9.5 } } },
    { id = "A-1002", customer = "grace", items = { { qty = 1, price = 120 }, { qty = 3, price = 2 } } },
    { customer = "nobody", items = {} },
  }
  for _, o in ipairs(orders) do
    assert(swit.publish("orders.created", o, { key = o.id }))
  end
  swit.log("info", "published %d orders", #orders)
end)
