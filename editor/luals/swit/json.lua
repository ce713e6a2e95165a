---@meta swit.json
-- editor/luals/swit/json.lua - LuaLS definitions of `swit.json`, swit's
-- strict RFC 8259 decoder (bindings/lua_json.c). Checked against the real
-- module by the test tools.annotations, like swit/init.lua beside it.

---@class swit.json
---@field null lightuserdata JSON `null` (the same value as `swit.null`).
local json = {}

---Decodes `text`; returns the value, or nil and the error
---("invalid JSON at byte N: ...") without raising.
---@param text string
---@return any value
---@return string? err
function json.decode(text) end

return json
