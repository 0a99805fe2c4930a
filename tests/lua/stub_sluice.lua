-- stub_sluice.lua — a stand-in for the `sluice` global that the gateway gives scripts (docs/lua-api.md). It records every definition so that specs can load the example service's scripts
-- without the gateway and check what they define. Also: the :name placeholders of an SQL text.
local M = {}

-- A fresh stub. pools: the table sluice.pools should hold (name -> { healthy = bool }).
-- Returns the stub; its `defs` field has queries, bulks, endpoints, channels (name -> definition, with
-- the name copied into .name), policies (a list) and logs (a list of { level, msg, data }).
function M.new(pools)
  local defs = { queries = {}, bulks = {}, endpoints = {}, channels = {}, policies = {}, logs = {} }
  local s = { defs = defs, pools = pools or { primary = { healthy = true } } }
  s.null = setmetatable({}, { __tostring = function() return "sluice.null" end })

  -- sluice.query "name" { ... }: the name, then the definition.
  local function definer(kind)
    return function(name)
      assert(type(name) == "string" and name ~= "", kind .. ": a name is required")
      return function(def)
        assert(type(def) == "table", kind .. " " .. name .. ": a table is required")
        assert(defs[kind][name] == nil, kind .. " " .. name .. " is defined twice")
        def.name = name
        defs[kind][name] = def
        return def
      end
    end
  end
  s.query = definer("queries")
  s.bulk = definer("bulks")
  s.endpoint = definer("endpoints")
  s.channel = definer("channels")
  function s.policy(p)
    assert(type(p) == "table", "sluice.policy: a table is required")
    defs.policies[#defs.policies + 1] = p
  end

  s.log = {}
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    s.log[level] = function(msg, data) defs.logs[#defs.logs + 1] = { level, msg, data } end
  end
  function s.env(name, default)
    local v = os.getenv(name)
    if v == nil then return default end
    return v
  end
  s.db = setmetatable({}, {
    __index = function(_, k) error("sluice.db." .. tostring(k) .. " is not available while loading", 2) end,
  })
  return s
end

-- Runs the script at path with `sluice` set to stub (as a global, as the gateway does).
-- Returns nothing; raises the script's error.
function M.load(stub, path)
  local chunk = assert(loadfile(path))
  local env = setmetatable({ sluice = stub }, { __index = _G })
  setfenv(chunk, env)
  chunk()
end

-- The dollar-quote tag ($$ or $name$) that starts at sql[i], or nil.
local function dollar_tag(sql, i)
  if sql:sub(i - 1, i - 1):match("[%w_]") then return nil end -- inside an identifier
  return sql:match("^%$%$", i) or sql:match("^%$[%a_][%w_]*%$", i)
end

-- The distinct :name placeholders of sql, in order of first appearance. Skips what PostgreSQL
-- does not read as a placeholder: ::casts, '..' and E'..' literals, "identifiers", -- and
-- /* */ comments, $tag$ bodies.
function M.placeholders(sql)
  local names, seen = {}, {}
  local i, n = 1, #sql
  while i <= n do
    local c = sql:sub(i, i)
    local two = sql:sub(i, i + 1)
    if two == "--" then
      i = (sql:find("\n", i, true) or n) + 1
    elseif two == "/*" then
      local depth = 1
      i = i + 2
      while i <= n and depth > 0 do
        local t = sql:sub(i, i + 1)
        if t == "/*" then depth, i = depth + 1, i + 2
        elseif t == "*/" then depth, i = depth - 1, i + 2
        else i = i + 1 end
      end
    elseif c == "'" or c == '"' then
      local escapes = c == "'" and i > 1 and sql:sub(i - 1, i - 1):upper() == "E"
      i = i + 1
      while i <= n do
        local d = sql:sub(i, i)
        if escapes and d == "\\" then i = i + 2
        elseif d == c and sql:sub(i + 1, i + 1) == c then i = i + 2
        elseif d == c then break
        else i = i + 1 end
      end
      i = i + 1
    elseif c == "$" and dollar_tag(sql, i) then
      local tag = dollar_tag(sql, i)
      local close = sql:find(tag, i + #tag, true)
      i = close and close + #tag or n + 1
    elseif two == "::" then
      i = i + 2
    elseif c == ":" and sql:match("^:[%a_]", i) then
      local name = sql:match("^:([%a_][%w_]*)", i)
      if not seen[name] then
        seen[name] = true
        names[#names + 1] = name
      end
      i = i + 1 + #name
    else
      i = i + 1
    end
  end
  return names
end

-- sql with each :name replaced by $n (in the order of M.placeholders).
function M.numbered(sql)
  local idx = {}
  for k, name in ipairs(M.placeholders(sql)) do idx[name] = k end
  -- Good enough for the example scripts, whose literals hold no colons.
  return (sql:gsub("(:?):([%a_][%w_]*)", function(pre, name)
    if pre == ":" then return "::" .. name end
    return idx[name] and ("$" .. idx[name]) or (":" .. name)
  end))
end

return M
