-- spec/conformance/brokers/nats.lua - how the conformance suite runs
-- against NATS in core mode (at-most-once; no redelivery needed by the
-- suite). The server is the nats fixture (brokers/nats/broker.cmake),
-- its URL in the file `url` of the directory SWIT_TEST_NATS_RUN.
local url = require("swit_run").fixture("SWIT_TEST_NATS_RUN", "url")
return {
  broker = ("  broker:\n    type: nats\n    endpoints: [%q]\n"):format(url),
  idle = "300ms",
  -- core NATS delivers at most once: a stop counts what it drops
  lost = { "(%d+) message%(s%) dropped by the client as a slow consumer",
           "(%d+) given back or arriving at shutdown are dropped",
           "(%d+) message%(s%) given back after it closed were dropped" },
}
