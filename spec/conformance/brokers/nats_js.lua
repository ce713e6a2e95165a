-- spec/conformance/brokers/nats_js.lua - the conformance suite against
-- NATS JetStream: durable pull consumers, explicit acks, streams created
-- by swit for each subject (in memory, so repeated runs leave no files).
-- Registered as conformance.nats_js by brokers/nats/broker.cmake.
local url = os.getenv("SWIT_TEST_NATS_URL") or "nats://127.0.0.1:14222"
return {
  broker = ("  broker:\n    type: nats\n    endpoints: [%q]\n" ..
            "    config: {jetstream: true, storage: memory}\n"):format(url),
  idle = "500ms",
  -- what a stop gives back is delivered again to the group
  redelivers = true,
}
