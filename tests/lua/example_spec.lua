-- example_spec.lua — the example forex service's scripts (lua/endpoints/*.lua, lua/policy.lua)
-- and config (conf/sluice.lua), loaded against a stub `sluice` without a gateway or database.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local root = os.getenv("SLUICE_ROOT") or (here .. "../..")
package.path = here .. "?.lua;" .. package.path
local S = require "stub_sluice"

-- The params of each named query, as documented in its script; the scripts must define
-- exactly these queries with exactly these :name placeholders.
local documented = {
  account_for_update = { "account" },
  latest_quote = { "pair" },
  quotes_range = { "pair", "from", "to", "limit" },
  instruments = {},
  place_order = { "account", "pair", "side", "qty", "price" },
  orders_by_account = { "account" },
  cancel_order = { "id" },
}

local function script_files()
  local files = {}
  local p = assert(io.popen("ls " .. root .. "/lua/endpoints/*.lua"))
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  table.sort(files)
  files[#files + 1] = root .. "/lua/policy.lua"
  return files
end

-- Loads every script into a fresh stub with the given pools; returns the stub.
local function load_all(pools)
  local stub = S.new(pools)
  for _, f in ipairs(script_files()) do S.load(stub, f) end
  return stub
end

-- Strips comments and leading blanks from sql; returns its first keyword, upper-cased.
local function first_keyword(sql)
  local s = sql:gsub("/%*.-%*/", " "):gsub("%-%-[^\n]*", " ")
  return (s:match("^%s*(%a+)") or ""):upper()
end

-- The columns of each CREATE TABLE in the migrations: name -> { column = true }.
local function migration_tables()
  local tables = {}
  local p = assert(io.popen("cat " .. root .. "/migrations/*.sql"))
  local sql = p:read("*a"):gsub("%-%-[^\n]*", "")
  p:close()
  for name, body in sql:gmatch("CREATE TABLE%s+([%w_]+)%s*(%b())") do
    local cols = {}
    for line in body:sub(2, -2):gmatch("[^\n]+") do
      local col = line:match("^%s*([%l_][%w_]*)%s")
      if col and col ~= "primary" and col ~= "check" and col ~= "unique" then cols[col] = true end
    end
    tables[name] = cols
  end
  return tables
end

describe("stub_sluice.placeholders", function()
  it("finds each :name once, in order", function()
    assert.same({ "a", "b" }, S.placeholders("SELECT :a, :b, :a"))
  end)
  it("skips casts, literals, identifiers, comments and dollar quotes", function()
    local sql = [[SELECT :x::int, ':no', E'\':no', "a:no", $$ :no $$, $t$ :no $t$ -- :no
      /* :no /* :no */ */ FROM t WHERE c = :y]]
    assert.same({ "x", "y" }, S.placeholders(sql))
  end)
  it("numbers placeholders and keeps casts", function()
    assert.equal("SELECT $1::int, $2, $1", S.numbered("SELECT :a::int, :b, :a"))
  end)
end)

describe("the example service's scripts", function()
  local stub = load_all()
  local queries = stub.defs.queries

  it("publish live quotes on a channel whose ?pair= filter keeps only that pair", function()
    local ch = assert(stub.defs.channels.quotes)
    assert.equal("quotes", ch.listen)
    local eur = '{"pair":"EURUSD","bid":1.1,"ask":1.2}'
    assert.is_true(ch.filter(eur, { query = {} }))
    assert.is_true(ch.filter(eur, { query = { pair = "EURUSD" } }))
    assert.is_false(ch.filter(eur, { query = { pair = "GBPUSD" } }))
  end)

  it("define exactly the documented queries", function()
    local names = {}
    for name in pairs(queries) do names[#names + 1] = name end
    table.sort(names)
    local want = {}
    for name in pairs(documented) do want[#want + 1] = name end
    table.sort(want)
    assert.same(want, names)
  end)

  local names = {}
  for name in pairs(documented) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local params = documented[name]
    describe("query " .. name, function()
      local q = queries[name]

      it("has SQL whose placeholders are the documented params", function()
        assert.is_table(q)
        assert.is_string(q.sql)
        assert.is_truthy(q.sql:match("%S"))
        assert.same(params, S.placeholders(q.sql))
      end)

      it("uses only known keys with the right types", function()
        local known = { name = "string", sql = "string", readonly = "boolean", single = "boolean",
          timeout_ms = "number", pool = "string", route = "string", idempotent = "boolean" }
        for k, v in pairs(q) do
          assert.is_not_nil(known[k], "unknown key " .. tostring(k))
          assert.equal(known[k], type(v), "key " .. k)
        end
        if q.timeout_ms then
          assert.is_true(q.timeout_ms > 0 and q.timeout_ms == math.floor(q.timeout_ms))
        end
      end)

      if q and q.readonly then
        it("is a SELECT, being readonly", function()
          assert.equal("SELECT", first_keyword(q.sql))
          for _, w in ipairs({ "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "NEXTVAL" }) do
            assert.is_nil(q.sql:upper():find("%f[%w_]" .. w .. "%f[^%w_]"), w .. " in a readonly query")
          end
        end)
      end

      if q and q.route then
        it("has a route of the form METHOD /path whose {params} are query params", function()
          local method, path = q.route:match("^(%u+) (/%S*)$")
          assert.is_truthy(method, "route " .. q.route)
          assert.is_truthy(({ GET = 1, POST = 1, PUT = 1, PATCH = 1, DELETE = 1 })[method])
          if method == "GET" then assert.is_true(q.readonly, "GET on a write") end
          local set = {}
          for _, p in ipairs(params) do set[p] = true end
          for seg in path:gmatch("/([^/]*)") do
            assert.is_truthy(seg:match("^[%w_.-]+$") or seg:match("^{[%a_][%w_]*}$"), "segment " .. seg)
            local p = seg:match("^{(.*)}$")
            if p then assert.is_true(set[p], "{" .. p .. "} is not a param of " .. name) end
          end
        end)
      end
    end)
  end

  it("give every route to one query only", function()
    local seen = {}
    for name, q in pairs(queries) do
      if q.route then
        local shape = q.route:gsub("{[^}]*}", "{}")
        assert.is_nil(seen[shape], q.route .. " is used by " .. tostring(seen[shape]) .. " and " .. name)
        seen[shape] = name
      end
    end
  end)

  it("define the ticks bulk operation on existing columns", function()
    local b = stub.defs.bulks.ticks
    assert.is_table(b)
    assert.equal("ticks", b.table)
    assert.same({ "pair", "bid", "ask", "ts" }, b.columns)
    assert.equal("insert", b.mode or "insert")
    local cols = migration_tables().ticks
    assert.is_table(cols, "no CREATE TABLE ticks in migrations/")
    for _, c in ipairs(b.columns) do assert.is_true(cols[c], "ticks has no column " .. c) end
  end)

  it("set one policy with the documented keys", function()
    assert.equal(1, #stub.defs.policies)
    local p = stub.defs.policies[1]
    local want = {
      slow_query_ms = "number", explain_slow = "boolean",
      retry = { attempts = "number", base_ms = "number", max_ms = "number" },
      breaker = { failures = "number", window_ms = "number", open_ms = "number", half_open = "number" },
    }
    local function check(t, shape, where)
      for k, v in pairs(t) do
        local s = shape[k]
        assert.is_not_nil(s, "unknown policy key " .. where .. k)
        if type(s) == "table" then
          assert.is_table(v)
          check(v, s, where .. k .. ".")
        else
          assert.equal(s, type(v), "policy key " .. where .. k)
        end
      end
    end
    check(p, want, "")
    assert.is_true(p.retry.base_ms <= p.retry.max_ms)
  end)

  it("log slow queries as warnings", function()
    assert.is_function(stub.on_slow_query)
    stub.on_slow_query({ query = "latest_quote", ms = 300 })
    local last = stub.defs.logs[#stub.defs.logs]
    assert.equal("warn", last[1])
    assert.equal("latest_quote", last[3].query)
  end)
end)

describe("sluice.route", function()
  local read = { name = "latest_quote", readonly = true }
  local write = { name = "place_order", readonly = false }

  it("sends everything to primary without a replica pool", function()
    local stub = load_all({ primary = { healthy = true } })
    assert.is_function(stub.route)
    assert.equal("primary", stub.route(read, {}))
    assert.equal("primary", stub.route(write, {}))
  end)

  it("sends readonly queries to a healthy replica, writes to primary", function()
    local stub = load_all({ primary = { healthy = true }, replica = { healthy = true } })
    assert.equal("replica", stub.route(read, {}))
    assert.equal("primary", stub.route(write, {}))
  end)

  it("falls back to primary while the replica is unhealthy, and follows its health live", function()
    local pools = { primary = { healthy = true }, replica = { healthy = false } }
    local stub = load_all(pools)
    assert.equal("primary", stub.route(read, {}))
    pools.replica.healthy = true
    assert.equal("replica", stub.route(read, {}))
  end)

  it("routes the example's own readonly queries to the replica", function()
    local stub = load_all({ primary = { healthy = true }, replica = { healthy = true } })
    for name, q in pairs(stub.defs.queries) do
      assert.equal(q.readonly and "replica" or "primary", stub.route(q, {}), name)
    end
  end)
end)

describe("conf/sluice.lua", function()
  local function load_conf(env_url)
    local chunk = assert(loadfile(root .. "/conf/sluice.lua"))
    local env = setmetatable({ os = setmetatable({ getenv = function(k)
      if k == "DATABASE_URL" then return env_url end
      return os.getenv(k)
    end }, { __index = os }) }, { __index = _G })
    setfenv(chunk, env)
    return chunk()
  end

  it("returns the example config", function()
    local c = load_conf(nil)
    assert.equal("127.0.0.1:8080", c.listen)
    assert.equal("auto", c.workers)
    assert.equal("postgresql://postgres@127.0.0.1:55433/sluice", c.pools.primary.url)
    assert.same({ "lua/endpoints/*.lua", "lua/policy.lua" }, c.scripts)
  end)

  it("takes the primary's URL from DATABASE_URL", function()
    local c = load_conf("postgresql://u@db:5432/x")
    assert.equal("postgresql://u@db:5432/x", c.pools.primary.url)
  end)
end)
