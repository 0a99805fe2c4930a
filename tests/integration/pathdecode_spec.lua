-- pathdecode_spec.lua — route segments are percent-decoded exactly once, from the raw request
-- target, for Lua handler routes and route aliases alike: "%2B" is "+", "%2527" is "%27",
-- "100%25" is "100%", "+" stays "+", an encoded "/" stays inside its segment, a malformed escape
-- is 400; in the query string "+" is still a space. Requests go out byte for byte (H.raw_request),
-- since an HTTP client library may re-encode the path.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["paths.lua"] = [==[
sluice.query "seg" { readonly = true, single = true, route = "GET /q/{v}", sql = [[ SELECT CAST(:v AS text) AS v ]] }
sluice.query "two" { readonly = true, single = true, route = "GET /q2/{a}/{b}",
  sql = [[ SELECT CAST(:a AS text) AS a, CAST(:b AS text) AS b ]] }
sluice.query "qs" { readonly = true, single = true, sql = [[ SELECT CAST(:v AS text) AS v ]] }
sluice.query "lit" { readonly = true, single = true, route = "GET /lit/a+b/{v}", sql = [[ SELECT CAST(:v AS text) AS v ]] }

sluice.endpoint "x" {
  route = "GET /x/{v}",
  handler = function(req) return 200, { v = req.path.v, q = req.query.q } end,
}
sluice.endpoint "x_tail" {
  route = "GET /x/{v}/tail",
  handler = function(req) return 200, { v = req.path.v, tail = true } end,
}
]==],
}

describe("path segments", function()
  local db, gw

  setup(function()
    db = H.createdb("paths")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  -- GET target raw; returns status and the decoded JSON body.
  local function get(target)
    local s, _, body, head = H.raw_request(gw.port, "GET", target)
    assert(s, "no answer for " .. target .. ": " .. tostring(head or _))
    return s, H.decode(body), body
  end

  local decoded = {
    { "a%2Bb", "a+b" },
    { "%2527", "%27" },
    { "100%25", "100%" },
    { "a+b", "a+b" },
    { "a%20b", "a b" },
    { "a%2Fb", "a/b" },
    { "%2e%2e%2Fetc", "../etc" },
    { "%E2%82%AC", "\xE2\x82\xAC" },
    { "it's", "it's" },
  }

  it("reach a Lua handler decoded once", function()
    for _, c in ipairs(decoded) do
      local s, b, raw = get("/x/" .. c[1])
      assert.equal(200, s, c[1] .. ": " .. raw)
      assert.equal(c[2], b.v, c[1])
    end
  end)

  it("reach a route alias's parameter decoded once", function()
    for _, c in ipairs(decoded) do
      local s, b, raw = get("/q/" .. c[1])
      assert.equal(200, s, c[1] .. ": " .. raw)
      assert.equal(c[2], b.v, c[1])
    end
  end)

  it("an encoded '/' stays inside one segment; a real one separates", function()
    local s, b, raw = get("/q2/a%2Fb/c")
    assert.equal(200, s, raw)
    assert.same({ a = "a/b", b = "c" }, b)
    s, b, raw = get("/x/a%2Fb/tail")
    assert.equal(200, s, raw)
    assert.same({ v = "a/b", tail = true }, b)
    s, b, raw = get("/q2/a/b/c")
    assert.equal(404, s, raw)
    assert.equal("not_found", b.error.code)
  end)

  it("literal segments compare decoded; dot segments resolve as h2o resolves them", function()
    local s, b, raw = get("/lit/a+b/v")
    assert.equal(200, s, raw)
    assert.equal("v", b.v)
    s, b, raw = get("/%6Cit/a%2Bb/w")
    assert.equal(200, s, raw)
    assert.equal("w", b.v)
    s, b, raw = get("/x/../x/abc")
    assert.equal(200, s, raw)
    assert.equal("abc", b.v)
    s, b, raw = get("/q/./%2e/z")
    assert.equal(200, s, raw)
    assert.equal("z", b.v)
  end)

  it("a malformed escape is 400 bad_request", function()
    for _, p in ipairs { "/x/100%", "/x/%zz", "/x/%2", "/q/a%g1", "/q2/%/b" } do
      local s, b, raw = get(p)
      assert.equal(400, s, p .. ": " .. raw)
      assert.equal("bad_request", b.error.code, p)
      assert.truthy(b.error.message:find("percent-encoding", 1, true), b.error.message)
    end
  end)

  it("in the query string '+' is still a space and %2B a plus", function()
    local s, b, raw = get("/x/v?q=a+b%2Bc")
    assert.equal(200, s, raw)
    assert.equal("a b+c", b.q)
    s, b, raw = get("/query/qs?v=a+b%2Bc")
    assert.equal(200, s, raw)
    assert.equal("a b+c", b.v)
  end)

  it("a route alias still answers 405 to another method on its path", function()
    local s, lines, body = H.raw_request(gw.port, "POST", "/q/a%2Bb")
    assert.equal(405, s, body)
    local allow
    for _, l in ipairs(lines) do if l[1] == "allow" then allow = l[2] end end
    assert.equal("GET", allow)
  end)
end)
