-- cors_spec.lua — the cors key through the real binary: a preflight from an allowed origin gets
-- 204 with the Access-Control-Allow-* headers; actual answers to allowed origins (errors too) get
-- Access-Control-Allow-Origin, Vary: Origin and Access-Control-Expose-Headers; other origins,
-- and every origin while cors is unset, get no CORS header; "*" with credentials echoes the
-- origin; the cross-site rule (415 for form types) still holds; a bad cors config stops start-up
-- with one line naming the key.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local APP = "https://app.example"

local scripts = {
  ["c.lua"] = [==[
sluice.query "one" { readonly = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "echo" { sql = [[ SELECT :v::text AS v ]] }
]==],
}

local function preflight(gw, origin, path)
  return gw:request("OPTIONS", path or "/query/echo", nil, {
    Origin = origin, ["Access-Control-Request-Method"] = "POST",
    ["Access-Control-Request-Headers"] = "content-type",
  })
end

local function no_cors(h, what)
  for k in pairs(h) do assert.falsy(k:find("^access%-control%-"), what .. ": " .. k) end
end

describe("CORS", function()
  local db

  setup(function() db = H.createdb("cors") end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  describe("with a list of origins", function()
    local gw
    setup(function()
      gw = H.start { dsn = db, scripts = scripts, config = { cors = { origins = { APP, "http://localhost:3000" } } } }
    end)

    it("a preflight from an allowed origin gets 204 and the Allow headers", function()
      local s, body, h = preflight(gw, APP)
      assert.equal(204, s)
      assert.equal("", body)
      assert.equal(APP, h["access-control-allow-origin"])
      assert.truthy(h["access-control-allow-methods"]:find("POST", 1, true))
      assert.truthy(h["access-control-allow-headers"]:find("Content-Type", 1, true))
      assert.truthy(h["access-control-allow-headers"]:find("X-Request-Id", 1, true))
      assert.equal("600", h["access-control-max-age"])
      assert.truthy(h.vary:find("Origin", 1, true))
      assert.is_nil(h["access-control-allow-credentials"])
      assert.truthy(h["x-request-id"])
      -- origins compare without regard to case; any path may be preflighted
      s, _, h = preflight(gw, "HTTP://LOCALHOST:3000", "/no/such/path")
      assert.equal(204, s)
      assert.equal("HTTP://LOCALHOST:3000", h["access-control-allow-origin"])
    end)

    it("a preflight from another origin gets no CORS header", function()
      for _, o in ipairs { "https://evil.example", APP .. ".evil", "null", "https://app.example:444" } do
        local s, _, h = preflight(gw, o)
        assert.not_equal(204, s, o)
        no_cors(h, o)
      end
    end)

    it("answers to an allowed origin carry Allow-Origin, Vary and Expose-Headers; errors too", function()
      local s, _, h = gw:get("/query/one", { Origin = APP })
      assert.equal(200, s)
      assert.equal(APP, h["access-control-allow-origin"])
      assert.truthy(h.vary:find("Origin", 1, true))
      for _, name in ipairs { "X-Request-Id", "Sluice-LSN", "ETag", "traceparent" } do
        assert.truthy(h["access-control-expose-headers"]:find(name, 1, true), name)
      end
      s, _, h = gw:post("/query/echo", '{"v":"x"}', { Origin = APP })
      assert.equal(200, s)
      assert.equal(APP, h["access-control-allow-origin"])
      s, _, h = gw:get("/query/nope", { Origin = APP })
      assert.equal(404, s)
      assert.equal(APP, h["access-control-allow-origin"])
    end)

    it("answers to other origins, or without Origin, carry none, but Vary: Origin", function()
      local _, _, h = gw:get("/query/one", { Origin = "https://evil.example" })
      no_cors(h, "evil")
      assert.truthy((h.vary or ""):find("Origin", 1, true))
      _, _, h = gw:get("/query/one")
      no_cors(h, "no origin")
      assert.truthy((h.vary or ""):find("Origin", 1, true))
    end)

    it("the cross-site rule still refuses form types, from an allowed origin too", function()
      local s, b, h = gw:json("POST", "/query/echo", "v=x",
        { Origin = APP, ["Content-Type"] = "application/x-www-form-urlencoded" })
      H.assert_error(415, "unsupported_media_type", s, b, h)
      assert.equal(APP, h["access-control-allow-origin"]) -- the page may read why
    end)
  end)

  it("origins = \"*\": Allow-Origin *, unless credentials, which echo the origin", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { cors = { origins = "*", max_age = 60,
      headers = { "Content-Type", "X-Api-Key" } } } }
    local s, _, h = preflight(gw, "https://any.example")
    assert.equal(204, s)
    assert.equal("*", h["access-control-allow-origin"])
    assert.equal("Content-Type, X-Api-Key", h["access-control-allow-headers"])
    assert.equal("60", h["access-control-max-age"])
    _, _, h = gw:get("/query/one", { Origin = "https://any.example" })
    assert.equal("*", h["access-control-allow-origin"])
    gw:stop()

    gw = H.start { dsn = db, scripts = scripts, config = { cors = { origins = "*", credentials = true } } }
    s, _, h = preflight(gw, "https://any.example")
    assert.equal(204, s)
    assert.equal("https://any.example", h["access-control-allow-origin"])
    assert.equal("true", h["access-control-allow-credentials"])
    assert.truthy(h.vary:find("Origin", 1, true))
    _, _, h = gw:get("/query/one", { Origin = "https://any.example" })
    assert.equal("https://any.example", h["access-control-allow-origin"])
    assert.equal("true", h["access-control-allow-credentials"])
    gw:stop()
  end)

  it("off while cors is unset: no CORS header, a preflight is refused as any OPTIONS", function()
    local gw = H.start { dsn = db, scripts = scripts }
    local s, _, h = preflight(gw, APP)
    assert.not_equal(204, s)
    no_cors(h, "preflight")
    _, _, h = gw:get("/query/one", { Origin = APP })
    no_cors(h, "get")
    gw:stop()
  end)

  it("a bad cors config stops start-up with one line naming the key", function()
    for _, case in ipairs {
      { { max_age = 5 }, "cors.origins: expected \"*\" or an array of origins" },
      { { origins = APP }, "cors.origins: expected \"*\" or an array of origins, got a single string" },
      { { origins = { APP .. "/" } }, "cors.origins[1]: expected an origin such as" },
      { { origins = { "app.example" } }, "cors.origins[1]: expected an origin such as" },
      { { origins = {} }, "cors.origins: expected a non-empty array" },
      { { origins = { APP }, headers = { "X Bad" } }, "cors.headers[1]: expected a header name" },
      { { origins = { APP }, max_age = -1 }, "cors.max_age: expected" },
      { { origins = { APP }, credentials = "yes" }, "cors.credentials: expected" },
      { { origins = { APP }, allow = true }, "unknown key \"cors.allow\"" },
      { "yes", "cors: expected a table" },
    } do
      local g = H.start { dsn = db, wait = false, scripts = scripts, config = { cors = case[1] } }
      local deadline = H.now() + 10
      while g:exit_code() == nil and H.now() < deadline do H.sleep(0.05) end
      assert.equal(1, g:exit_code())
      local log = g:log()
      assert.truthy(log:find(case[2], 1, true), case[2] .. " in: " .. log)
    end
  end)
end)
