-- spec/conformance/brokers/memory.lua - how the conformance suite runs
-- against the embedded memory broker.
return {
  -- the messaging.broker section of the config (YAML, indented 2)
  broker = "  broker: {type: memory}\n",
  -- how long the host must see nothing before --exit-when-idle exits
  idle = "200ms",
  -- a stop does not give messages back: it counts what it never handled
  lost = { "memory broker: (%d+) accepted message%(s%) were never handled" },
  -- no other process can reach it (swit publish / tail refuse it)
  in_process = true,
}
