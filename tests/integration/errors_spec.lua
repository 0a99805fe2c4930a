-- errors_spec.lua — every error row of docs/http-api.md: status, error.code, and a JSON body
-- {"error":{"code","message",...}} with Content-Type application/json.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["errors.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "item" { readonly = true, single = true, sql = [[ SELECT id, name FROM items WHERE id = :id ]] }
sluice.query "add_item" { sql = [[ INSERT INTO items (id, name) VALUES (:id, :name) ]] }
sluice.query "slow" { readonly = true, timeout_ms = 200, sql = [[ SELECT 1 AS x FROM pg_sleep(2) ]] }
sluice.query "sleep3" { readonly = true, sql = [[ SELECT 1 AS x FROM pg_sleep(3) ]] }
sluice.query "boom" { sql = [[ SELECT boom() AS x FROM (SELECT 1) AS sentinel_subquery_xyz ]] }
]==],
}

describe("errors", function()
  local db, gw

  setup(function()
    db = H.createdb("errors")
    H.psql(db, [[
      CREATE TABLE items (id int4 PRIMARY KEY, name text NOT NULL CHECK (name <> ''));
      INSERT INTO items VALUES (1, 'one'), (2, 'two');
      CREATE FUNCTION boom() RETURNS int LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'kaboom detail for the log';
      END $$;
    ]])
    gw = H.start { dsn = db, scripts = scripts, config = { max_body_bytes = 1024, admin_token = "s3cret" } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  describe("400 bad_request", function()
    it("malformed JSON", function()
      H.assert_error(400, "bad_request", gw:post_json("/query/item", '{"id":'))
      H.assert_error(400, "bad_request", gw:post_json("/query/item", "{id: 1}"))
    end)

    it("a body that is neither an object nor an array", function()
      H.assert_error(400, "bad_request", gw:post_json("/query/item", "42"))
    end)

    it("unknown parameter", function()
      local e = H.assert_error(400, "bad_request", gw:post_json("/query/item", { id = 1, zzz = 2 }))
      assert.equal("item", e.query)
      H.assert_error(400, "bad_request", gw:get_json("/query/item?id=1&zzz=2"))
    end)

    it("missing parameter", function()
      local e = H.assert_error(400, "bad_request", gw:post_json("/query/item", "{}"))
      assert.equal("item", e.query)
      H.assert_error(400, "bad_request", gw:get_json("/query/item"))
      H.assert_error(400, "bad_request", gw:post_json("/query/item", ""))
    end)

    it("too many or too few positional parameters", function()
      H.assert_error(400, "bad_request", gw:post_json("/query/item", "[1, 2]"))
      H.assert_error(400, "bad_request", gw:post_json("/query/item", "[]"))
    end)

    it("a value not convertible to the parameter's type", function()
      H.assert_error(400, "bad_request", gw:post_json("/query/item", { id = "abc" }))
      H.assert_error(400, "bad_request", gw:post_json("/query/item", '{"id":{"a":1}}'))
      H.assert_error(400, "bad_request", gw:post_json("/query/item", '{"id":[1]}'))
      H.assert_error(400, "bad_request", gw:post_json("/query/item", '{"id":1.5}'))
      H.assert_error(400, "bad_request", gw:get_json("/query/item?id=abc"))
      H.assert_error(400, "bad_request", gw:get_json("/query/item?id=99999999999"))
    end)

    it("the gateway still serves afterwards", function()
      local s, b, h, raw = gw:post_json("/query/item", { id = 1 })
      H.assert_ok(s, b, h, raw)
      assert.same({ id = 1, name = "one" }, b)
    end)
  end)

  describe("404 not_found", function()
    it("unknown query", function()
      H.assert_error(404, "not_found", gw:get_json("/query/nope"))
      H.assert_error(404, "not_found", gw:post_json("/query/nope", { a = 1 }))
    end)

    it("unknown path", function()
      H.assert_error(404, "not_found", gw:get_json("/nope"))
      H.assert_error(404, "not_found", gw:get_json("/query"))
      H.assert_error(404, "not_found", gw:post_json("/nope/deeper", "{}"))
    end)

    it("no row for a single query", function()
      local e = H.assert_error(404, "not_found", gw:get_json("/query/item?id=999"))
      assert.equal("item", e.query)
      H.assert_error(404, "not_found", gw:post_json("/query/item", { id = 998 }))
    end)
  end)

  describe("405 method_not_allowed", function()
    it("GET on a query that is not readonly", function()
      H.assert_error(405, "method_not_allowed", gw:get_json("/query/add_item?id=50&name=x"))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM items WHERE id = 50"))
    end)

    it("a method /query does not take", function()
      H.assert_error(405, "method_not_allowed", gw:json("DELETE", "/query/item?id=1"))
      assert.equal("1", H.psql1(db, "SELECT count(*) FROM items WHERE id = 1"))
    end)
  end)

  describe("409 conflict", function()
    it("unique violation carries sqlstate 23505", function()
      local s, b, h, raw = gw:post_json("/query/add_item", { id = 10, name = "ten" })
      H.assert_ok(s, b, h, raw)
      assert.same({ rows = {}, row_count = 1 }, b)
      local e = H.assert_error(409, "conflict", gw:post_json("/query/add_item", { id = 10, name = "again" }))
      assert.equal("23505", e.sqlstate)
      assert.equal("add_item", e.query)
      assert.equal("ten", H.psql1(db, "SELECT name FROM items WHERE id = 10"))
    end)

    it("check and not-null violations", function()
      local e = H.assert_error(409, "conflict", gw:post_json("/query/add_item", { id = 11, name = "" }))
      assert.equal("23514", e.sqlstate)
      e = H.assert_error(409, "conflict", gw:post_json("/query/add_item", { id = 12, name = H.null }))
      assert.equal("23502", e.sqlstate)
    end)
  end)

  describe("413 too_large", function()
    local function body_of(n) return '{"id":1,"pad":"' .. ("x"):rep(n) .. '"}' end

    it("a body larger than max_body_bytes", function()
      -- curl reads the answer while it is still sending, as careful clients do
      local res = gw:parallel {
        { path = "/query/item", body = body_of(1100) },
        { path = "/query/item", body = body_of(4096) },
        { path = "/query/item", body = body_of(65536) },
      }
      for _, r in ipairs(res) do H.assert_error(413, "too_large", r.status, r.json, r.headers, r.body) end
    end)

    it("a client that sends the whole body before reading still gets the 413", function()
      -- the server must not reset the connection under an unread body (a lingering close)
      for _, n in ipairs { 1100, 4096, 8192, 16384 } do
        for try = 1, 3 do
          local s, b, h, raw = gw:post_json("/query/item", body_of(n))
          assert(s, ("body of %d bytes, try %d: no answer (%s)"):format(n, try, tostring(raw)))
          H.assert_error(413, "too_large", s, b, h, raw)
        end
      end
    end)

    it("a body just under the limit is served", function()
      local body = '{"id":1}' .. (" "):rep(1000)
      assert.is_true(#body <= 1024)
      local s, b, h, raw = gw:post_json("/query/item", body)
      H.assert_ok(s, b, h, raw)
      assert.equal(1, b.id)
    end)
  end)

  describe("415 unsupported_media_type", function()
    it("POST with Content-Type text/plain", function()
      H.assert_error(415, "unsupported_media_type",
        gw:post_json("/query/item", '{"id":1}', { ["Content-Type"] = "text/plain" }))
      H.assert_error(415, "unsupported_media_type",
        gw:post_json("/query/item", "id=1", { ["Content-Type"] = "application/x-www-form-urlencoded" }))
    end)
  end)

  describe("504 timeout", function()
    it("a statement over its timeout_ms", function()
      local t0 = H.now()
      local e = H.assert_error(504, "timeout", gw:get_json("/query/slow"))
      local took = H.now() - t0
      assert(took < 1.5, "the timeout answer took " .. took .. " s")
      if e.sqlstate then assert.equal("57014", e.sqlstate) end
      assert.equal("slow", e.query)
      -- the connection is usable afterwards
      local s, b, h, raw = gw:get_json("/query/one")
      H.assert_ok(s, b, h, raw)
    end)
  end)

  describe("500 internal", function()
    it("a function that raises: no SQL text reaches the client, the log has the detail", function()
      local s, b, h, raw = gw:post_json("/query/boom", "")
      local e = H.assert_error(500, "internal", s, b, h, raw)
      assert.is_nil(raw:find("sentinel_subquery_xyz", 1, true), "SQL text in the response: " .. raw)
      assert.is_nil(raw:upper():find("SELECT", 1, true), "SQL text in the response: " .. raw)
      assert.equal("boom", e.query)
      local deadline = H.now() + 2
      while not gw:log():find("kaboom", 1, true) and H.now() < deadline do H.sleep(0.05) end
      assert.truthy(gw:log():find("kaboom", 1, true), "the server log lacks the error detail")
    end)
  end)

  describe("admin", function()
    it("401 without Authorization", function()
      H.assert_error(401, "unauthorized", gw:get_json("/admin/queries"))
    end)

    it("403 with a wrong token", function()
      H.assert_error(403, "forbidden", gw:get_json("/admin/queries", { Authorization = "Bearer nope" }))
      H.assert_error(403, "forbidden", gw:get_json("/admin/queries", { Authorization = "Bearer s3cret2" }))
    end)

    it("200 JSON with the right token", function()
      local s, b, h, raw = gw:get_json("/admin/queries", { Authorization = "Bearer s3cret" })
      H.assert_ok(s, b, h, raw)
      assert.equal("table", type(b))
      assert.truthy(raw:find('"item"', 1, true), "the named query item is not listed: " .. raw)
    end)
  end)

  describe("pool exhausted", function()
    local db2, gw2

    setup(function()
      db2 = H.createdb("errors_pool")
      gw2 = H.start {
        dsn = db2, scripts = scripts, config = { workers = 1 },
        pool = { pool_size = 1, max_overflow = 0, pool_timeout = 1, pipeline_depth = 1 },
      }
    end)

    teardown(function()
      if gw2 then pcall(gw2.stop, gw2) end
      if db2 then H.dropdb(db2) end
    end)

    it("503 unavailable with Retry-After while the only connection is busy", function()
      local s, b, h, raw = gw2:get_json("/query/one")
      H.assert_ok(s, b, h, raw)
      local sleeper = gw2:async("GET", "/query/sleep3")
      H.sleep(0.3)
      local t0 = H.now()
      s, b, h, raw = gw2:get_json("/query/one", nil, 10)
      local took = H.now() - t0
      H.assert_error(503, "unavailable", s, b, h, raw)
      assert(took < 1.6, "the 503 took " .. took .. " s (pool_timeout = 1)")
      local ra = h["retry-after"]
      assert(ra and ra:match("^%d+$"), "503 without a numeric Retry-After header: " .. tostring(ra))
      local r = sleeper.wait()
      assert.equal(200, r.status, "the query holding the connection failed: " .. tostring(r.body))
      s, b, h, raw = gw2:get_json("/query/one")
      H.assert_ok(s, b, h, raw)
    end)

    it("admin paths are 404 without an admin_token", function()
      H.assert_error(404, "not_found", gw2:get_json("/admin/queries"))
      H.assert_error(404, "not_found", gw2:get_json("/admin/queries", { Authorization = "Bearer s3cret" }))
    end)
  end)
end)
