-- spec/conformance/brokers/kafka.lua - how the conformance suite runs
-- against Kafka: librdkafka's mock cluster started by the kafka.mock.start
-- fixture (swit-kafka-mock), whose bootstrap string it writes to the file
-- named by SWIT_TEST_KAFKA_BOOTSTRAP_FILE (the mock binds random ports).
--
-- The mock completes a rebalance of a non-empty group only after
-- session.timeout.ms - 1 s (a real broker does it once every member has
-- rejoined), and a script subscribing two topics in one group rebalances
-- once per topic: a short session timeout keeps the suite fast.
local path = assert(os.getenv("SWIT_TEST_KAFKA_BOOTSTRAP_FILE"),
                    "SWIT_TEST_KAFKA_BOOTSTRAP_FILE is not set (run through ctest)")
local f = assert(io.open(path, "r"), "no bootstrap file " .. path ..
                 " (is the kafka.mock.start fixture running?)")
local bootstrap = assert(f:read("*l"), "empty bootstrap file " .. path)
f:close()

return {
  -- the messaging.broker section of the config (YAML, indented 2)
  broker = ([[
  broker:
    type: kafka
    endpoints: [%q]
    config:
      session.timeout.ms: 3000
      heartbeat.interval.ms: 500
]]):format(bootstrap),
  -- the mock's fetch round trips and the first group join (~3 s) happen
  -- before on_start; this covers the gaps between messages after it
  idle = "2s",
  -- what a stop gives back is delivered again to the group
  redelivers = true,
  -- a new group can start at what was published before it came
  history = true,
  -- a dead letter waits in the broker for `swit dlq replay`
  parks = true,
}
