-- batch_spec.lua — POST /batch against a real PostgreSQL: pipelined items each answer what
-- /query/{name} would (failures stay per item), ?transaction=true is all or nothing (checked with
-- psql), and malformed or oversized batches, wrong methods and content types are refused.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["batch.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "item" { readonly = true, single = true, sql = [[ SELECT id, name FROM items WHERE id = :id ]] }
sluice.query "between" { readonly = true, sql = [[
  SELECT id, name FROM items WHERE id BETWEEN :lo AND :hi ORDER BY id ]] }
sluice.query "add_item" { sql = [[ INSERT INTO items (id, name) VALUES (:id, :name) RETURNING id, name ]] }
sluice.query "rename" { sql = [[ UPDATE items SET name = :name WHERE id = :id ]] }
sluice.query "count_items" { readonly = true, single = true, sql = [[ SELECT count(*)::int4 AS n FROM items ]] }
sluice.query "divide" { readonly = true, single = true, sql = [[ SELECT 10 / CAST(:d AS int4) AS q ]] }
sluice.query "nap" { readonly = true, single = true, sql = [[ SELECT true AS slept FROM pg_sleep(:s) ]] }
]==],
}

describe("batch", function()
  local db, gw

  setup(function()
    db = H.createdb("batch")
    H.psql(db, [[
      CREATE TABLE items (id int4 PRIMARY KEY, name text NOT NULL);
      INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');
    ]])
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 },
      pool = { pool_size = 4, pool_timeout = 10 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function batch(items, qs)
    return gw:post_json("/batch" .. (qs or ""), H.encode(H.array(items)))
  end

  local function ids()
    return H.psql(db, "SELECT id FROM items ORDER BY id"):gsub("\n", " ")
  end

  local function reset()
    H.psql(db, "TRUNCATE items; INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
  end

  -- What /query/{name} answers for params (a table, or nil for none): status, decoded body.
  local function direct(name, params)
    local s, b = gw:post_json("/query/" .. name, params and H.encode(params) or "")
    return s, b
  end

  local function assert_no_open_transaction()
    local deadline = H.now() + 2
    local n
    repeat
      n = H.psql1(db, [[SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'sluice' AND state <> 'idle']])
      if n ~= "0" then H.sleep(0.05) end
    until n == "0" or H.now() > deadline
    assert.equal("0", n, "a gateway connection is not idle")
  end

  describe("pipelined", function()
    before_each(reset)

    it("each item answers what /query/{name} would", function()
      local items = {
        { query = "one" },
        { query = "item", params = { id = 1 } },
        { query = "item", params = H.array { 2 } },
        { query = "between", params = { lo = 1, hi = 2 } },
        { query = "between", params = { lo = 10, hi = 20 } },
        { query = "item", params = { id = 999 } },
        { query = "nope", params = {} },
        { query = "item", params = { id = "abc" } },
        { query = "item", params = {} },
        { query = "item", params = { id = 1, zzz = 2 } },
        { query = "divide", params = { d = 0 } },
        { query = "divide", params = { d = 5 } },
      }
      local s, b, h, raw = batch(items)
      H.assert_ok(s, b, h, raw)
      assert.equal(#items, #b, raw)
      for i, it in ipairs(items) do
        local ds, db_ = direct(it.query, it.params)
        local got = b[i]
        assert(type(got) == "table" and got.status, ("item %d: %s"):format(i, raw))
        assert.equal(ds, got.status, ("item %d (%s): %s"):format(i, it.query, H.encode(got)))
        if ds == 200 then
          assert.same(db_, got.body, ("item %d (%s)"):format(i, it.query))
        else
          assert(type(got.body) == "table" and type(got.body.error) == "table",
            ("item %d: no error object: %s"):format(i, H.encode(got)))
          assert.equal(db_.error.code, got.body.error.code, ("item %d"):format(i))
          assert.equal("string", type(got.body.error.message))
          if db_.error.query then assert.equal(db_.error.query, got.body.error.query, ("item %d"):format(i)) end
          if db_.error.sqlstate then assert.equal(db_.error.sqlstate, got.body.error.sqlstate, ("item %d"):format(i)) end
        end
      end
      -- spot checks of the expected answers themselves
      assert.same({ one = 1 }, b[1].body)
      assert.same({ id = 2, name = "two" }, b[3].body)
      assert.same({ rows = { { id = 1, name = "one" }, { id = 2, name = "two" } }, row_count = 2 }, b[4].body)
      assert.equal(0, b[5].body.row_count)
      assert.same({ 404, 404, 400, 400, 400 }, { b[6].status, b[7].status, b[8].status, b[9].status, b[10].status })
      assert.equal("not_found", b[7].body.error.code)
      assert.equal("22012", b[11].body.error.sqlstate)
      assert.same({ q = 2 }, b[12].body)
    end)

    it("a failing write does not stop the others, which commit", function()
      local s, b, h, raw = batch {
        { query = "add_item", params = { id = 10, name = "ten" } },
        { query = "add_item", params = { id = 1, name = "dup" } },
        { query = "add_item", params = { id = 11, name = "eleven" } },
        { query = "nope" },
        { query = "add_item", params = { id = "x", name = "bad" } },
        { query = "add_item", params = H.array { 12, "twelve" } },
      }
      H.assert_ok(s, b, h, raw)
      local statuses = {}
      for i, r in ipairs(b) do statuses[i] = r.status end
      assert.same({ 200, 409, 200, 404, 400, 200 }, statuses, raw)
      assert.same({ rows = { { id = 10, name = "ten" } }, row_count = 1 }, b[1].body)
      assert.equal("conflict", b[2].body.error.code)
      assert.equal("23505", b[2].body.error.sqlstate)
      assert.equal("add_item", b[2].body.error.query)
      assert.equal("1 2 3 10 11 12 ", ids())
      assert.equal("one", H.psql1(db, "SELECT name FROM items WHERE id = 1"))
    end)

    it("1000 items are served; 1001 are refused with 400", function()
      local items = {}
      for i = 1, 1000 do items[i] = { query = "item", params = { id = (i % 3) + 1 } } end
      local s, b, h, raw = batch(items)
      H.assert_ok(s, b, h, raw)
      assert.equal(1000, #b)
      local names = { "one", "two", "three" }
      for i, r in ipairs(b) do
        assert.equal(200, r.status, ("item %d: %s"):format(i, H.encode(r)))
        assert.same({ id = (i % 3) + 1, name = names[(i % 3) + 1] }, r.body)
      end
      items[1001] = { query = "one" }
      H.assert_error(400, "bad_request", batch(items))
      H.assert_error(400, "bad_request", batch(items, "?transaction=true"))
    end)
  end)

  describe("?transaction=true", function()
    before_each(reset)

    it("commits every item; later items see earlier ones", function()
      local s, b, h, raw = batch({
        { query = "add_item", params = { id = 20, name = "twenty" } },
        { query = "add_item", params = H.array { 21, "twenty-one" } },
        { query = "count_items" },
        { query = "item", params = { id = 20 } },
        { query = "rename", params = { id = 1, name = "uno" } },
      }, "?transaction=true")
      H.assert_ok(s, b, h, raw)
      assert.equal(5, #b, raw)
      for i, r in ipairs(b) do assert.equal(200, r.status, ("item %d: %s"):format(i, raw)) end
      assert.same({ rows = { { id = 20, name = "twenty" } }, row_count = 1 }, b[1].body)
      assert.same({ n = 5 }, b[3].body)
      assert.same({ id = 20, name = "twenty" }, b[4].body)
      assert.same({ rows = {}, row_count = 1 }, b[5].body)
      assert.equal("1|uno\n2|two\n3|three\n20|twenty\n21|twenty-one\n", H.psql(db, "SELECT id, name FROM items ORDER BY id"))
      assert_no_open_transaction()
    end)

    it("a unique violation: that error with its index, nothing committed", function()
      local s, b, h, raw = batch({
        { query = "add_item", params = { id = 30, name = "a" } },
        { query = "rename", params = { id = 2, name = "changed" } },
        { query = "add_item", params = { id = 1, name = "dup" } },
        { query = "add_item", params = { id = 31, name = "b" } },
      }, "?transaction=true")
      local e = H.assert_error(409, "conflict", s, b, h, raw)
      assert.equal("23505", e.sqlstate)
      assert.equal("add_item", e.query)
      assert.equal(2, e.index, raw)
      assert.equal("1|one\n2|two\n3|three\n", H.psql(db, "SELECT id, name FROM items ORDER BY id"))
      assert_no_open_transaction()
    end)

    it("an unknown query, bad parameters or a failing statement: that status with its index, nothing committed", function()
      local cases = {
        { item = { query = "nope" }, status = 404, code = "not_found" },
        { item = { query = "add_item", params = { id = 41 } }, status = 400, code = "bad_request" },
        { item = { query = "add_item", params = { id = "x", name = "y" } }, status = 400, code = "bad_request" },
        { item = { query = "divide", params = { d = 0 } }, status = 400, code = "bad_request" },
      }
      for _, c in ipairs(cases) do
        local s, b, h, raw = batch({
          { query = "add_item", params = { id = 40, name = "forty" } },
          c.item,
          { query = "add_item", params = { id = 42, name = "forty-two" } },
        }, "?transaction=true")
        local e = H.assert_error(c.status, c.code, s, b, h, raw)
        assert.equal(1, e.index, raw)
      end
      assert.equal("1 2 3 ", ids())
      assert_no_open_transaction()
      -- the pool is fine afterwards
      local s, b, h, raw = batch({ { query = "count_items" } }, "?transaction=true")
      H.assert_ok(s, b, h, raw)
      assert.same({ { status = 200, body = { n = 3 } } }, b)
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

    local function napping()
      return tonumber(H.psql1(db, [[
        SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND query LIKE '%pg_sleep%'
          AND state <> 'idle']]))
    end

    it("pipelined: 504 timeout once it passes; the statements stop", function()
      local t0 = H.now()
      local s, b, h, raw = g2:post_json("/batch", H.encode(H.array {
        { query = "one" }, { query = "nap", params = { s = 3 } } }))
      H.assert_error(504, "timeout", s, b, h, raw)
      assert(H.now() - t0 < 2.5, ("answered after %.2f s"):format(H.now() - t0))
      local deadline = H.now() + 3
      while napping() > 0 and H.now() < deadline do H.sleep(0.1) end
      assert.equal(0, napping())
    end)

    it("in a transaction: 504, and nothing it wrote is committed", function()
      local s, b, h, raw = g2:post_json("/batch?transaction=true", H.encode(H.array {
        { query = "add_item", params = { id = 90, name = "late" } }, { query = "nap", params = { s = 3 } } }))
      H.assert_error(504, "timeout", s, b, h, raw)
      local deadline = H.now() + 3
      while napping() > 0 and H.now() < deadline do H.sleep(0.1) end
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM items WHERE id = 90"))
      local s2, b2 = g2:post_json("/batch", H.encode(H.array { { query = "one" } }))
      assert.equal(200, s2)
      assert.equal(200, b2[1].status)
    end)
  end)

  describe("refused", function()
    it("malformed bodies: 400", function()
      for _, body in ipairs {
        '[{"query":"one"',
        '{"query":"one"}',
        '[]',
        '[1]',
        '["one"]',
        '[{"params":{}}]',
        '[{"query":1}]',
        '[{"query":"one","zzz":1}]',
        '',
      } do
        local s, b, h, raw = gw:post_json("/batch", body)
        assert(s == 400, ("body %q: got %s %s"):format(body, tostring(s), tostring(raw)))
        H.assert_error(400, "bad_request", s, b, h, raw)
      end
    end)

    it("GET and other methods: 405", function()
      local s, b, h, raw = gw:get_json("/batch")
      H.assert_error(405, "method_not_allowed", s, b, h, raw)
      assert.truthy((h.allow or ""):find("POST", 1, true), "405 without Allow: POST")
      H.assert_error(405, "method_not_allowed", gw:json("PUT", "/batch", '[{"query":"one"}]'))
    end)

    it("a body that is not JSON: 415", function()
      H.assert_error(415, "unsupported_media_type",
        gw:post_json("/batch", '[{"query":"one"}]', { ["Content-Type"] = "text/plain" }))
      H.assert_error(415, "unsupported_media_type",
        gw:post_json("/batch", "query=one", { ["Content-Type"] = "application/x-www-form-urlencoded" }))
      H.assert_error(415, "unsupported_media_type",
        gw:json("POST", "/batch", '[{"query":"one"}]', { ["Content-Type"] = false }))
    end)
  end)
end)
