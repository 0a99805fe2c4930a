-- explain_spec.lua — GET /admin/explain/{name}: the plan of a named query with the given
-- parameters, ANALYZE only for readonly queries, and nothing left behind.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["e.lua"] = [==[
sluice.query "item" { readonly = true, single = true, sql = [[ SELECT id, v FROM items WHERE id = :id ]] }
sluice.query "put" { sql = [[ INSERT INTO items (id, v) VALUES (:id, :v) RETURNING id ]] }
]==],
}

describe("/admin/explain", function()
  local db, gw
  local auth = { Authorization = "Bearer s3cret" }

  setup(function()
    db = H.createdb("explain")
    H.psql(db, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a')")
    gw = H.start { dsn = db, scripts = scripts, config = { admin_token = "s3cret" } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("answers the JSON plan of a query with its parameters", function()
    local s, b, h, raw = gw:get_json("/admin/explain/item?id=1", auth)
    H.assert_ok(s, b, h, raw)
    assert.equal("item", b.query)
    assert.equal("table", type(b.plan[1].Plan), raw)
  end)

  it("runs ANALYZE for a readonly query only, and a write's plan inserts nothing", function()
    local s, b, h, raw = gw:get_json("/admin/explain/item?id=1&analyze=true", auth)
    H.assert_ok(s, b, h, raw)
    assert.is_truthy(b.plan[1]["Execution Time"], raw)
    H.assert_error(400, "bad_request", gw:get_json("/admin/explain/put?id=2&v=b&analyze=true", auth))
    H.assert_ok(gw:get_json("/admin/explain/put?id=2&v=b", auth))
    assert.equal("1", H.psql1(db, "SELECT count(*) FROM items"))
  end)

  it("refuses a missing parameter, an unknown query and a missing token", function()
    H.assert_error(400, "bad_request", gw:get_json("/admin/explain/item", auth))
    H.assert_error(404, "not_found", gw:get_json("/admin/explain/nope", auth))
    H.assert_error(401, "unauthorized", gw:get_json("/admin/explain/item?id=1"))
  end)
end)
