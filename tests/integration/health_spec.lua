-- health_spec.lua — /health/live, /health and /health/ready with a reachable database (and the
-- server each pool is on) and with one that is not (work waits failover_wait_ms, then 503).
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
    -- the server the pool is on: host:port of the URL, its role, the URL's target_session_attrs
    local port = db:match("port=(%d+)")
    assert.equal("127.0.0.1:" .. port, p.host, raw)
    assert.equal("primary", p.role, raw)
    assert.equal("any", p.target, raw)
    assert.is_nil(p.hosts, raw) -- listed only for a URL with several hosts
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
        scripts = scripts, pool = { pool_timeout = 5, failover_wait_ms = 1000 },
      }
    end)

    teardown(function()
      if gw2 then pcall(gw2.stop, gw2) end
    end)

    it("/health/live is still 200", function()
      local s, b, h, raw = gw2:get_json("/health/live")
      H.assert_ok(s, b, h, raw)
    end)

    it("a query waits failover_wait_ms for a server, then answers 503 unavailable with Retry-After", function()
      local t0 = H.now()
      local s, b, h, raw = gw2:get_json("/query/one", nil, 10)
      local took = H.now() - t0
      H.assert_error(503, "unavailable", s, b, h, raw)
      assert(h["retry-after"], "503 without Retry-After")
      assert(b.error.message:find("failover_wait_ms", 1, true), raw)
      assert(took >= 0.9 and took < 2, ("answered after %.2f s (failover_wait_ms 1000)"):format(took))
    end)

    it("failed connects never open the breaker: every request waits its turn", function()
      local res = gw2:parallel({ { path = "/query/one" }, { path = "/query/one" }, { path = "/query/one" } },
        { timeout = 10 })
      for i, r in ipairs(res) do
        assert(r.status == 503 and r.time >= 0.9 and r.time < 2,
          ("request %d: %s after %.2f s: %s"):format(i, tostring(r.status), r.time or -1, r.body))
        assert(r.headers["retry-after"], "503 without Retry-After")
      end
      local _, b = gw2:get_json("/health")
      assert.equal("closed", b.pools.primary.breaker)
      assert.equal(H.null, b.pools.primary.host)
      assert.equal(H.null, b.pools.primary.role)
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
