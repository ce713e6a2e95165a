---@meta swit
-- editor/luals/swit/init.lua - LuaLS (lua-language-server) definitions of
-- the `swit` module (lua/swit/init.lua, metrics.lua and breaker.lua), so
-- editors complete and type-check handler code. Never run by swit:
-- installed as <datadir>/swit/luals/ for `workspace.library`
-- (docs/editor.md). Owned with the module: the test tools.annotations
-- (spec/tools/annotations_spec.lua) loads the real module in the swit
-- binary and fails when a function, field, method, parameter or option
-- is here and not there, or there and not here.

---The Lua API of swit: `local swit = require "swit"` (docs/lua-api.md).
---@class swit
---@field version string The host's version, e.g. "0.1.0".
---@field ABI integer The FFI ABI number the Lua modules were built for.
---@field null lightuserdata JSON `null` (the same value as `cjson.null`).
---@field metrics swit.metrics Counters, gauges and histograms on /metrics.
---@field export? fun(): any Yours to define: the state handed to the next code generation at a reload (booleans, numbers, strings, tables of these).
---@field import? fun(state: any) Yours to define: receives what the previous generation's `swit.export()` returned.
local swit = {}

---A handler's result: ack (nil/true), or a `swit.Result`.
---@alias swit.HandlerResult swit.Result|true|nil

---A message handler: runs once per delivery.
---@alias swit.Handler fun(msg: swit.Msg): swit.HandlerResult

---Options of `swit.on`.
---@class swit.OnOpts
---@field group? string The consumer group (default `server.name`); every group gets every message.
---@field ordering? "key"|"partition"|"none" How messages are spread over workers (default "key").
---@field max_attempts? integer Handler attempts before dead-lettering (>= 1).
---@field dead_letter? string The dead-letter topic (default "<topic>.dlq").
---@field exactly_once? boolean Consume-transform-produce in broker transactions (Kafka only).
---@field jetstream? boolean Passed to the broker adapter (NATS: JetStream).

---Options of `swit.publish`.
---@class swit.PublishOpts
---@field key? string The message key (decides the worker for ordering = "key").
---@field headers? table<string, string> Header names to values.

---What a handler returns to retry, reject or fail a message.
---@class swit.Result
---@field code integer The result code (SWIT_RETRY, SWIT_REJECT or SWIT_FATAL).
---@field reason string The reason, in logs and the `x-swit-error` header.

---A message, valid during its handler call only: keep copies
---(`msg:payload()`, `msg:headers()`), never the msg.
---@class swit.Msg
local Msg = {}

---The topic the message came from.
---@return string
function Msg:topic() end

---The message key, or nil when it has none (an empty key is no key).
---@return string?
function Msg:key() end

---The payload, a string of bytes (binary-safe).
---@return string
function Msg:payload() end

---1 on the first delivery, 2 on the first retry, ...
---@return integer
function Msg:attempt() end

---The value of header `name` (ASCII case-insensitive), or nil.
---@param name string
---@return string?
function Msg:header(name) end

---A new table of all headers, name -> value.
---@return table<string, string>
function Msg:headers() end

---The message's W3C trace id (32 lowercase hex characters), or nil.
---@return string?
function Msg:trace_id() end

---Adds or replaces a header for the rest of this handler call.
---@param name string
---@param value string
function Msg:set_header(name, value) end

---The payload decoded as JSON; raises on invalid JSON (a retryable failure).
---@return any
function Msg:json() end

---Registers `fn(msg)` as the handler of `topic` (while the scripts load).
---@param topic string An exact topic name.
---@param opts? swit.OnOpts
---@param fn swit.Handler
---@overload fun(topic: string, fn: swit.Handler)
function swit.on(topic, opts, fn) end

---Registers middleware `fn(msg, next)` around every handler; return
---`next(msg)` to go on.
---@param fn fun(msg: swit.Msg, next: swit.Handler): swit.HandlerResult
function swit.use(fn) end

---Registers `fn()` to run once after the host started, on worker 0.
---@param fn fun()
function swit.on_start(fn) end

---Registers a self-check run each time code is validated (start, reload,
---`swit check`); an error refuses the code.
---@param fn fun()
function swit.on_load(fn) end

---Registers a timer: `fn()` runs on worker 0 about every `ms` milliseconds.
---@param ms number >= 1
---@param fn fun()
function swit.every(ms, fn) end

