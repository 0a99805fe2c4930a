-- handler_spec.lua — Lua handlers (sluice.endpoint) against a real PostgreSQL: the req table,
-- return values and headers, sluice.db.query and its raised errors, sluice.db.transaction with
-- COMMIT and ROLLBACK (checked with psql), Lua errors and runaway loops, clients that leave, and
-- concurrent handlers that each get their own answer.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["queries.lua"] = [==[
sluice.query "get_acct" { readonly = true, single = true, sql = [[ SELECT id, balance FROM accounts WHERE id = :id ]] }
sluice.query "debit" { sql = [[
  UPDATE accounts SET balance = balance - :amount WHERE id = :account RETURNING id, balance ]] }
sluice.query "credit" { sql = [[
  UPDATE accounts SET balance = balance + :amount WHERE id = :account RETURNING id, balance ]] }
sluice.query "list_items" { readonly = true, sql = [[ SELECT id, name FROM items ORDER BY id ]] }
sluice.query "add_item" { sql = [[ INSERT INTO items (id, name) VALUES (:id, :name) RETURNING id, name ]] }
sluice.query "double" { readonly = true, single = true, sql = [[
  SELECT CAST(:n AS int4) * 2 AS doubled FROM pg_sleep(0.05) ]] }
sluice.query "sleep" { readonly = true, single = true, sql = [[ SELECT true AS slept FROM pg_sleep(:s) ]] }
sluice.query "none" { readonly = true, sql = [[ SELECT id, name FROM items WHERE false ]] }
]==],
  ["handlers.lua"] = [==[
sluice.endpoint "echo" {
  route = "POST /echo/{a}/{b}",
  handler = function(req)
    return 200, { method = req.method, path = req.path, params = req.params, query = req.query,
      custom = req.headers["x-custom"], ctype = req.headers["content-type"], body = req.body,
      nothing = sluice.null }
  end,
}

sluice.endpoint "echo_get" {
  route = "GET /echo/{a}",
  handler = function(req)
    return 200, { a = req.path.a, has_body = req.body ~= nil, method = req.method,
      upper_header = req.headers["X-Custom"] ~= nil }
  end,
}

sluice.endpoint "account" {
  route = "GET /accounts/{id}",
  handler = function(req) return 200, sluice.db.query("get_acct", { id = req.path.id }) end,
}

-- docs/lua-api.md, crediting first so that a failing debit has something to roll back
sluice.endpoint "transfer" {
  route = "POST /transfer",
  handler = function(req)
    return sluice.db.transaction(function(tx)
      local to = tx:query("credit", { account = req.body.to, amount = req.body.amount })
      local from = tx:query("debit", { account = req.body.from, amount = req.body.amount })
      return 200, { from = from.rows[1], to = to.rows[1] }
    end)
  end,
}

sluice.endpoint "two" {
  route = "GET /two/{id}",
  handler = function(req)
    local acct = sluice.db.query("get_acct", { id = req.path.id })
    local items = sluice.db.query("list_items")
    return 200, { account = acct, items = items.rows, count = items.row_count }
  end,
}

sluice.endpoint "add" {
  route = "POST /items",
  handler = function(req)
    local r = sluice.db.query("add_item", req.body)
    return 201, r.rows[1]
  end,
}

sluice.endpoint "safe_add" {
  route = "POST /safe_items",
  handler = function(req)
    local ok, e = pcall(sluice.db.query, "add_item", req.body)
    if ok then return 201, e.rows[1] end
    return 200, { caught = true, status = e.status, code = e.code, sqlstate = e.sqlstate, query = e.query,
      message = e.message }
  end,
}

sluice.endpoint "missing" {
  route = "GET /missing",
  handler = function(req) return 200, sluice.db.query("get_acct", { id = 999 }) end,
}

sluice.endpoint "bad_param" {
  route = "GET /bad_param",
  handler = function(req) return 200, sluice.db.query("get_acct", { id = "not a number" }) end,
}

sluice.endpoint "custom_error" {
  route = "GET /custom_error",
  handler = function(req) error({ status = 422, code = "unprocessable", message = "not like this" }) end,
}

sluice.endpoint "boom" {
  route = "GET /boom",
  handler = function(req)
    local function inner_function_xyz() error("kaboom-sentinel-42") end
    inner_function_xyz()
    return 200, {}
  end,
}

sluice.endpoint "nil_index" {
  route = "GET /nil_index",
  handler = function(req) local t = nil; return 200, t.x end,
}

sluice.endpoint "spin" {
  route = "GET /spin",
  handler = function(req) while true do end end,
}

sluice.endpoint "spin_after_db" {
  route = "GET /spin_after_db",
  handler = function(req)
    sluice.db.query("get_acct", { id = 1 })
    local x = 0
    while true do x = x + 1 end
  end,
}

sluice.endpoint "spin_tx" {
  route = "POST /spin_tx",
  handler = function(req)
    return sluice.db.transaction(function(tx)
      tx:query("add_item", { id = req.body.id, name = "spin" })
      while true do end
    end)
  end,
}

sluice.endpoint "headers" {
  route = "GET /headers",
  handler = function(req)
    return 201, { ok = true }, { ["X-Sluice-Test"] = "yes", ["Cache-Control"] = "no-store" }
  end,
}

sluice.endpoint "sleepy" {
  route = "GET /sleepy/{s}",
  handler = function(req) return 200, sluice.db.query("sleep", { s = req.path.s }) end,
}

sluice.endpoint "sleepy_tx" {
  route = "GET /sleepy_tx/{id}/{s}",
  handler = function(req)
    return sluice.db.transaction(function(tx)
      tx:query("add_item", { id = req.path.id, name = "sleepy" })
      tx:query("sleep", { s = req.path.s })
      return 200, { ok = true }
    end)
  end,
}

sluice.endpoint "doubler" {
  route = "GET /double/{n}",
  handler = function(req)
    local r = sluice.db.query("double", { n = req.path.n })
    return 200, { n = tonumber(req.path.n), doubled = r.doubled, tag = req.query.tag }
  end,
}

sluice.endpoint "empty" {
  route = "GET /empty",
  handler = function(req) return 200, sluice.db.query("none") end,
}
]==],
}

