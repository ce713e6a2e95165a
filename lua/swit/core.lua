-- lua/swit/core.lua - internal: the host's FFI surface in one Lua state.
--
-- Not for scripts. The runtime (host/runtime/lua_state.c) runs this chunk
-- once per state, before the swit module and any script, with the cdef
-- text (bindings/swit_ffi.h plus the constant lists of swit.h) and a
-- lightuserdata pointing at the host's const swit_ffi_api table, and
-- keeps the result as package.loaded["swit.core"], where lua/swit/init.lua
-- and metrics.lua find it.
--
-- The pointer is cast here, once: the JIT does not compile a cast of a
-- lightuserdata, but it compiles calls through the typed table pointer
-- (`api.publish(...)`), so the hot code never casts. No function is looked
-- up through ffi.C (the host exports none); ffi.C only names the cdef's
-- enum constants (SWIT_E_*, SWIT_ACK.., SWIT_LOG_*), which need no symbol.
local ffi = require "ffi"
local build = require "swit.build"      -- stamped by the build

local cdef, api_ud = ...
if type(cdef) ~= "string" or type(api_ud) ~= "userdata" then
  error("swit.core: only the host runtime loads this module", 2)
end
ffi.cdef(cdef)
local api = ffi.cast("const swit_ffi_api *", api_ud)
if api.abi ~= build.abi then
  error(("swit: the Lua modules expect FFI ABI %d, the host provides %d")
        :format(build.abi, api.abi), 0)
end

return {
  api = api,                       -- const swit_ffi_api *
  W = api.worker_current(),        -- this state's swit_ffi_worker *
  C = ffi.C,                       -- the cdef's constants
  cdef = cdef,
  version = build.version,
  abi = build.abi,
}
