-- luamem_spec.lua — lua_memory_limit: a handler that allocates past it gets a 500, the worker's
-- state gives the memory back and keeps serving, and /metrics reports each state's size.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["m.lua"] = [==[
sluice.query "one" { readonly = true, sql = [[ SELECT 1 AS one ]] }
sluice.endpoint "hog" { route = "GET /hog", handler = function(req)
  local t = {}
  for i = 1, 1e7 do t[i] = ("x"):rep(4096) .. i end -- 4 kB a step: past 16 MB long before the CPU guard
  return 200, { n = #t }
end }
-- Holds ~10 MB of a 16 MB limit, then spins until the CPU guard stops it: its garbage must not
-- stay behind and starve the handlers after it.
sluice.endpoint "hold_and_spin" { route = "GET /hold", handler = function(req)
  local t = {}
  for i = 1, 120000 do t[i] = ("y"):rep(40) .. i end
  while true do end
end }
sluice.endpoint "small" { route = "GET /small", handler = function(req)
  local t = {}
  for i = 1, 1000 do t[i] = i end
  return 200, { n = #t }
end }
]==],
}

describe("lua_memory_limit", function()
  local db, gw

  setup(function()
    db = H.createdb("luamem")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1, lua_memory_limit = 16 * 1024 * 1024 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("a handler over the limit gets a 500 and the worker keeps serving", function()
    H.assert_error(500, "internal", gw:get_json("/hog"))
    H.assert_error(500, "internal", gw:get_json("/hog"))
    local s, b, h, raw = gw:get_json("/small")
    H.assert_ok(s, b, h, raw)
    assert.equal(1000, b.n)
    H.assert_ok(gw:get_json("/query/one"))
    assert.truthy(gw:log():find("not enough memory", 1, true))
  end)

  it("a handler stopped while holding memory leaves none behind", function()
    for _ = 1, 3 do H.assert_error(500, "internal", gw:get_json("/hold")) end
    local s, b, h, raw = gw:get_json("/small")
    H.assert_ok(s, b, h, raw)
    assert.equal(1000, b.n)
  end)

  it("/metrics reports the state's memory, under the limit", function()
    local s, body = gw:get("/metrics")
    assert.equal(200, s)
    local bytes = tonumber(body:match('sluice_lua_memory_bytes{worker="0"} (%d+)'))
    assert.is_truthy(bytes, body)
    assert.is_true(bytes > 0 and bytes <= 16 * 1024 * 1024, tostring(bytes))
  end)
end)
