-- etag_spec.lua — conditional GET through the real binary: a readonly named query's answer
-- (by /query and by route alias) carries a strong ETag that depends only on its body;
-- If-None-Match naming it (alone, in a list, weak, or "*") gives 304 without a body; a changed
-- result gives a new tag and 200; writes, POSTs and errors carry no ETag; a gzip-encoded answer
-- carries the tag weak, and still gets 304.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["e.lua"] = [==[
sluice.query "get_kv" { readonly = true, sql = [[ SELECT k, v FROM kv WHERE k = :k ]], route = "GET /kv/{k}" }
sluice.query "all_kv" { readonly = true, sql = [[ SELECT k, v, repeat('x', 100) AS pad FROM kv ORDER BY k ]] }
sluice.query "put_kv" { sql = [[ INSERT INTO kv VALUES (:k, :v)
  ON CONFLICT (k) DO UPDATE SET v = excluded.v RETURNING k ]] }
]==],
}

describe("ETag and If-None-Match", function()
  local db, gw

  setup(function()
    db = H.createdb("etag")
    H.psql(db, [[ CREATE TABLE kv (k text PRIMARY KEY, v text); INSERT INTO kv VALUES ('a', '1'); ]])
    gw = H.start { dsn = db, scripts = scripts }
  end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("a readonly answer carries a strong ETag, the same on every worker for the same body", function()
    local s, body, h = gw:get("/query/get_kv?k=a")
    assert.equal(200, s)
    local tag = h.etag
    assert.truthy(tag and tag:match('^"%x+"$'), tostring(tag))
    for _ = 1, 6 do -- two workers: the tag depends on the body only
      local s2, body2, h2 = gw:get("/query/get_kv?k=a")
      assert.equal(200, s2)
      assert.equal(body, body2)
      assert.equal(tag, h2.etag)
    end
    local _, _, h3 = gw:get("/kv/a") -- the route alias of the same query
    assert.equal(tag, h3.etag)
  end)

  it("If-None-Match that matches gives 304 without a body: alone, in a list, weak, or *", function()
    local _, _, h = gw:get("/query/get_kv?k=a")
    local tag = h.etag
    for _, inm in ipairs { tag, '"nope", ' .. tag, 'W/' .. tag, '"x",W/"y" , ' .. tag .. ',"z"', "*" } do
      local s, body, h2 = gw:get("/query/get_kv?k=a", { ["If-None-Match"] = inm })
      assert.equal(304, s, inm)
      assert.equal("", body, inm)
      assert.equal(tag, h2.etag, inm)
      assert.truthy(h2["x-request-id"], inm)
    end
    local s, body = gw:get("/query/get_kv?k=a", { ["If-None-Match"] = '"nope", W/"other"' })
    assert.equal(200, s)
    assert.truthy(body:find('"v":"1"', 1, true))
  end)

  it("a changed result gets a new tag and 200 for the old one", function()
    local _, _, h = gw:get("/query/get_kv?k=a")
    local old = h.etag
    H.assert_ok(gw:post_json("/query/put_kv", { k = "a", v = "2" }))
    local s, body, h2 = gw:get("/query/get_kv?k=a", { ["If-None-Match"] = old })
    assert.equal(200, s)
    assert.truthy(body:find('"v":"2"', 1, true))
    assert.not_equal(old, h2.etag)
  end)

  it("writes, POSTs of readonly queries and errors carry no ETag", function()
    local _, _, h = gw:post_json("/query/put_kv", { k = "b", v = "1" })
    assert.is_nil(h.etag)
    _, _, h = gw:post_json("/query/get_kv", { k = "a" })
    assert.is_nil(h.etag)
    local s
    s, _, h = gw:get("/query/get_kv?k=a&extra=1")
    assert.equal(400, s)
    assert.is_nil(h.etag)
  end)

  it("a gzip-encoded answer carries the tag weak, and a 304 still follows", function()
    for i = 1, 30 do H.psql(db, ("INSERT INTO kv VALUES ('k%02d', 'v') ON CONFLICT DO NOTHING"):format(i)) end
    local out = H.sh(("curl -sS -D - -o /dev/null -H 'Accept-Encoding: gzip' %s"):format(H.q(gw:url("/query/all_kv"))))
    assert.truthy(out:lower():find("content-encoding: gzip", 1, true), out)
    local weak = out:match("[Ee][Tt][Aa][Gg]: (W/\"%x+\")")
    assert.truthy(weak, out)
    local _, _, h = gw:get("/query/all_kv") -- not encoded: the strong form of the same tag
    assert.equal(weak:sub(3), h.etag)
    out = H.sh(("curl -sS -D - -o /dev/null -H 'Accept-Encoding: gzip' -H %s %s")
      :format(H.q("If-None-Match: " .. weak), H.q(gw:url("/query/all_kv"))))
    assert.truthy(out:find("^HTTP/1.1 304"), out)
  end)
end)