---Publishes one message; never blocks, never raises for bad arguments.
---@param topic string
---@param payload string|table A string as is, a table encoded as JSON.
---@param opts? swit.PublishOpts
---@return true|nil ok
---@return string? err
function swit.publish(topic, payload, opts) end

---A retryable failure (retried with backoff, then dead-lettered).
---@param err? any The reason (default "retry requested").
---@return swit.Result
function swit.retry(err) end

---Dead-letters the message at once.
---@param reason? any The reason (default "rejected").
---@return swit.Result
function swit.reject(reason) end

---Dead-letters the message at once and logs at error level.
---@param reason? any The reason (default "fatal").
---@return swit.Result
function swit.fatal(reason) end

---Writes one line to the host's log (stderr).
---@param level "debug"|"info"|"warn"|"error"
---@param fmt any A string.format format when arguments follow, else any value.
---@param ... any
function swit.log(level, fmt, ...) end

---The worker running the code: 0 to worker_pool_size - 1.
---@return integer
function swit.worker_id() end

---The code generation: 1 at start, +1 per reload (0 while validating).
---@return integer
function swit.generation() end

---Options of `swit.breaker` (docs/resilience.md).
---@class swit.BreakerOpts
---@field failure_threshold? integer Failures in a row that open it (default 5; 0: only the rate).
---@field success_threshold? integer Successful trial calls that close it again (default 2).
---@field recovery_timeout? string|integer How long it stays open before a trial ("30s", or ms; default 30s).
---@field failure_rate? number 0..1: the failure share over `window` that opens it (default 0: off).
---@field min_calls? integer Calls in the window before the rate counts (default 10).
---@field window? string|integer The window of the rate ("60s", or ms; default 60s).

---A circuit breaker for one of a handler's dependencies, shared by every
---worker of the host. Record the outcome of every call it allowed.
---@class swit.Breaker
local Breaker = {}

---Whether a call may go ahead now (false while open).
---@return boolean
function Breaker:allow() end

---The allowed call succeeded.
function Breaker:success() end

---The allowed call failed.
function Breaker:failure() end

---A critical failure: open it at once.
function Breaker:trip() end

---@return "closed"|"open"|"half_open"
function Breaker:state() end

---The host's breaker named `name` (1..128 printable bytes), made with
---`opts` on first use; the same name with other options is an error.
---@param name string
---@param opts? swit.BreakerOpts
---@return swit.Breaker
function swit.breaker(name, opts) end

---`swit.metrics`: metrics that scripts define (docs/operations.md).
---@class swit.metrics
local metrics = {}
swit.metrics = metrics

---A metric family; without label names it is its own series.
---@class swit.Metric
local Metric = {}

---The series of these label values (in label-name order).
---@param ... string|number
---@return swit.Series
function Metric:labels(...) end

---Counter or gauge without labels: adds `v` (default 1).
---@param v? number
function Metric:inc(v) end

---Gauge without labels: subtracts `v` (default 1).
---@param v? number
function Metric:dec(v) end

---Gauge without labels: sets the value.
---@param v number
function Metric:set(v) end

---Histogram without labels: records one observation.
---@param v number
function Metric:observe(v) end

---One series of a metric (one set of label values).
---@class swit.Series
local Series = {}

---Counter (v >= 0) or gauge: adds `v` (default 1).
---@param v? number
function Series:inc(v) end

---Gauge: subtracts `v` (default 1).
---@param v? number
function Series:dec(v) end

---Gauge: sets the value.
---@param v number
function Series:set(v) end

---Histogram: records one observation.
---@param v number
function Series:observe(v) end

---A counter (per worker, summed at scrape time).
---@param name string [a-zA-Z_:][a-zA-Z0-9_:]*, not starting with swit_
---@param help? string
---@param labelnames? string[]
---@return swit.Metric
function metrics.counter(name, help, labelnames) end

---A gauge (one value shared by every worker).
---@param name string
---@param help? string
---@param labelnames? string[]
---@return swit.Metric
function metrics.gauge(name, help, labelnames) end

---A histogram (1 to 16 ascending bucket bounds, default 0.005 ... 10).
---@param name string
---@param help? string
---@param labelnames? string[]
---@param buckets? number[]
---@return swit.Metric
function metrics.histogram(name, help, labelnames, buckets) end

return swit
