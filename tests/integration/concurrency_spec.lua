-- concurrency_spec.lua — 200 concurrent requests over 2 workers and a pool of 4: each gets its
-- own right answer, and the pool never opens more connections than it may.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local N = 200

local scripts = {
  ["conc.lua"] = [==[
sluice.query "item" { readonly = true, single = true, route = "GET /items/{id}", sql = [[
  SELECT id, v FROM items, pg_sleep(0.01) WHERE id = :id ]] }
sluice.query "bump" { single = true, sql = [[
  UPDATE items SET hits = hits + 1 WHERE id = :id RETURNING id, hits ]] }
]==],
}

describe("concurrency", function()
  local db, gw

  setup(function()
    db = H.createdb("concurrency")
    H.psql(db, ([[
      CREATE TABLE items (id int4 PRIMARY KEY, v text NOT NULL, hits int4 NOT NULL DEFAULT 0);
      INSERT INTO items (id, v) SELECT g, md5(g::text) FROM generate_series(1, %d) AS g;
    ]]):format(N))
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 2 },
      pool = { pool_size = 4, max_overflow = 0, pool_timeout = 20 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function md5s()
    local out = H.psql(db, "SELECT id, v FROM items ORDER BY id")
    local m = {}
    for id, v in out:gmatch("(%d+)|(%x+)") do m[tonumber(id)] = v end
    return m
  end

  it(N .. " concurrent reads each get their own answer", function()
    local want = md5s()
    local reqs = {}
    for i = 1, N do
      local kind = i % 3
      if kind == 0 then
        reqs[i] = { method = "GET", path = "/query/item?id=" .. i }
      elseif kind == 1 then
        reqs[i] = { method = "POST", path = "/query/item", body = { id = i } }
      else
        reqs[i] = { method = "GET", path = "/items/" .. i }
      end
    end
    local t0 = H.now()
    local res = gw:parallel(reqs, { max = N, timeout = 30 })
    local took = H.now() - t0
    local bad = {}
    for i, r in ipairs(res) do
      if r.status ~= 200 or type(r.json) ~= "table" or r.json.id ~= i or r.json.v ~= want[i] then
        bad[#bad + 1] = ("#%d %s %s -> %s %s"):format(i, reqs[i].method, reqs[i].path, tostring(r.status), r.body:sub(1, 200))
      end
    end
    assert(#bad == 0, #bad .. " of " .. N .. " wrong:\n" .. table.concat(bad, "\n", 1, math.min(#bad, 20)))
    assert(took < 25, "took " .. took .. " s")
  end)

  it("never more connections than pool_size + max_overflow", function()
    local n = tonumber(H.psql1(db, ("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND pid <> pg_backend_pid()")
      :format(H.dsn_dbname(db))))
    assert(n <= 4, n .. " connections open for a pool of 4")
  end)

  it(N .. " concurrent writes are each applied once", function()
    local reqs = {}
    for i = 1, N do reqs[i] = { method = "POST", path = "/query/bump", body = { id = (i % 50) + 1 } } end
    local res = gw:parallel(reqs, { max = N, timeout = 30 })
    local bad = {}
    for i, r in ipairs(res) do
      if r.status ~= 200 or type(r.json) ~= "table" or r.json.id ~= (i % 50) + 1 then
        bad[#bad + 1] = ("#%d -> %s %s"):format(i, tostring(r.status), r.body:sub(1, 200))
      end
    end
    assert(#bad == 0, #bad .. " of " .. N .. " wrong:\n" .. table.concat(bad, "\n", 1, math.min(#bad, 20)))
    assert.equal(tostring(N), H.psql1(db, "SELECT sum(hits) FROM items"))
    assert.equal("4", H.psql1(db, "SELECT min(hits) FROM items WHERE id <= 50"))
    assert.equal("4", H.psql1(db, "SELECT max(hits) FROM items"))
  end)

  it("the gateway is still alive", function()
    assert.is_true(gw:alive())
  end)
end)
