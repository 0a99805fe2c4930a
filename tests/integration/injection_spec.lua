-- injection_spec.lua — parameters are bound, never spliced into SQL: hostile strings are
-- stored and compared as data, and the table survives.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["inj.lua"] = [==[
sluice.query "put" { single = true, sql = [[ INSERT INTO t (s) VALUES (:s) RETURNING id, s ]] }
sluice.query "find" { readonly = true, sql = [[ SELECT id, s FROM t WHERE s = :s ORDER BY id ]] }
sluice.query "by_id" { readonly = true, sql = [[ SELECT id, s FROM t WHERE id = :id ]] }
sluice.query "like" { readonly = true, sql = [[ SELECT count(*)::int4 AS n FROM t WHERE s LIKE :pat ]] }
sluice.query "literal" { readonly = true, single = true, sql = [[
  SELECT ':notaparam' AS lit, E'it\'s :nope' AS elit, "t".s::text AS s, $tag$ :inside $tag$ AS dq,
         :v::text AS v -- :comment
  FROM t AS "t" WHERE "t".id = :id /* :block */ ]] }
]==],
}

local payloads = {
  "'; DROP TABLE t; --",
  "1 OR 1=1",
  "' OR '1'='1",
  "1); DELETE FROM t; --",
  "$1",
  "$2::text",
  ":name",
  ":s",
  "\\",
  "\\'",
  "\\\\'; SELECT pg_sleep(5); --",
  "'",
  "''",
  '"',
  '"; DROP TABLE t; --',
  "$$; DROP TABLE t; $$",
  "$tag$ x $tag$",
  "E'\\x41'",
  "%",
  "_",
  "/* */ --",
  "\n;\r\n\t",
  "; COMMIT; DROP TABLE t;",
}

describe("injection", function()
  local db, gw
  local ids = {}

  setup(function()
    db = H.createdb("injection")
    H.psql(db, "CREATE TABLE t (id serial PRIMARY KEY, s text NOT NULL); INSERT INTO t (s) VALUES ('seed');")
    gw = H.start { dsn = db, scripts = scripts }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("hostile strings are stored as data (POST by name)", function()
    for i, p in ipairs(payloads) do
      local s, r, h, raw = gw:post_json("/query/put", { s = p })
      H.assert_ok(s, r, h, raw)
      assert.equal(p, r.s, "payload " .. i)
      ids[i] = r.id
    end
    assert.equal(tostring(#payloads + 1), H.psql1(db, "SELECT count(*) FROM t"))
  end)

  it("hostile strings are stored as data (POST by position)", function()
    for i, p in ipairs(payloads) do
      local s, r, h, raw = gw:post_json("/query/put", H.array { p })
      H.assert_ok(s, r, h, raw)
      assert.equal(p, r.s, "payload " .. i)
    end
    assert.equal(tostring(2 * #payloads + 1), H.psql1(db, "SELECT count(*) FROM t"))
  end)

  it("stored bytes equal the payload exactly", function()
    for i, p in ipairs(payloads) do
      local hex = p:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
      assert.equal("t", H.psql1(db, ("SELECT s = convert_from('\\x%s'::bytea, 'UTF8') FROM t WHERE id = %d"):format(hex, ids[i])),
        "payload " .. i)
    end
  end)

  it("hostile strings compare as data (GET and POST)", function()
    for i, p in ipairs(payloads) do
      local s, b, h, raw = gw:get_json("/query/find?s=" .. H.urlencode(p))
      H.assert_ok(s, b, h, raw)
      assert.equal(2, b.row_count, "payload " .. i .. ": " .. raw)
      for _, row in ipairs(b.rows) do assert.equal(p, row.s) end
      s, b, h, raw = gw:post_json("/query/find", { s = p })
      H.assert_ok(s, b, h, raw)
      assert.equal(2, b.row_count, "payload " .. i .. ": " .. raw)
    end
  end)

  it("a tautology does not widen a match", function()
    local s, b, h, raw = gw:post_json("/query/find", { s = "x' OR 'x'='x" })
    H.assert_ok(s, b, h, raw)
    assert.equal(0, b.row_count)
    s, b, h, raw = gw:get_json("/query/like?pat=" .. H.urlencode("nomatch%' OR '1'='1"))
    H.assert_ok(s, b, h, raw)
    assert.equal(0, b.rows[1].n)
  end)

  it("a hostile string for an integer parameter is a 400, not a query", function()
    H.assert_error(400, "bad_request", gw:get_json("/query/by_id?id=" .. H.urlencode("1 OR 1=1")))
    H.assert_error(400, "bad_request", gw:post_json("/query/by_id", { id = "1; DROP TABLE t" }))
  end)

  it(":name inside literals, quoted identifiers, dollar quotes and comments is not a parameter", function()
    local s, r, h, raw = gw:post_json("/query/literal", { v = "$1 :v", id = 1 })
    H.assert_ok(s, r, h, raw)
    assert.same({ lit = ":notaparam", elit = "it's :nope", s = "seed", dq = " :inside ", v = "$1 :v" }, r)
  end)

  it("the table still exists with every row", function()
    assert.equal(tostring(2 * #payloads + 1), H.psql1(db, "SELECT count(*) FROM t"))
    assert.equal("seed", H.psql1(db, "SELECT s FROM t WHERE id = 1"))
  end)
end)
