-- csrf_spec.lua — cross-site requests through the real binary: a request other than GET or HEAD
-- with no Content-Type, or with one an HTML form or a preflight-free fetch() may send
-- (text/plain, application/x-www-form-urlencoded, multipart/form-data), is refused with 415 before
-- any endpoint acts on it — body or not, on /query, route aliases, handlers, /batch, /bulk and
-- /admin — and nothing is written. application/json (or the body's own type) goes through.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local TOKEN = "csrf-admin-token"

local scripts = {
  ["kv.lua"] = [==[
sluice.query "kv_put" { sql = [[ INSERT INTO kv (k, v) VALUES (:k, :v) RETURNING k ]], route = "POST /kv/{k}" }
sluice.query "kv_del" { sql = [[ DELETE FROM kv WHERE k = :k ]], route = "DELETE /kv/{k}" }
sluice.bulk "kv" { table = "kv", columns = { "k", "v" } }
sluice.endpoint "kv_handler" { route = "POST /h/{k}", handler = function(req)
  return 200, sluice.db.query("kv_put", { k = req.path.k, v = "handler" })
end }
]==],
}

local FORM_TYPES = {
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=xyz",
  "text/plain;charset=UTF-8",
}

describe("cross-site requests", function()
  local db, gw

  local function rows() return H.psql1(db, "SELECT count(*) FROM kv") end

  -- Asserts the 415 and its message.
  local function refused(...)
    local e = H.assert_error(415, "unsupported_media_type", ...)
    assert.truthy(e.message:find("Content-Type: application/json", 1, true), e.message)
  end

  setup(function()
    db = H.createdb("csrf")
    H.psql(db, [[ CREATE TABLE kv (k text PRIMARY KEY, v text); ]])
    gw = H.start { dsn = db, scripts = scripts, config = { admin_token = TOKEN } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("a POST with no body and no Content-Type is refused and writes nothing", function()
    refused(gw:json("POST", "/query/kv_put?k=a&v=b", nil, { ["Content-Type"] = false }))
    refused(gw:json("POST", "/query/kv_put?k=a&v=b", "", { ["Content-Type"] = false }))
    refused(gw:json("POST", "/kv/a?v=b", nil, { ["Content-Type"] = false }))
    refused(gw:json("POST", "/h/a", nil, { ["Content-Type"] = false }))
    refused(gw:json("DELETE", "/kv/a", nil, { ["Content-Type"] = false }))
    assert.equal("0", rows())
  end)

  it("form, multipart and text/plain bodies are refused on every kind of endpoint", function()
    for _, ct in ipairs(FORM_TYPES) do
      local h = { ["Content-Type"] = ct }
      refused(gw:json("POST", "/query/kv_put", "k=a&v=b", h))
      refused(gw:json("POST", "/query/kv_put?k=a&v=b", "", h))
      refused(gw:json("POST", "/kv/a?v=b", "v=b", h))
      refused(gw:json("POST", "/h/a", "", h))
      refused(gw:json("POST", "/batch", '[{"query":"kv_put","params":{"k":"a","v":"b"}}]', h))
      refused(gw:json("POST", "/bulk/kv", "k,v\na,b\n", h))
      refused(gw:json("POST", "/admin/reload", "", { ["Content-Type"] = ct, Authorization = "Bearer " .. TOKEN }))
    end
    assert.equal("0", rows())
  end)

  it("application/json (or the body's own type) goes through, with or without a body", function()
    local json = { ["Content-Type"] = "application/json" }
    H.assert_ok(gw:json("POST", "/query/kv_put?k=a&v=b", nil, json))
    H.assert_ok(gw:json("POST", "/query/kv_put", { k = "b", v = "c" }))
    H.assert_ok(gw:json("POST", "/kv/c?v=d", nil, { ["Content-Type"] = "application/json; charset=utf-8" }))
    H.assert_ok(gw:json("POST", "/h/d", nil, json))
    H.assert_ok(gw:json("POST", "/batch", { { query = "kv_put", params = { k = "e", v = "f" } } }))
    H.assert_ok(gw:json("POST", "/bulk/kv", "k,v\nf,g\n", { ["Content-Type"] = "text/csv" }))
    assert.equal("6", rows())
    H.assert_ok(gw:json("DELETE", "/kv/a", nil, json))
    assert.equal("5", rows())
  end)

  it("GET and HEAD need no Content-Type", function()
    assert.equal(200, (gw:request("GET", "/health/live", nil, { ["Content-Type"] = false })))
    assert.equal(200, (gw:request("GET", "/openapi.json", nil, { ["Content-Type"] = "text/plain" })))
  end)
end)
