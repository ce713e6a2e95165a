-- thumbnails.lua - RabbitMQ as a work queue: "resizer" workers compete
-- for jobs on the group queue resizer.jobs; a job that keeps failing is
-- dead-lettered to jobs.dlq, where RabbitMQ keeps it in the parking
-- queue resizer.jobs.dlq (for `swit dlq replay`, or "ops" below, which
-- reads the same topic in a group of its own). AMQP properties are
-- headers: amqp-correlation-id travels with the job.
local swit = require "swit"

swit.on("jobs", { group = "resizer" }, function(msg)
  local job = msg:json()
  if job.width > 4096 then error("image too large: " .. job.width .. " px") end
  print(("resizer: %s to %dpx (correlation %s)")
        :format(job.image, job.width, msg:header("amqp-correlation-id")))
end)

swit.on("jobs.dlq", { group = "ops" }, function(msg)
  print(("ops: parked %s after %s attempt(s): %s")
        :format(msg:json().image, msg:header("x-swit-attempts"),
                msg:header("x-swit-error"):match("image too large: %d+ px")))
end)

swit.on_start(function()
  local jobs = { { image = "cat.png", width = 256 }, { image = "map.tif", width = 9000 },
                 { image = "dog.jpg", width = 512 } }
  for i, j in ipairs(jobs) do
    assert(swit.publish("jobs", j, { headers = { ["amqp-correlation-id"] = "job-" .. i } }))
  end
end)
