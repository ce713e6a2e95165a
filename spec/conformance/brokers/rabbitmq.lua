-- spec/conformance/brokers/rabbitmq.lua - how the conformance suite runs
-- against RabbitMQ: the server the `rabbitmq` test fixture starts
-- (brokers/rabbitmq/broker.cmake), its URL in the file `url` of the
-- directory SWIT_TEST_RABBITMQ_RUN.
local url = require("swit_run").fixture("SWIT_TEST_RABBITMQ_RUN", "url")
return {
  -- the messaging.broker section of the config (YAML, indented 2)
  broker = "  broker:\n" ..
           "    type: rabbitmq\n" ..
           ("    endpoints: [%q]\n"):format(url),
  -- how long the host must see nothing before --exit-when-idle exits:
  -- longer than a confirm and a delivery round trip take on a busy machine
  idle = "700ms",
  -- what a stop gives back is delivered again to the group
  redelivers = true,
  -- a dead letter waits in the parking queue for `swit dlq replay`
  parks = true,
  -- dead_letter.ttl: the broker expires single messages (expiration)
  expires = true,
}