describe("handlers", function()
  local db, gw

  setup(function()
    db = H.createdb("handler")
    H.psql(db, [[
      CREATE TABLE accounts (id int4 PRIMARY KEY, balance int4 NOT NULL CHECK (balance >= 0));
      INSERT INTO accounts VALUES (1, 100), (2, 100);
      CREATE TABLE items (id int4 PRIMARY KEY, name text NOT NULL);
      INSERT INTO items VALUES (1, 'one'), (2, 'two');
    ]])
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 },
      pool = { pool_size = 8, max_overflow = 0, pool_timeout = 10 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function balances()
    return H.psql(db, "SELECT id, balance FROM accounts ORDER BY id")
  end

  -- Polls f() every 50 ms until it is truthy or timeout seconds pass; returns its last value.
  local function wait_for(f, timeout)
    local deadline = H.now() + timeout
    local v = f()
    while not v and H.now() < deadline do
      H.sleep(0.05)
      v = f()
    end
    return v
  end

  local function sleeping()
    return tonumber(H.psql1(db, [[
      SELECT count(*) FROM pg_stat_activity
       WHERE application_name = 'sluice' AND state = 'active' AND query LIKE '%pg_sleep%']]))
  end

  local function not_idle()
    return tonumber(H.psql1(db, [[
      SELECT count(*) FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'sluice' AND state <> 'idle']]))
  end

  local function assert_serving()
    local t0 = H.now()
    local s, b, h, raw = gw:get_json("/accounts/1", nil, 5)
    H.assert_ok(s, b, h, raw)
    assert.equal(1, b.id)
    assert(H.now() - t0 < 1, ("the next request took %.2f s"):format(H.now() - t0))
  end

  describe("the request", function()
    it("has method, path params (also as params), query, lower-case headers and the decoded body", function()
      local s, b, h, raw = gw:post_json("/echo/x%20y/42?q=1&name=a%20b&flag",
        { n = 1, list = H.array { 1, "two", true }, nested = { k = "v" }, nul = H.null },
        { ["X-Custom"] = "Hello" })
      H.assert_ok(s, b, h, raw)
      assert.equal("POST", b.method)
      assert.same({ a = "x y", b = "42" }, b.path)
      assert.same(b.path, b.params)
      assert.equal("1", b.query.q)
      assert.equal("a b", b.query.name)
      assert.equal("Hello", b.custom)
      assert.truthy(b.ctype:find("application/json", 1, true))
      assert.same({ n = 1, list = { 1, "two", true }, nested = { k = "v" }, nul = H.null }, b.body)
      assert.truthy(raw:find('"nothing":null', 1, true), "sluice.null is not JSON null: " .. raw)
    end)

    it("has no body on a GET and only lower-case header names", function()
      local s, b, h, raw = gw:get_json("/echo/abc", { ["X-Custom"] = "1" })
      H.assert_ok(s, b, h, raw)
      assert.same({ a = "abc", has_body = false, method = "GET", upper_header = false }, b)
    end)

    it("a body that is not JSON: 415; malformed JSON: 400", function()
      H.assert_error(415, "unsupported_media_type",
        gw:post_json("/echo/a/b", "a=1", { ["Content-Type"] = "application/x-www-form-urlencoded" }))
      H.assert_error(400, "bad_request", gw:post_json("/echo/a/b", '{"a":'))
    end)

    it("custom status and response headers", function()
      local s, b, h, raw = gw:get_json("/headers")
      assert.equal(201, s, raw)
      assert.same({ ok = true }, b)
      assert.equal("yes", h["x-sluice-test"])
      assert.equal("no-store", h["cache-control"])
      assert.truthy((h["content-type"] or ""):find("application/json", 1, true))
    end)
  end)

  describe("sluice.db.query", function()
    it("returns the row of a single query", function()
      local s, b, h, raw = gw:get_json("/accounts/2")
      H.assert_ok(s, b, h, raw)
      assert.same({ id = 2, balance = 100 }, b)
    end)

    it("returns rows and row_count; an empty result has an empty rows array", function()
      local s, b, h, raw = gw:get_json("/two/1")
      H.assert_ok(s, b, h, raw)
      assert.same({ account = { id = 1, balance = 100 }, items = { { id = 1, name = "one" }, { id = 2, name = "two" } },
        count = 2 }, b)
      s, b, h, raw = gw:get_json("/empty")
      H.assert_ok(s, b, h, raw)
      assert.equal(0, b.row_count, raw)
      assert.truthy(raw:find('"rows":[]', 1, true), "rows of an empty result is not an empty array: " .. raw)
    end)

    it("a write returns its rows", function()
      local s, b, h, raw = gw:post_json("/items", { id = 10, name = "ten" })
      assert.equal(201, s, raw)
      assert.same({ id = 10, name = "ten" }, b)
      assert.equal("ten", H.psql1(db, "SELECT name FROM items WHERE id = 10"))
    end)

    it("an uncaught database error becomes that HTTP error", function()
      local e = H.assert_error(409, "conflict", gw:post_json("/items", { id = 10, name = "again" }))
      assert.equal("23505", e.sqlstate)
      assert.equal("add_item", e.query)
      e = H.assert_error(404, "not_found", gw:get_json("/missing"))
      assert.equal("get_acct", e.query)
      e = H.assert_error(400, "bad_request", gw:get_json("/bad_param"))
      H.assert_error(400, "bad_request", gw:post_json("/items", { id = 11 })) -- missing parameter
      assert.equal("ten", H.psql1(db, "SELECT name FROM items WHERE id = 10"))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM items WHERE id = 11"))
    end)

    it("pcall catches the error table {status, code, message, query, sqlstate}", function()
      local s, b, h, raw = gw:post_json("/safe_items", { id = 10, name = "again" })
      H.assert_ok(s, b, h, raw)
      assert.equal(true, b.caught)
      assert.equal(409, b.status)
      assert.equal("conflict", b.code)
      assert.equal("23505", b.sqlstate)
      assert.equal("add_item", b.query)
      assert.equal("string", type(b.message))
      s, b = gw:post_json("/safe_items", { id = 12, name = "twelve" })
      assert.equal(201, s)
      assert.same({ id = 12, name = "twelve" }, b)
    end)

    it("a raised {status, code, message} table is that HTTP error", function()
      local e = H.assert_error(422, "unprocessable", gw:get_json("/custom_error"))
      assert.equal("not like this", e.message)
    end)
  end)

  describe("sluice.db.transaction", function()
    before_each(function() H.psql(db, "UPDATE accounts SET balance = 100") end)

    it("commits both updates", function()
      local s, b, h, raw = gw:post_json("/transfer", { from = 1, to = 2, amount = 30 })
      H.assert_ok(s, b, h, raw)
      assert.same({ from = { id = 1, balance = 70 }, to = { id = 2, balance = 130 } }, b)
      assert.equal("1|70\n2|130\n", balances())
    end)

    it("a debit that violates the CHECK rolls the credit back too", function()
      local e = H.assert_error(409, "conflict", gw:post_json("/transfer", { from = 1, to = 2, amount = 1000 }))
      assert.equal("23514", e.sqlstate)
      assert.equal("debit", e.query)
      assert.equal("1|100\n2|100\n", balances())
      assert.equal(0, not_idle(), "a connection was left in a transaction")
      -- and the next transfer works
      H.assert_ok(gw:post_json("/transfer", { from = 2, to = 1, amount = 100 }))
      assert.equal("1|200\n2|0\n", balances())
    end)

    it("a bad parameter inside the transaction rolls back", function()
      H.assert_error(400, "bad_request", gw:post_json("/transfer", { from = 1, to = 2, amount = "lots" }))
      assert.equal("1|100\n2|100\n", balances())
      H.assert_error(400, "bad_request", gw:post_json("/transfer", { from = 1, to = 2 }))
      assert.equal("1|100\n2|100\n", balances())
    end)

    it("16 concurrent transfers in both directions keep the sum and match the successful ones", function()
      H.psql(db, "UPDATE accounts SET balance = 1000")
      local reqs, amounts = {}, {}
      for i = 1, 16 do
        local from, to = (i % 2 == 0) and 1 or 2, (i % 2 == 0) and 2 or 1
        amounts[i] = { from = from, amount = i }
        reqs[i] = { method = "POST", path = "/transfer", body = { from = from, to = to, amount = i } }
      end
      local res = gw:parallel(reqs, { timeout = 20 })
      local net1 = 0
      for i, r in ipairs(res) do
        assert(r.status == 200 or r.status == 409, ("transfer %d: %s %s"):format(i, tostring(r.status), r.body))
        if r.status == 200 then
          net1 = net1 + (amounts[i].from == 1 and -amounts[i].amount or amounts[i].amount)
        end
      end
      assert.equal(("1|%d\n2|%d\n"):format(1000 + net1, 1000 - net1), balances())
      assert.equal(0, not_idle())
    end)
  end)

  describe("failures in Lua", function()
    it("a Lua error: 500 internal, no detail to the client, the traceback in the log", function()
      local s, b, h, raw = gw:get_json("/boom")
      H.assert_error(500, "internal", s, b, h, raw)
      assert.is_nil(raw:find("kaboom", 1, true), "the error text reached the client: " .. raw)
      local log = wait_for(function()
        local l = gw:log()
        return l:find("kaboom-sentinel-42", 1, true) and l
      end, 2)
      assert(log, "the log lacks the error: " .. gw:log())
      assert.truthy(log:find("stack traceback", 1, true), "the log lacks the traceback: " .. log)
      assert.truthy(log:find("inner_function_xyz", 1, true), "the traceback does not name the function: " .. log)
      H.assert_error(500, "internal", gw:get_json("/nil_index"))
      assert_serving()
    end)

    it("an endless loop: 500 within 1.5 s, and the gateway keeps serving", function()
      for _, path in ipairs { "/spin", "/spin_after_db" } do
        local t0 = H.now()
        local s, b, h, raw = gw:get_json(path, nil, 10)
        local took = H.now() - t0
        H.assert_error(500, "internal", s, b, h, raw)
        assert(took < 1.5, ("%s answered after %.2f s"):format(path, took))
        assert_serving()
      end
    end)

    it("an endless loop inside a transaction rolls it back", function()
      local t0 = H.now()
      H.assert_error(500, "internal", gw:post_json("/spin_tx", { id = 900 }, nil, 10))
      assert(H.now() - t0 < 1.5, ("answered after %.2f s"):format(H.now() - t0))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM items WHERE id = 900"))
      assert(wait_for(function() return not_idle() == 0 end, 2), "a connection was left in a transaction")
      assert_serving()
    end)
  end)

  describe("clients that leave", function()
    it("while the handler waits on pg_sleep: the statement stops, the gateway stays healthy", function()
      local r = gw:async("GET", "/sleepy/3", nil, nil, 0.5).wait()
      assert.is_nil(r.status, "the client should have given up, got " .. tostring(r.status))
      assert_serving()
      local s, b = gw:get_json("/health")
      assert.equal(200, s)
      assert.equal("ok", b.status)
      assert(wait_for(function() return sleeping() == 0 end, 2), "pg_sleep still runs 2 s after the client left")
      local s2, b2, h2, raw2 = gw:get_json("/sleepy/0.1")
      H.assert_ok(s2, b2, h2, raw2)
      assert.same({ slept = true }, b2)
    end)

    it("while a transaction waits: it is rolled back", function()
      local r = gw:async("GET", "/sleepy_tx/77/3", nil, nil, 0.5).wait()
      assert.is_nil(r.status, "the client should have given up, got " .. tostring(r.status))
      assert(wait_for(function() return not_idle() == 0 end, 3), "the transaction still runs 3 s after the client left")
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM items WHERE id = 77"))
      assert_serving()
      H.assert_ok(gw:get_json("/sleepy_tx/78/0"))
      assert.equal("1", H.psql1(db, "SELECT count(*) FROM items WHERE id = 78"))
    end)
  end)

  describe("the request deadline (request_timeout)", function()
    local g2

    setup(function()
      g2 = H.start { dsn = db, scripts = scripts, config = { workers = 1, request_timeout = 1 } }
    end)

    teardown(function()
      if g2 then pcall(g2.stop, g2) end
    end)

    it("a handler still waiting on a query gets 504 timeout; the statement stops", function()
      local t0 = H.now()
      local s, b, h, raw = g2:get_json("/sleepy/3", nil, 10)
      H.assert_error(504, "timeout", s, b, h, raw)
      assert.equal("the request deadline passed", b.error.message)
      assert(H.now() - t0 < 2.5, ("answered after %.2f s"):format(H.now() - t0))
      assert(wait_for(function() return sleeping() == 0 end, 2), "pg_sleep still runs 2 s after the deadline")
      H.assert_ok(g2:get_json("/sleepy/0.1"))
    end)

    it("a transaction still open at the deadline is rolled back", function()
      local s, b, h, raw = g2:get_json("/sleepy_tx/79/3", nil, 10)
      H.assert_error(504, "timeout", s, b, h, raw)
      assert(wait_for(function() return not_idle() == 0 end, 3), "the transaction still runs 3 s after the deadline")
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM items WHERE id = 79"))
      H.assert_ok(g2:get_json("/sleepy_tx/80/0"))
      assert.equal("1", H.psql1(db, "SELECT count(*) FROM items WHERE id = 80"))
    end)
  end)

  describe("concurrency", function()
    it("50 concurrent handler requests each get their own answer", function()
      local reqs = {}
      for i = 1, 50 do reqs[i] = { method = "GET", path = ("/double/%d?tag=t%d"):format(i, i) } end
      local t0 = H.now()
      local res = gw:parallel(reqs, { timeout = 20 })
      local took = H.now() - t0
      for i, r in ipairs(res) do
        assert.equal(200, r.status, ("request %d: %s"):format(i, r.body))
        assert.same({ n = i, doubled = 2 * i, tag = "t" .. i }, r.json)
      end
      -- 50 handlers each waiting 50 ms on 8 connections: they must overlap
      assert(took < 5, ("50 requests took %.2f s"):format(took))
    end)
  end)
end)
