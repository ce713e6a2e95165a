-- spec/conformance/brokers/nats_js.lua - the conformance suite against
-- NATS JetStream: durable pull consumers, explicit acks, streams created
-- by swit for each subject (in memory, so repeated runs leave no files).
-- Registered as conformance.nats_js by brokers/nats/broker.cmake.
local url = require("swit_run").fixture("SWIT_TEST_NATS_RUN", "url")
return {
  broker = ("  broker:\n    type: nats\n    endpoints: [%q]\n" ..
            "    config: {jetstream: true, storage: memory}\n"):format(url),
  idle = "500ms",
  -- what a stop gives back is delivered again to the group
  redelivers = true,
  -- a new group can start at what was published before it came
  history = true,
  -- a dead letter waits in the broker for `swit dlq replay`
  parks = true,
}
