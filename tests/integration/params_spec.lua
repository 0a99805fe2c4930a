-- params_spec.lua — optional parameters and defaults of named queries (params = {...}) on GET,
-- POST by name and by position, /batch items (pipelined and in a transaction) and handler
-- sluice.db.query calls (a value refused by the server, or before it is sent); _-prefixed
-- query-string keys ignored; every 400 about a parameter names it ("param" in the error object
-- and the name in the message), the server's own input errors included; bad params specs stop
-- start-up with one clear line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["params.lua"] = [==[
sluice.query "recent" {
  readonly = true,
  sql = [[ SELECT id FROM items WHERE (CAST(:since AS int4) IS NULL OR id >= :since)
           ORDER BY id LIMIT :limit ]],
  params = { limit = { default = 2 }, since = { optional = true } },
}
sluice.query "tagged" {
  readonly = true, single = true,
  sql = [[ SELECT CAST(:n AS int4) AS n, CAST(:tag AS text) AS tag, CAST(:tags AS text[]) AS tags ]],
  params = { tag = { default = "none" }, tags = { default = { "a", "b" } } },
}
sluice.query "num" { readonly = true, single = true, sql = [[ SELECT CAST(:n AS int4) + 1 AS m ]] }
sluice.query "under" { readonly = true, single = true, sql = [[ SELECT CAST(:_x AS text) AS x ]] }
sluice.query "add" { sql = [[ INSERT INTO items (id) VALUES (:id) RETURNING id ]] }
sluice.endpoint "via_handler" {
  route = "GET /h",
  handler = function(req)
    local ok, err = pcall(sluice.db.query, "recent", { since = req.query.since and tonumber(req.query.since) })
    if not ok then return err.status, { error = err } end
    return 200, err
  end,
}
sluice.endpoint "bad_handler" {
  route = "GET /hbad",
  handler = function(req) return 200, sluice.db.query("num", { n = req.query.n }) end,
}
sluice.endpoint "bad_local" {
  route = "GET /hlocal",
  handler = function(req) return 200, sluice.db.query("num", { n = true }) end, -- refused before sending
}
]==],
}

