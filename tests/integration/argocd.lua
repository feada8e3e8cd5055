-- Runs one of Argo CD's Lua customizations (deploy/argocd) the way Argo CD runs it: the live
-- object in the global `obj`, only the libraries Argo CD opens (base, table, string, math, and
-- os.date/os.time), the script's return value as the result.
--
--   lua5.1 argocd.lua SCRIPT < object.json > result.json     (exit 1: the script raised an error)
local json = require("dkjson")

local decoded, _, err = json.decode(io.read("*a"), 1, nil)
if err ~= nil then
  io.stderr:write("not JSON: " .. err .. "\n")
  os.exit(2)
end
local chunk, load_err = loadfile(arg[1])
if chunk == nil then
  io.stderr:write(load_err .. "\n")
  os.exit(2)
end
local sandbox = {
  obj = decoded,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, table = table, math = math,
  os = { date = os.date, time = os.time, clock = os.clock },
}
setfenv(chunk, sandbox)
local ok, result = pcall(chunk)
if not ok then
  io.stderr:write(tostring(result) .. "\n")
  os.exit(1)
end
io.write(json.encode(result))
