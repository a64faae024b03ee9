-- usage: KONG_REPO=<Kong/kong clone> luajit dump.lua <tag> > dump-<tag>.sql
-- Prints, in Kong's order, every migration's `up` SQL and the statements its teardown issues against an
-- empty database (a connector that records queries), loading Kong's Lua modules from the clone at <tag>.
local tag = arg[1]
local REPO = assert(os.getenv("KONG_REPO"), "set KONG_REPO to a Kong/kong clone")
local function gitshow(path)
  local p = io.popen("git -C " .. REPO .. " show " .. tag .. ":" .. path .. " 2>/dev/null")
  local s = p:read("*a"); p:close()
  if s == "" then return nil end
  return s
end
local stub_mt = {}
stub_mt.__index = function(t, k) return setmetatable({}, stub_mt) end
stub_mt.__call = function() return setmetatable({}, stub_mt) end
local STUBS = {
  ["kong.tools.utils"] = { uuid = function() return "00000000-0000-4000-8000-000000000001" end },
  ["kong.tools.uuid"] = { uuid = function() return "00000000-0000-4000-8000-000000000001" end },
  ["resty.jit-uuid"] = { generate_v4 = function() return "00000000-0000-4000-8000-000000000002" end },
}
table.insert(package.loaders, 2, function(name)
  if STUBS[name] then return function() return STUBS[name] end end
  local path = name:gsub("%.", "/")
  local src = gitshow(path .. ".lua") or gitshow(path .. "/init.lua")
  if src then return assert(loadstring(src, name)) end
  return function() return setmetatable({}, stub_mt) end
end)
ngx = setmetatable({ null = {} }, stub_mt)
local function list_plugins()
  local p = io.popen("git -C " .. REPO .. " ls-tree -r --name-only " .. tag .. " kong/plugins | grep 'migrations/init.lua$' | sort")
  local r = {}
  for l in p:lines() do r[#r + 1] = l:match("kong/plugins/([^/]+)/") end
  p:close(); return r
end
local subsystems = { { name = "core", ns = "kong.db.migrations.core" } }
for _, n in ipairs(list_plugins()) do subsystems[#subsystems + 1] = { name = n, ns = "kong.plugins." .. n .. ".migrations" } end
local recorded
local connector = {
  query = function(self, sql) recorded[#recorded + 1] = sql; return {} end,
  iterate = function() return function() return nil end end,
  escape_literal = function(self, v) return "'" .. tostring(v) .. "'" end,
}
for _, s in ipairs(subsystems) do
  local idx = require(s.ns)
  for _, name in ipairs(idx) do
    local mod = require(s.ns .. "." .. name)
    local pg = mod.postgres or {}
    io.write("--@@ MIGRATION ", s.name, " ", name, " ", pg.teardown and "teardown" or "noteardown", "\n")
    io.write(pg.up or "", "\n")
    if pg.teardown then
      recorded = {}
      local ok, err = pcall(pg.teardown, connector)
      io.write("--@@ TEARDOWN ", ok and "ok" or ("error " .. tostring(err)):gsub("\n", " "), "\n")
      for _, q in ipairs(recorded) do io.write(q, "\n;\n") end
    end
  end
end