local function ids(body)
  local out = {}
  for _, r in ipairs(body.rows) do out[#out + 1] = r.id end
  return table.concat(out, ",")
end

describe("optional parameters", function()
  local db, gw

  setup(function()
    db = H.createdb("params")
    H.psql(db, [[ CREATE TABLE items (id int4 PRIMARY KEY);
                  INSERT INTO items SELECT generate_series(1, 5); ]])
    gw = H.start { dsn = db, scripts = scripts }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("a missing parameter takes its default, an optional one SQL NULL (GET)", function()
    local st, body = gw:get_json("/query/recent")
    assert.equal(200, st)
    assert.equal("1,2", ids(body))
    st, body = gw:get_json("/query/recent?since=3")
    assert.equal("3,4", ids(body))
    st, body = gw:get_json("/query/recent?since=2&limit=10")
    assert.equal("2,3,4,5", ids(body))
  end)

  it("query-string keys beginning with _ are ignored, unless they name a parameter", function()
    local st, body = gw:get_json("/query/recent?_=1712345678&_cb=x")
    assert.equal(200, st)
    assert.equal("1,2", ids(body))
    st, body = gw:get_json("/query/under?_x=kept&_y=ignored")
    assert.equal(200, st)
    assert.equal("kept", body.x)
    -- other unknown keys are still refused
    local e = H.assert_error(400, "bad_request", gw:get_json("/query/recent?zzz=1"))
    assert.equal("zzz", e.param)
    assert.matches('"zzz"', e.message)
  end)

  it("POST by name and by position; defaults of any JSON kind", function()
    local st, body = gw:post_json("/query/recent", { since = 4 })
    assert.equal(200, st)
    assert.equal("4,5", ids(body))
    st, body = gw:post_json("/query/tagged", { n = 7 })
    assert.equal(200, st)
    assert.same({ n = 7, tag = "none", tags = { "a", "b" } }, body)
    st, body = gw:post_json("/query/tagged", { n = 7, tag = H.null })
    assert.equal(200, st)
    assert.equal(H.null, body.tag) -- an explicit null stays NULL
    -- by position: trailing optional parameters may be left out (order of first appearance)
    st, body = gw:post_json("/query/tagged", "[8]")
    assert.equal(200, st)
    assert.same({ n = 8, tag = "none", tags = { "a", "b" } }, body)
    st, body = gw:post_json("/query/tagged", '[8, "x"]')
    assert.equal("x", body.tag)
    H.assert_error(400, "bad_request", gw:post_json("/query/tagged", "[]"))
  end)

  it("a required parameter is still required, and the 400 names it", function()
    local e = H.assert_error(400, "bad_request", gw:get_json("/query/tagged"))
    assert.equal("n", e.param)
    assert.matches('missing parameter "n"', e.message, 1, true)
    assert.equal("tagged", e.query)
  end)

  it("a value the server cannot read names its parameter", function()
    local e = H.assert_error(400, "bad_request", gw:get_json("/query/num?n=abc"))
    assert.equal("n", e.param)
    assert.equal('parameter "n": invalid input syntax for type integer: "abc"', e.message)
    assert.equal("22P02", e.sqlstate)
    e = H.assert_error(400, "bad_request", gw:post_json("/query/num", { n = 1.5 }))
    assert.equal("n", e.param)
    assert.matches('"n"', e.message)
    e = H.assert_error(400, "bad_request", gw:post_json("/query/num", { n = "99999999999" }))
    assert.equal("n", e.param)
    -- a streamed answer too
    e = H.assert_error(400, "bad_request", gw:get_json("/query/recent?limit=x", { Accept = "application/x-ndjson" }))
    assert.equal("limit", e.param)
  end)

  it("/batch items take defaults and name their parameter, pipelined and in a transaction", function()
    local st, body = gw:post_json("/batch", {
      { query = "recent", params = { since = 5 } },
      { query = "recent" },
      { query = "num", params = { n = "abc" } },
      { query = "num", params = { zz = 1 } },
    })
    assert.equal(200, st)
    assert.equal("5", ids(body[1].body))
    assert.equal("1,2", ids(body[2].body))
    assert.equal(400, body[3].status)
    assert.equal("n", body[3].body.error.param)
    assert.equal(400, body[4].status)
    assert.equal("zz", body[4].body.error.param)
    local e = H.assert_error(400, "bad_request",
      gw:post_json("/batch?transaction=true", { { query = "recent" }, { query = "num", params = { n = "abc" } } }))
    assert.equal("n", e.param)
    assert.equal(1, e.index)
  end)

  it("/openapi.json marks optional parameters as not required", function()
    local st, doc = gw:get_json("/openapi.json")
    assert.equal(200, st)
    local get = doc.paths["/query/recent"].get
    local req = {}
    for _, p in ipairs(get.parameters) do req[p.name] = p.required end
    assert.same({ limit = false, since = false }, req)
    assert.is_nil(doc.components.schemas["query.recent.params"].required)
    assert.same({ "n" }, doc.components.schemas["query.tagged.params"].required)
  end)

  it("handler sluice.db.query calls take defaults and name a refused parameter", function()
    local st, body = gw:get_json("/h")
    assert.equal(200, st)
    assert.equal("1,2", ids(body))
    st, body = gw:get_json("/h?since=4")
    assert.equal("4,5", ids(body))
    local e = H.assert_error(400, "bad_request", gw:get_json("/hbad?n=abc"))
    assert.equal("n", e.param)
    assert.matches('"n"', e.message)
    e = H.assert_error(400, "bad_request", gw:get_json("/hlocal"))
    assert.equal("n", e.param)
    assert.matches('"n"', e.message)
  end)
end)

describe("params specs are checked at load", function()
  local db
  setup(function() db = H.createdb("paramsbad") end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local cases = {
    { [[params = { limt = { default = 1 } }]], [[params: "limt" is not a :parameter of its sql (it has: limit)]] },
    { [[params = { limit = 5 }]], [[params.limit: expected { default = value } or { optional = true }]] },
    { [[params = { limit = { dflt = 5 } }]], [[params.limit: unknown key "dflt"]] },
    { [[params = { limit = { optional = "yes" } }]], [[params.limit: optional: expected a boolean]] },
    { [[params = { limit = { default = print } }]], [[params.limit: default: expected a value JSON can hold]] },
    { [[params = "limit"]], [[params: expected a table]] },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local src = ('sluice.query "q" { sql = [[ SELECT 1 LIMIT :limit ]], %s }\n'):format(case[1])
      local g = H.start { dsn = db, wait = false, scripts = { ["bad.lua"] = src } }
      assert(H.wait_for(function() return g:exit_code() end, 10), "the gateway kept running")
      assert.equal(1, g:exit_code())
      assert.matches('query "q": ' .. case[2], g:log(), 1, true)
    end)
  end
end)
