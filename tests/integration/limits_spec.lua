-- limits_spec.lua — the request limits through the real binary: max_url_bytes (414), max_params
-- (400), max_rows (413, with a message that says to page), max_inflight (503 + Retry-After); each
-- answered with the JSON error of docs/http-api.md, and the gateway serving normally afterwards.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["limits.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "echo" { readonly = true, single = true, sql = [[ SELECT :a::text AS a ]] }
sluice.query "series" { readonly = true, sql = [[ SELECT g FROM generate_series(1, :n::int) AS g ]] }
sluice.query "nap" { readonly = true, sql = [[ SELECT 1 AS x FROM pg_sleep(1.5) ]] }
]==],
}

describe("limits", function()
  local db, gw

  setup(function()
    db = H.createdb("limits")
    gw = H.start { dsn = db, scripts = scripts, config = {
      workers = 1, max_url_bytes = 4096, max_params = 5, max_rows = 10, max_inflight = 2,
    } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  describe("max_url_bytes", function()
    it("a URL past the limit → 414 too_large", function()
      local e = H.assert_error(414, "too_large", gw:get_json("/query/echo?a=" .. ("x"):rep(5000)))
      assert.truthy(e.message:match("max_url_bytes"))
      H.assert_ok(gw:get_json("/query/echo?a=" .. ("x"):rep(3000)))
    end)

    it("a 100 KB URL → 414 too_large as JSON", function()
      H.assert_error(414, "too_large", gw:get_json("/query/echo?a=" .. ("x"):rep(100 * 1024)))
      H.assert_ok(gw:get_json("/query/one"))
    end)

    it("a request head past h2o's own limit (~400 KB) is answered or closed, and the gateway lives", function()
      -- h2o 2.2.5 answers a plain-text 400 itself and closes (docs/http-api.md): a reset is fine too
      local status, _, _, raw = gw:get_json("/query/echo?a=" .. ("x"):rep(600 * 1024))
      assert(status == nil or status == 400, "expected 400 or a closed connection, got " .. tostring(status) .. " " .. tostring(raw))
      assert.truthy(gw:alive())
      H.assert_ok(gw:get_json("/query/one"))
    end)
  end)

  describe("max_params", function()
    it("more query-string parameters than the limit → 400", function()
      local e = H.assert_error(400, "bad_request", gw:get_json("/query/echo?a=1&b=2&c=3&d=4&e=5&f=6"))
      assert.truthy(e.message:match("max_params"))
    end)

    it("more body keys than the limit → 400", function()
      local e = H.assert_error(400, "bad_request",
        gw:post_json("/query/echo", { a = 1, b = 2, c = 3, d = 4, e = 5, f = 6 }))
      assert.truthy(e.message:match("max_params"))
      H.assert_error(400, "bad_request", gw:post_json("/query/echo", "[1,2,3,4,5,6]"))
    end)

    it("within the limit the usual rules apply", function()
      assert.same({ a = "7" }, H.assert_ok(gw:get_json("/query/echo?a=7")))
      -- five items: within max_params, then refused as unknown parameters, not as too many
      local e = H.assert_error(400, "bad_request", gw:get_json("/query/echo?a=1&b=2&c=3&d=4&e=5"))
      assert.falsy(e.message:match("max_params"))
    end)
  end)

  it("JSON nested deeper than jansson's 2048 levels → 400", function()
    local e = H.assert_error(400, "bad_request",
      gw:post_json("/query/echo", '{"a":' .. ("["):rep(3000) .. ("]"):rep(3000) .. "}"))
    assert.truthy(e.message:match("depth"))
  end)

  describe("max_rows", function()
    it("a result with more rows → 413 too_large that says to page", function()
      local e = H.assert_error(413, "too_large", gw:get_json("/query/series?n=11"))
      assert.equal("series", e.query)
      assert.truthy(e.message:match("max_rows"))
      assert.truthy(e.message:match("page"))
    end)

    it("a result at the limit is served whole", function()
      local body = H.assert_ok(gw:get_json("/query/series?n=10"))
      assert.equal(10, body.row_count)
      assert.equal(10, #body.rows)
    end)
  end)

  describe("max_inflight", function()
    it("past the limit a worker answers 503 with Retry-After, then recovers", function()
      local reqs = {}
      for i = 1, 4 do reqs[i] = { path = "/query/nap" } end
      local results = gw:parallel(reqs, { timeout = 10 })
      local ok, refused = 0, 0
      for _, r in ipairs(results) do
        if r.status == 200 then
          ok = ok + 1
        else
          assert.equal(503, r.status)
          assert.equal("unavailable", r.json.error.code)
          assert.truthy(r.json.error.message:match("too many requests"))
          assert.equal("1", r.headers["retry-after"])
          refused = refused + 1
        end
      end
      assert.equal(2, ok)
      assert.equal(2, refused)
      -- probes and metrics still answer while the worker is full; afterwards everything does
      H.assert_ok(gw:get_json("/query/one"))
    end)

    it("/health/live answers while the worker is full", function()
      local b = gw:start_parallel({ { path = "/query/nap" }, { path = "/query/nap" } })
      H.sleep(0.5)
      assert.equal(200, (gw:get("/health/live")))
      assert.equal(200, (gw:get("/metrics")))
      H.assert_error(503, "unavailable", gw:get_json("/query/one"))
      for _, r in ipairs(b:wait()) do assert.equal(200, r.status) end
    end)
  end)
end)
