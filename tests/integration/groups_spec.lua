-- groups_spec.lua — readonly queries started in the same turn of the event loop share one Sync on
-- their connection: when one of them fails, PostgreSQL skips the rest of the group, and those are
-- sent again without their clients seeing it. One connection, 300 concurrent requests of which
-- every tenth divides by zero and every seventh is a write: each read gets its own answer or its
-- own error, and each write commits exactly once.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local N = 300

local scripts = {
  ["groups.lua"] = [==[
sluice.query "ratio" { readonly = true, single = true, sql = [[
  SELECT :n::int4 AS n, 100 / :d::int4 AS q ]] }
sluice.query "note" { single = true, sql = [[
  INSERT INTO notes (n) VALUES (:n) RETURNING n ]] }
]==],
}

describe("groups", function()
  local db, gw

  setup(function()
    db = H.createdb("groups")
    H.psql(db, "CREATE TABLE notes (n int4 PRIMARY KEY)")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 },
      pool = { pool_size = 1, max_overflow = 0, pool_timeout = 20 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("a failed read leaves the reads of its group their own answers", function()
    -- prepared on the connection first: a first execution has a Sync of its own
    local status = gw:get("/query/ratio?n=0&d=1")
    assert.equal(200, status)
    local reqs, kinds = {}, {}
    for i = 1, N do
      if i % 7 == 0 then
        kinds[i] = "write"
        reqs[i] = { method = "POST", path = "/query/note", body = { n = i } }
      elseif i % 10 == 0 then
        kinds[i] = "fail"
        reqs[i] = { method = "GET", path = "/query/ratio?n=" .. i .. "&d=0" }
      else
        kinds[i] = "read"
        reqs[i] = { method = "GET", path = "/query/ratio?n=" .. i .. "&d=4" }
      end
    end
    local res = gw:parallel(reqs, { max = N, timeout = 30 })
    local bad, writes = {}, 0
    for i, r in ipairs(res) do
      local ok
      if kinds[i] == "read" then
        ok = r.status == 200 and type(r.json) == "table" and r.json.n == i and r.json.q == 25
      elseif kinds[i] == "fail" then
        ok = r.status == 400 and type(r.json) == "table" and type(r.json.error) == "table"
      else
        ok = r.status == 200 and type(r.json) == "table" and r.json.n == i
        writes = writes + 1
      end
      if not ok then bad[#bad + 1] = ("#%d %s -> %s %s"):format(i, kinds[i], tostring(r.status), r.body:sub(1, 200)) end
    end
    assert(#bad == 0, #bad .. " of " .. N .. " wrong:\n" .. table.concat(bad, "\n", 1, math.min(#bad, 20)))
    assert.equal(tostring(writes), H.psql1(db, "SELECT count(*) FROM notes"))
  end)

  it("the gateway is still alive", function()
    assert.is_true(gw:alive())
  end)
end)
