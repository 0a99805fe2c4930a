-- timeout_spec.lua — per-query statement timeouts on one shared connection: a query's timeout_ms
-- never leaks into the next query, also after a statement failed (which rolls back the SET that
-- travelled with it).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["t.lua"] = [==[
sluice.query "short" { readonly = true, timeout_ms = 200, sql = [[ SELECT 1 AS one ]] }
sluice.query "sleep" { readonly = true, sql = [[ SELECT pg_sleep(:s::float8) AS slept ]] }
sluice.query "cast" { readonly = true, sql = [[ SELECT :n::int AS n ]] }
]==],
}

describe("statement timeouts", function()
  local db, gw

  setup(function()
    db = H.createdb("timeout")
    -- one worker, one connection, no pipelining: every query shares the same session
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 },
                   pool = { pool_size = 1, max_overflow = 0, pipeline_depth = 1 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("a short timeout_ms does not stay on the connection for the next query", function()
    H.assert_ok(gw:get_json("/query/short"))
    local s, b, h, raw = gw:get_json("/query/sleep?s=0.4")
    H.assert_ok(s, b, h, raw)
  end)

  it("nor after a failed statement rolled back the SET that came with it", function()
    H.assert_ok(gw:get_json("/query/short"))
    H.assert_error(400, "bad_request", gw:get_json("/query/cast?n=abc"))
    local s, b, h, raw = gw:get_json("/query/sleep?s=0.4")
    H.assert_ok(s, b, h, raw)
  end)
end)
