-- handlers_spec.lua — the example service's handler endpoints (lua/endpoints/*.lua) and routing
-- policy (lua/policy.lua), run against a fake sluice.db that follows the real API: query(name,
-- params) and transaction(fn) with tx:query, failures raised as { status, code, message } tables,
-- and an in-memory database that a failed transaction rolls back.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local root = os.getenv("SLUICE_ROOT") or (here .. "../..")
package.path = here .. "?.lua;" .. package.path
local S = require "stub_sluice"

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

local function raise(status, code, message, extra)
  local e = { status = status, code = code, message = message }
  for k, v in pairs(extra or {}) do e[k] = v end
  error(e, 0)
end

-- What the fake database does for each named query: fn(state, params, null) -> rows.
-- Only the queries the handlers use; another name raises a 500 like an unknown query.
local engine = {
  account_for_update = function(st, p)
    local a = st.accounts[tonumber(p.account)]
    return a and { copy(a) } or {}
  end,
  place_order = function(st, p, null)
    if not st.accounts[tonumber(p.account)] then
      raise(409, "conflict", "insert or update on table \"orders\" violates foreign key constraint", { sqlstate = "23503" })
    end
    if not st.instruments[p.pair] then
      raise(409, "conflict", "insert or update on table \"orders\" violates foreign key constraint", { sqlstate = "23503" })
    end
    if p.side ~= "buy" and p.side ~= "sell" then raise(409, "conflict", "check constraint", { sqlstate = "23514" }) end
    if not (tonumber(p.qty) and tonumber(p.qty) > 0) then raise(409, "conflict", "check constraint", { sqlstate = "23514" }) end
    st.next_order = st.next_order + 1
    local row = { id = st.next_order, account_id = tonumber(p.account), pair = p.pair, side = p.side,
      qty = tonumber(p.qty), price = p.price == null and null or tonumber(p.price), status = "open",
      created_at = "2024-01-02T03:04:05+00:00" }
    st.orders[#st.orders + 1] = row
    return { copy(row) }
  end,
}

-- A fake sluice.db for the stub: the queries the scripts defined (stub.defs.queries), run by
-- `engine` on the in-memory state. Returns db, state.
local function fake_db(stub, state)
  local db, in_txn = {}, false

  local function run(name, params, where)
    local q = stub.defs.queries[name]
    if not q or not engine[name] then raise(500, "internal", "unknown query " .. tostring(name)) end
    if type(params) ~= "table" then raise(400, "bad_request", "query " .. name .. ": params must be a table") end
    -- Every :name placeholder of the real SQL needs a value (sluice.null for NULL).
    for _, p in ipairs(S.placeholders(q.sql)) do
      if params[p] == nil then raise(400, "bad_request", ("query %s: missing parameter %q"):format(name, p), { query = name }) end
    end
    state.log[#state.log + 1] = { where = where, name = name, params = copy(params) }
    local rows = engine[name](state, params, stub.null)
    if q.single then
      if #rows == 0 then raise(404, "not_found", "no row", { query = name }) end
      return rows[1]
    end
    return { rows = rows, row_count = #rows }
  end

  function db.query(name, params)
    if in_txn then raise(500, "internal", "sluice.db.query inside a transaction") end
    return run(name, params, "query")
  end

  local tx = {}
  tx.__index = tx
  function tx:query(name, params)
    if not in_txn then raise(500, "internal", "the transaction is over") end
    return run(name, params, "tx")
  end

  function db.transaction(fn)
    if in_txn then raise(500, "internal", "a transaction is already open in this handler") end
    local saved = copy(state)
    in_txn = true
    state.log[#state.log + 1] = { where = "tx", name = "BEGIN" }
    local res = { pcall(fn, setmetatable({}, tx)) }
    in_txn = false
    if not res[1] then
      local log = state.log
      for k in pairs(state) do state[k] = nil end
      for k, v in pairs(saved) do state[k] = v end
      state.log = log
      log[#log + 1] = { where = "tx", name = "ROLLBACK" }
      error(res[2], 0)
    end
    state.log[#state.log + 1] = { where = "tx", name = "COMMIT" }
    return unpack(res, 2, table.maxn(res))
  end

  return db
end

-- The seed of migrations/0001_forex.sql that the handlers touch.
local function seed()
  return {
    accounts = {
      [1] = { id = 1, owner = "alice", currency = "USD", balance = 100000 },
      [2] = { id = 2, owner = "bob", currency = "EUR", balance = 50000 },
      [3] = { id = 3, owner = "carol", currency = "USD", balance = 2500 },
    },
    instruments = { EURUSD = true, GBPUSD = true, USDJPY = true, AUDUSD = true },
    orders = {},
    next_order = 5,
    log = {},
  }
end

local function script_files()
  local files = {}
  local p = assert(io.popen("ls " .. root .. "/lua/endpoints/*.lua"))
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  table.sort(files)
  files[#files + 1] = root .. "/lua/policy.lua"
  return files
end

-- Loads every script into a stub with pools and a fake db over a fresh seed. Returns stub, state.
local function load_all(pools)
  local stub = S.new(pools)
  for _, f in ipairs(script_files()) do S.load(stub, f) end
  local state = seed()
  stub.db = fake_db(stub, state)
  return stub, state
end

-- Calls an endpoint's handler as the gateway does: returns status, body. A raised error table
-- with a 400..599 status and a message string answers { error = { code, message, ... } };
-- anything else is a 500 internal.
local function call(stub, name, req)
  local ep = assert(stub.defs.endpoints[name], "no endpoint " .. name)
  req.method = req.method or ep.route:match("^(%u+)")
  req.path, req.query, req.headers = req.path or {}, req.query or {}, req.headers or {}
  local res = { pcall(ep.handler, req) }
  if res[1] then return res[2] == nil and 200 or res[2], res[3] end
  local e = res[2]
  if type(e) == "table" and type(e.status) == "number" and e.status >= 400 and e.status <= 599
      and type(e.message) == "string" then
    return e.status, { error = { code = e.code, message = e.message, sqlstate = e.sqlstate, query = e.query } }
  end
  return 500, { error = { code = "internal", message = tostring(e) } }
end

local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end

describe("the fake sluice.db", function()
  it("raises 404 for a single query without a row and 500 for an unknown name", function()
    local stub = load_all()
    local ok, e = pcall(stub.db.query, "account_for_update", { account = 99 })
    assert.is_false(ok)
    assert.same({ status = 404, code = "not_found", message = "no row", query = "account_for_update" }, e)
    ok, e = pcall(stub.db.query, "no_such_query", {})
    assert.is_false(ok)
    assert.equal(500, e.status)
  end)

  it("rolls back the in-memory state when the transaction's function raises", function()
    local stub, state = load_all()
    local ok = pcall(stub.db.transaction, function(tx)
      tx:query("place_order", { account = 1, pair = "EURUSD", side = "buy", qty = 1, price = 1 })
      assert.equal(1, #state.orders)
      error({ status = 409, code = "conflict", message = "no" })
    end)
    assert.is_false(ok)
    assert.equal(0, #state.orders)
    assert.equal(5, state.next_order)
  end)

  it("refuses sluice.db.query and a second transaction inside a transaction", function()
    local stub = load_all()
    local ok, e = pcall(stub.db.transaction, function()
      return stub.db.query("account_for_update", { account = 1 })
    end)
    assert.is_false(ok)
    assert.equal(500, e.status)
    ok, e = pcall(stub.db.transaction, function() return stub.db.transaction(function() end) end)
    assert.is_false(ok)
    assert.equal(500, e.status)
  end)
end)

describe("endpoint trade (POST /trade)", function()
  local order = { account = 1, pair = "EURUSD", side = "buy", qty = 10000, price = 1.08 }

  it("is defined on POST /trade", function()
    local stub = load_all()
    local ep = stub.defs.endpoints.trade
    assert.is_table(ep)
    assert.equal("POST /trade", ep.route)
    assert.is_function(ep.handler)
    assert.equal("primary", ep.pool or "primary")
  end)

  it("locks the account with a write query that is never routed to a replica", function()
    local stub = load_all({ primary = { healthy = true }, replica = { healthy = true } })
    local q = stub.defs.queries.account_for_update
    assert.is_table(q)
    assert.is_not_true(q.readonly)
    assert.truthy(q.sql:upper():match("FOR%s+UPDATE"))
    assert.same({ "account" }, S.placeholders(q.sql))
    assert.equal("primary", stub.route(q, { method = "GET", path = "/query/account_for_update" }))
  end)

  it("places the order when the balance covers qty * price: 201 with the order", function()
    local stub, state = load_all()
    local status, body = call(stub, "trade", { body = copy(order) })
    assert.equal(201, status)
    assert.same({ id = 6, account_id = 1, pair = "EURUSD", side = "buy", qty = 10000, price = 1.08,
      status = "open", created_at = "2024-01-02T03:04:05+00:00" }, body)
    assert.equal(1, #state.orders)
    assert.equal(6, state.orders[1].id)
    -- Locked, then inserted, in one transaction that committed.
    local steps = {}
    for i, l in ipairs(state.log) do steps[i] = l.where .. ":" .. l.name end
    assert.same({ "tx:BEGIN", "tx:account_for_update", "tx:place_order", "tx:COMMIT" }, steps)
    assert.same({ account = 1 }, state.log[2].params)
  end)

  it("accepts numbers as numeric strings, and a balance exactly equal to the cost", function()
    local stub, state = load_all()
    local status, body = call(stub, "trade", { body = { account = "3", pair = "AUDUSD", side = "sell", qty = "2500", price = "1" } })
    assert.equal(201, status)
    assert.equal(3, body.account_id)
    assert.equal(2500, body.qty)
    assert.equal(1, #state.orders)
  end)

  it("refuses an order larger than the balance: 409 conflict, nothing inserted", function()
    local stub, state = load_all()
    local status, body = call(stub, "trade", { body = { account = 3, pair = "EURUSD", side = "buy", qty = 10000, price = 1.08 } })
    assert.equal(409, status)
    assert.same({ error = { code = "conflict", message = "insufficient balance" } }, body)
    assert.equal(0, #state.orders)
    assert.equal(5, state.next_order)
    assert.equal("ROLLBACK", state.log[#state.log].name)
    for _, l in ipairs(state.log) do assert.not_equal("place_order", l.name) end
  end)

  it("answers 404 for an unknown account, and passes on a constraint's 409", function()
    local stub, state = load_all()
    local status, body = call(stub, "trade", { body = { account = 42, pair = "EURUSD", side = "buy", qty = 1, price = 1 } })
    assert.equal(404, status)
    assert.equal("not_found", body.error.code)
    status, body = call(stub, "trade", { body = { account = 1, pair = "XXXYYY", side = "buy", qty = 1, price = 1 } })
    assert.equal(409, status)
    assert.equal("conflict", body.error.code)
    assert.equal("23503", body.error.sqlstate)
    assert.equal(0, #state.orders)
  end)

  it("answers 400 for a missing or malformed field, before touching the database", function()
    local DROP = {}
    local bad = {
      { "account", DROP }, { "pair", DROP }, { "side", DROP }, { "qty", DROP }, { "price", DROP },
      { "account", 1.5 }, { "account", 0 }, { "side", "hold" }, { "qty", 0 }, { "qty", -1 },
      { "qty", "lots" }, { "price", 0 }, { "price", true }, { "pair", 7 }, { "price", "null" },
    }
    for i, case in ipairs(bad) do
      local stub, state = load_all()
      local b = copy(order)
      if case[2] == DROP then b[case[1]] = nil else b[case[1]] = case[2] end
      local status, body = call(stub, "trade", { body = b })
      assert.equal(400, status, "case " .. i)
      assert.equal("bad_request", body.error.code, "case " .. i)
      assert.truthy(body.error.message:find(case[1], 1, true), body.error.message)
      assert.equal(0, #state.log, "case " .. i)
    end
    for _, body in ipairs({ false, "x", 42 }) do
      local stub, state = load_all()
      assert.equal(400, (call(stub, "trade", { body = body })))
      assert.equal(0, #state.log)
    end
    local stub = load_all()
    assert.equal(400, (call(stub, "trade", { body = nil })))
    assert.equal(400, (call(stub, "trade", { body = stub.null })))
  end)

  it("leaves the other accounts and the seed untouched", function()
    local stub, state = load_all()
    call(stub, "trade", { body = copy(order) })
    assert.equal(3, count(state.accounts))
    assert.equal(100000, state.accounts[1].balance)
  end)
end)

describe("sluice.route (lua/policy.lua)", function()
  local read = { name = "latest_quote", readonly = true, single = true, pool = "primary" }
  local write = { name = "place_order", readonly = false, single = true, pool = "primary" }
  local req = { method = "GET", path = "/quotes/EURUSD" }

  it("sends readonly queries to a healthy replica and writes to primary", function()
    local stub = load_all({ primary = { name = "primary", healthy = true }, replica = { name = "replica", healthy = true } })
    assert.equal("replica", stub.route(read, req))
    assert.equal("primary", stub.route(write, req))
  end)

  it("falls back to primary when sluice.pools.replica.healthy is false, and back again", function()
    local pools = { primary = { name = "primary", healthy = true }, replica = { name = "replica", healthy = false } }
    local stub = load_all(pools)
    assert.equal("primary", stub.route(read, req))
    assert.equal("primary", stub.route(write, req))
    pools.replica.healthy = true
    assert.equal("replica", stub.route(read, req))
    pools.replica.healthy = false
    assert.equal("primary", stub.route(read, req))
  end)

  it("uses primary without a replica pool", function()
    local stub = load_all({ primary = { name = "primary", healthy = true } })
    assert.equal("primary", stub.route(read, req))
  end)
end)
