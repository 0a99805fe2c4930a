-- example_spec.lua — the example forex service end to end: `sluice migrate up` applies
-- migrations/*.sql to a fresh database, then the gateway serves lua/endpoints/*.lua and
-- lua/policy.lua, and every example query answers with the seeded data.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local null = H.null

describe("example service", function()
  local db, gw, tmp

  -- One value from psql as a number.
  local function num(sql) return tonumber(H.psql1(db, sql)) end

  -- The ISO-8601 form the gateway gives a timestamptz, computed by PostgreSQL.
  local function iso(expr)
    return H.psql1(db, ("SELECT to_char((%s) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+00:00'"):format(expr))
  end

  setup(function()
    db = H.createdb("example")
    H.psql(db, ("ALTER DATABASE %s SET timezone = 'UTC';"):format(H.dsn_dbname(db)))
    tmp = H.tmpdir("sluice-example")
    local cfg = tmp .. "/migrate.lua"
    H.write_config(cfg, {
      pools = { primary = { url = db } },
      migrations = H.root .. "/migrations",
      scripts = { H.root .. "/lua/endpoints/*.lua", H.root .. "/lua/policy.lua" },
    })
    local out, rc, err = H.sh(("cd %s && %s migrate --config %s up"):format(H.q(H.root), H.q(H.bin), H.q(cfg)))
    assert(rc == 0, ("sluice migrate up failed (exit %s):\n%s%s"):format(tostring(rc), out, err))
    gw = H.start { dsn = db, config = {
      scripts = { H.root .. "/lua/endpoints/*.lua", H.root .. "/lua/policy.lua" },
    } }
  end)

  teardown(function()
    H.cleanup()
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
  end)

  it("migrate up applied the schema and the seed data", function()
    assert.equal("4", H.psql1(db, "SELECT count(*) FROM instruments"))
    assert.equal("484", H.psql1(db, "SELECT count(*) FROM quotes"))
    assert.equal("5", H.psql1(db, "SELECT count(*) FROM orders"))
  end)

  describe("latest_quote", function()
    it("GET /query/latest_quote, POST and the route alias GET /quotes/{pair} agree", function()
      local want = { pair = "EURUSD", bid = 1.082, ask = 1.0821,
        ts = iso("SELECT max(ts) FROM quotes WHERE pair = 'EURUSD'") }
      local s, b, h, raw = gw:get_json("/query/latest_quote?pair=EURUSD")
      H.assert_ok(s, b, h, raw)
      assert.same(want, b)
      s, b, h, raw = gw:post_json("/query/latest_quote", { pair = "EURUSD" })
      H.assert_ok(s, b, h, raw)
      assert.same(want, b)
      s, b, h, raw = gw:get_json("/quotes/EURUSD")
      H.assert_ok(s, b, h, raw)
      assert.same(want, b)
      s, b, h, raw = gw:get_json("/quotes/USDJPY")
      H.assert_ok(s, b, h, raw)
      assert.equal(149.2, b.bid)
      assert.equal(149.21, b.ask)
    end)

    it("an unknown pair is 404 not_found", function()
      H.assert_error(404, "not_found", gw:get_json("/quotes/XXXYYY"))
      H.assert_error(404, "not_found", gw:get_json("/query/latest_quote?pair=XXXYYY"))
    end)
  end)

  describe("quotes_range", function()
    it("returns the quotes in [from, to), oldest first, honouring limit", function()
      local to = iso("SELECT max(ts) FROM quotes WHERE pair = 'EURUSD'")
      local from = iso("SELECT max(ts) - interval '10 minutes' FROM quotes WHERE pair = 'EURUSD'")
      local expected = {}
      local out = H.psql(db, ("SELECT bid, ask FROM quotes WHERE pair = 'EURUSD' AND ts >= '%s' AND ts < '%s' ORDER BY ts")
        :format(from, to))
      for bid, ask in out:gmatch("([%d%.]+)|([%d%.]+)") do
        expected[#expected + 1] = { tonumber(bid), tonumber(ask) }
      end
      assert.equal(10, #expected)

      local qs = "?from=" .. H.urlencode(from) .. "&to=" .. H.urlencode(to) .. "&limit=500"
      local s, b, h, raw = gw:get_json("/quotes/EURUSD/range" .. qs)
      H.assert_ok(s, b, h, raw)
      assert.equal(10, b.row_count)
      assert.equal(from, b.rows[1].ts)
      for i, row in ipairs(b.rows) do
        assert.equal("EURUSD", row.pair)
        assert.equal(expected[i][1], row.bid)
        assert.equal(expected[i][2], row.ask)
        if i > 1 then assert.is_true(row.ts > b.rows[i - 1].ts) end
        assert.is_true(row.ts < to)
      end

      s, b, h, raw = gw:get_json("/query/quotes_range?pair=EURUSD&from=" .. H.urlencode(from)
        .. "&to=" .. H.urlencode(to) .. "&limit=3")
      H.assert_ok(s, b, h, raw)
      assert.equal(3, b.row_count)
      assert.equal(expected[3][1], b.rows[3].bid)

      s, b, h, raw = gw:post_json("/query/quotes_range", { pair = "EURUSD", from = from, to = to, limit = null })
      H.assert_ok(s, b, h, raw)
      assert.equal(10, b.row_count)
    end)

    it("a bad timestamp is 400", function()
      H.assert_error(400, "bad_request",
        gw:get_json("/quotes/EURUSD/range?from=yesterday-ish&to=2024-01-01&limit=5"))
    end)
  end)

  describe("instruments", function()
    it("lists every active instrument, by /instruments and /query/instruments", function()
      local want = {
        { symbol = "AUDUSD", base = "AUD", quote = "USD", pip_size = 0.0001, digits = 5, min_qty = 1000 },
        { symbol = "EURUSD", base = "EUR", quote = "USD", pip_size = 0.0001, digits = 5, min_qty = 1000 },
        { symbol = "GBPUSD", base = "GBP", quote = "USD", pip_size = 0.0001, digits = 5, min_qty = 1000 },
        { symbol = "USDJPY", base = "USD", quote = "JPY", pip_size = 0.01, digits = 3, min_qty = 1000 },
      }
      local s, b, h, raw = gw:get_json("/instruments")
      H.assert_ok(s, b, h, raw)
      assert.same({ rows = want, row_count = 4 }, b)
      s, b, h, raw = gw:get_json("/query/instruments")
      H.assert_ok(s, b, h, raw)
      assert.same({ rows = want, row_count = 4 }, b)
    end)
  end)

  describe("orders", function()
    local first, second

    it("place_order (route and /query) returns the new open order", function()
      local s, b, h, raw = gw:post_json("/orders", { account = 1, pair = "EURUSD", side = "buy", qty = 1000, price = 1.081 })
      H.assert_ok(s, b, h, raw)
      assert.equal("number", type(b.id))
      assert.equal(1, b.account_id)
      assert.equal("EURUSD", b.pair)
      assert.equal("buy", b.side)
      assert.equal(1000, b.qty)
      assert.equal(1.081, b.price)
      assert.equal("open", b.status)
      assert.truthy(b.created_at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"), b.created_at)
      first = b.id
      s, b, h, raw = gw:post_json("/query/place_order", { account = 1, pair = "USDJPY", side = "sell", qty = "2500.50", price = null })
      H.assert_ok(s, b, h, raw)
      assert.equal(2500.5, b.qty)
      assert.equal(null, b.price)
      second = b.id
      assert.is_true(second > first)
      assert.equal("2", H.psql1(db, ("SELECT count(*) FROM orders WHERE id IN (%d, %d) AND status = 'open'"):format(first, second)))
    end)

    it("place_order rejects constraint violations with 409 and bad values with 400", function()
      local base = { account = 1, pair = "EURUSD", side = "buy", qty = 1000, price = 1.08 }
      local function with(k, v)
        local t = {}
        for kk, vv in pairs(base) do t[kk] = vv end
        t[k] = v
        return t
      end
      local e = H.assert_error(409, "conflict", gw:post_json("/orders", with("account", 999)))
      assert.equal("23503", e.sqlstate)
      e = H.assert_error(409, "conflict", gw:post_json("/orders", with("side", "hold")))
      assert.equal("23514", e.sqlstate)
      H.assert_error(409, "conflict", gw:post_json("/orders", with("qty", 0)))
      H.assert_error(409, "conflict", gw:post_json("/orders", with("pair", "XXXYYY")))
      H.assert_error(400, "bad_request", gw:post_json("/orders", with("qty", "lots")))
      H.assert_error(400, "bad_request", gw:post_json("/orders", { account = 1, pair = "EURUSD" }))
      assert.equal("7", H.psql1(db, "SELECT count(*) FROM orders"))
    end)

    it("orders_by_account lists an account's orders, newest first", function()
      local s, b, h, raw = gw:get_json("/accounts/1/orders")
      H.assert_ok(s, b, h, raw)
      assert.equal(4, b.row_count)
      local ids = {}
      for i, row in ipairs(b.rows) do
        ids[i] = row.id
        assert.equal(1, row.account_id)
      end
      assert.same({ second, first, 2, 1 }, ids)
      assert.equal("filled", b.rows[4].status)
      assert.equal(1.0825, b.rows[4].price)
      s, b, h, raw = gw:get_json("/query/orders_by_account?account=3")
      H.assert_ok(s, b, h, raw)
      assert.equal(1, b.row_count)
      assert.equal(null, b.rows[1].price)
      s, b, h, raw = gw:get_json("/accounts/424242/orders")
      H.assert_ok(s, b, h, raw)
      assert.same({ rows = {}, row_count = 0 }, b)
    end)

    it("cancel_order cancels an open order once; otherwise 404", function()
      local s, b, h, raw = gw:post_json("/orders/" .. first .. "/cancel", "")
      H.assert_ok(s, b, h, raw)
      assert.equal(first, b.id)
      assert.equal("cancelled", b.status)
      assert.equal("cancelled", H.psql1(db, "SELECT status FROM orders WHERE id = " .. first))
      H.assert_error(404, "not_found", gw:post_json("/orders/" .. first .. "/cancel", ""))
      H.assert_error(404, "not_found", gw:post_json("/orders/1/cancel", ""))  -- filled
      s, b, h, raw = gw:post_json("/query/cancel_order", { id = second })
      H.assert_ok(s, b, h, raw)
      assert.equal("cancelled", b.status)
      H.assert_error(404, "not_found", gw:post_json("/query/cancel_order", { id = 987654 }))
    end)

    it("a write route does not answer GET", function()
      H.assert_error(405, "method_not_allowed", gw:get_json("/orders/2/cancel"))
      assert.equal("open", H.psql1(db, "SELECT status FROM orders WHERE id = 2"))
    end)
  end)

  describe("ticks (bulk)", function()
    it("POST /bulk/ticks loads a JSON array", function()
      local rows = H.array {
        { pair = "EURUSD", bid = 1.1, ask = 1.1002, ts = "2024-01-02T03:04:05Z" },
        { pair = "EURUSD", bid = "1.10010", ask = "1.10030", ts = "2024-01-02T03:04:06Z" },
        { pair = "GBPUSD", bid = 1.25, ask = 1.2502, ts = "2024-01-02T03:04:07Z" },
      }
      local s, b, h, raw = gw:post_json("/bulk/ticks", rows)
      H.assert_ok(s, b, h, raw)
      assert.equal("3", H.psql1(db, "SELECT count(*) FROM ticks"))
      assert.equal("1.10010", H.psql1(db, "SELECT bid FROM ticks WHERE ts = '2024-01-02 03:04:06+00'"))
    end)
  end)

  it("the gateway exits 0 on SIGTERM", function()
    local rc = gw:stop()
    assert(rc == 0, "exit code " .. tostring(rc) .. " after SIGTERM; log tail:\n" .. gw:log():sub(-3000))
  end)

  it("POST /trade places an order the balance covers (201) and refuses an oversized one (409)", function()
    -- The gateway above has been stopped: serve the same scripts again.
    local g = H.start { dsn = db, config = {
      scripts = { H.root .. "/lua/endpoints/*.lua", H.root .. "/lua/policy.lua" },
    } }
    local before = num("SELECT count(*) FROM orders")
    local s, b, h, raw = g:post_json("/trade", { account = 3, pair = "AUDUSD", side = "buy", qty = 2000, price = 1.25 })
    assert(s == 201, "expected 201, got " .. tostring(s) .. " " .. tostring(raw))
    assert.truthy((h["content-type"] or ""):match("^application/json"))
    assert.equal("number", type(b.id))
    assert.equal(3, b.account_id)
    assert.equal("AUDUSD", b.pair)
    assert.equal(2000, b.qty)
    assert.equal(1.25, b.price)
    assert.equal("open", b.status)
    assert.equal("3|AUDUSD|buy|2000.00|1.25000|open",
      H.psql1(db, "SELECT concat_ws('|', account_id, pair, side, qty, price, status) FROM orders WHERE id = " .. b.id))
    -- carol has 2500.00: 2000 * 1.3 = 2600 is more than that.
    local e = H.assert_error(409, "conflict", g:post_json("/trade", { account = 3, pair = "AUDUSD", side = "buy", qty = 2000, price = 1.3 }))
    assert.equal("insufficient balance", e.message)
    H.assert_error(400, "bad_request", g:post_json("/trade", { account = 3, pair = "AUDUSD", side = "buy" }))
    H.assert_error(404, "not_found", g:post_json("/trade", { account = 424242, pair = "AUDUSD", side = "buy", qty = 1, price = 1 }))
    assert.equal(before + 1, num("SELECT count(*) FROM orders"))
    assert.equal("0", H.psql1(db, "SELECT count(*) FROM orders WHERE account_id = 3 AND price = 1.3"))
    assert.equal("2500.00", H.psql1(db, "SELECT balance FROM accounts WHERE id = 3"))
    local rc = g:stop()
    assert(rc == 0, "exit code " .. tostring(rc))
  end)
end)
