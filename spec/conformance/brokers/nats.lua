-- spec/conformance/brokers/nats.lua - how the conformance suite runs
-- against NATS in core mode (at-most-once; no redelivery needed by the
-- suite). The server is the nats fixture (brokers/nats/broker.cmake),
-- its URL in SWIT_TEST_NATS_URL.
local url = os.getenv("SWIT_TEST_NATS_URL") or "nats://127.0.0.1:14222"
return {
  broker = ("  broker:\n    type: nats\n    endpoints: [%q]\n"):format(url),
  idle = "300ms",
  -- core NATS delivers at most once: a stop counts what it drops
  lost = { "(%d+) message%(s%) dropped by the client as a slow consumer",
           "(%d+) given back or arriving at shutdown are dropped" },
}
