-- lua/swit/loader.lua - the module searcher of a code generation.
--
-- Installed first in package.loaders of every state the host builds.
-- `served` maps module names to { path, src } captured for the current
-- generation: those load from memory, so every worker runs the same text
-- and a rollback reads no file. In the validation state, `captured` (a
-- list) records each module the scripts require from package.path, for
-- the host to copy into the generation's code set. Modules first
-- required later, at run time, load from disk as usual.
return function(served, captured)
  local searchpath, loadstring, open = package.searchpath, loadstring, io.open
  table.insert(package.loaders, 2, function(name)
    local m = served[name]
    if m then
      local f, err = loadstring(m.src, "@" .. m.path)
      if not f then error(err, 0) end
      return f
    end
    if not captured then return nil end
    local path = searchpath(name, package.path)
    if not path then return nil end        -- the standard searchers explain
    local fh = open(path, "rb")
    if not fh then return nil end
    local src = fh:read("*a")
    fh:close()
    local f, err = loadstring(src, "@" .. path)
    if not f then error(err, 0) end
    captured[#captured + 1] = { name = name, path = path, src = src }
    return f
  end)
end
