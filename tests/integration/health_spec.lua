-- health_spec.lua — /health/live, /health and /health/ready with a reachable database and with
-- one that is not.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["h.lua"] = [==[
sluice.query "one" { readonly = true, sql = [[ SELECT 1 AS one ]] }
]==],
}

describe("health", function()
  local db, gw

  setup(function()
    db = H.createdb("health")
    gw = H.start { dsn = db, scripts = scripts }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("/health/live is 200 {\"status\":\"ok\"}", function()
    local s, b, h, raw = gw:get_json("/health/live")
    H.assert_ok(s, b, h, raw)
    assert.equal("ok", b.status)
  end)

  it("/health reports ok with the primary pool's size, in_use and breaker", function()
    local s, b, h, raw = gw:get_json("/query/one")
    H.assert_ok(s, b, h, raw)
    s, b, h, raw = gw:get_json("/health")
    H.assert_ok(s, b, h, raw)
    assert.equal("ok", b.status)
    assert.equal("table", type(b.pools), raw)
    local p = b.pools.primary
    assert.equal("table", type(p), raw)
    assert.equal("number", type(p.size), raw)
    assert.equal("number", type(p.in_use), raw)
    assert.equal("closed", p.breaker)
    assert.is_true(p.in_use >= 0 and p.in_use <= p.size, raw)
  end)

  it("/health/ready is 200 when the database is reachable", function()
    local s, b, h, raw = gw:get_json("/health/ready")
    H.assert_ok(s, b, h, raw)
  end)

  it("an unknown path under /health is 404", function()
    H.assert_error(404, "not_found", gw:get_json("/health/nope"))
    H.assert_error(404, "not_found", gw:get_json("/health/live/x"))
  end)

  describe("with an unreachable database", function()
    local gw2

    setup(function()
      local port = H.free_port() -- nothing listens there
      gw2 = H.start {
        dsn = ("host=127.0.0.1 port=%d user=postgres dbname=nowhere connect_timeout=1"):format(port),
        scripts = scripts, pool = { pool_timeout = 1 },
      }
    end)

    teardown(function()
      if gw2 then pcall(gw2.stop, gw2) end
    end)

    it("/health/live is still 200", function()
      local s, b, h, raw = gw2:get_json("/health/live")
      H.assert_ok(s, b, h, raw)
    end)

    it("a query answers 503 unavailable with Retry-After, promptly", function()
      local t0 = H.now()
      local s, b, h, raw = gw2:get_json("/query/one", nil, 10)
      H.assert_error(503, "unavailable", s, b, h, raw)
      assert(h["retry-after"], "503 without Retry-After")
      assert(H.now() - t0 < 3, "took " .. (H.now() - t0) .. " s")
    end)

    it("while the breaker is open, Retry-After is the time it stays open", function()
      -- failed connects open the breaker (5 failures, open_ms 5000 by default); while a half-open
      -- probe is out, refusals say 1
      local seen, most, deadline = 0, 0, H.now() + 20
      repeat
        local s, b, h = gw2:get_json("/query/one", nil, 10)
        if s == 503 and b.error.message:find("circuit breaker open", 1, true) then
          local ra = tonumber(h["retry-after"])
          assert(ra and ra >= 1 and ra <= 5, "Retry-After " .. tostring(h["retry-after"]))
          seen, most = seen + 1, math.max(most, ra)
        else
          H.sleep(0.1)
        end
      until most > 1 or H.now() > deadline
      assert(seen > 0, "the breaker did not open")
      assert(most > 1, "Retry-After stayed 1 while the breaker was open for up to 5 s")
    end)

    it("/health is 503 down and /health/ready is 503", function()
      local s, b, h, raw
      local deadline = H.now() + 5
      repeat
        s, b, h, raw = gw2:get_json("/health")
        if s == 503 then break end
        H.sleep(0.2)
      until H.now() > deadline
      assert.equal(503, s, raw)
      assert.truthy(h["content-type"]:match("^application/json"))
      assert.equal("down", b.status)
      assert.equal("table", type(b.pools and b.pools.primary), raw)
      s, b, h, raw = gw2:get_json("/health/ready")
      assert.equal(503, s, raw)
    end)
  end)
end)
