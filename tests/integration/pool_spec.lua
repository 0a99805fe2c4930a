-- pool_spec.lua — the pool against a real PostgreSQL: pool_timeout and the bounded wait queue,
-- overflow connections under a burst and their reaping after idle_timeout, the connection cap,
-- the prepared-statement cache (eviction, DDL under a warm cache), terminated backends,
-- connections left inside a transaction and pool_recycle. Backends are counted in
-- pg_stat_activity (application_name 'sluice').
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["pool.lua"] = [==[
sluice.query "sleep" { readonly = true, single = true, sql = [[
  SELECT :s::float8 AS s, pg_backend_pid() AS pid FROM pg_sleep(:s::float8) ]] }
sluice.query "fast" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "echo" { readonly = true, single = true, sql = [[
  SELECT :i::int4 AS i, pg_backend_pid() AS pid FROM pg_sleep(:s::float8) ]] }
sluice.query "pid" { readonly = true, single = true, sql = [[ SELECT pg_backend_pid() AS pid ]] }
-- the 3 ms sleep keeps a connection busy past the pipelining window, so that requests queue
sluice.query "row" { readonly = true, single = true, sql = [[
  SELECT t.* FROM t, pg_sleep(0.003) WHERE t.id = :id ]] }
sluice.query "rows" { readonly = true, sql = [[ SELECT * FROM t ORDER BY id ]] }
sluice.query "row_w" { single = true, sql = [[ SELECT t.* FROM t, pg_sleep(0.003) WHERE t.id = :id ]] }
sluice.query "begin" { sql = [[ BEGIN ]] }
sluice.query "put" { single = true, sql = [[ INSERT INTO t (id, a) VALUES (:id, :a) RETURNING id, a ]] }
sluice.query "nprep" { readonly = true, single = true, sql = [[
  SELECT count(*)::int4 AS n FROM pg_prepared_statements ]] }
for k = 1, 5 do
  sluice.query("q" .. k) { readonly = true, single = true,
    sql = "SELECT :x::int4 * " .. k .. " AS v, 'q" .. k .. "'::text AS name" }
end
]==],
}

describe("pool", function()
  local db, dbname

  setup(function()
    db = H.createdb("pool")
    dbname = H.dsn_dbname(db)
    H.psql(db, "CREATE TABLE t (id int4 PRIMARY KEY, a text NOT NULL); INSERT INTO t VALUES (1, 'one'), (2, 'two');")
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  -- Backends the gateway holds open to the test database.
  local function backends()
    return tonumber(H.psql1(H.admin_dsn(), ([[
      SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname)))
  end

  local function sluice_pids()
    local out = H.psql(H.admin_dsn(), ([[
      SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname))
    local pids = {}
    for pid in out:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
    return pids
  end

  -- Statements of the gateway running pg_sleep right now.
  local function active_sleeps()
    return tonumber(H.psql1(H.admin_dsn(), ([[
      SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s'
         AND state = 'active' AND query LIKE '%%pg_sleep%%']]):format(dbname)))
  end

  local wait_for = H.wait_for

  -- Each test starts its own gateway; one left running by a failed test is stopped here with
  -- whatever it left running on the server, and the next test waits until its backends are
  -- gone, so that the counts below are its own.
  after_each(function()
    H.cleanup()
    pcall(H.psql, H.admin_dsn(), ([[
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname))
  end)

  local function start(pool, config)
    local gone = wait_for(function() return backends() == 0 end, 5)
    assert(gone, "backends of an earlier gateway are still open: " .. backends())
    local gw = H.start { dsn = db, scripts = scripts, config = config or { workers = 1 }, pool = pool }
    return gw
  end

  local function summary(results)
    local parts = {}
    for i, r in ipairs(results) do
      if r.status ~= 200 then parts[#parts + 1] = ("#%d %s %s"):format(i, tostring(r.status), r.body) end
    end
    return table.concat(parts, "\n")
  end

  it("answers 503 + Retry-After after pool_timeout while the only connection is busy", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 1 }
    local slow = gw:async("GET", "/query/sleep?s=2.5", nil, nil, 10)
    assert(wait_for(function() return active_sleeps() == 1 end, 3), "the slow query never ran")
    local t0 = H.now()
    local s, b, h, raw = gw:get_json("/query/fast", nil, 5)
    local took = H.now() - t0
    H.assert_error(503, "unavailable", s, b, h, raw)
    assert(h["retry-after"], "503 without Retry-After")
    assert(tonumber(h["retry-after"]), "Retry-After is not a number of seconds: " .. tostring(h["retry-after"]))
    -- it waited in the queue for pool_timeout (1 s), not less and not much more
    assert(took >= 0.8 and took < 1.5, ("503 after %.2f s, expected about 1 s (pool_timeout)"):format(took))
    local r = slow.wait()
    assert(r.status == 200, "the slow query: " .. tostring(r.status) .. " " .. r.body)
    -- the connection serves again
    H.assert_ok(gw:get_json("/query/fast"))
    print(("# 503 after %.2f s"):format(took))
    gw:stop()
  end)

  it("fails fast once max_queue requests wait, and serves the queued ones", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 8, max_queue = 2 }
    local slow = gw:async("GET", "/query/sleep?s=3", nil, nil, 10)
    local t_slow = H.now()
    assert(wait_for(function() return active_sleeps() == 1 end, 2), "the slow query never ran")
    local queued = gw:start_parallel({ { path = "/query/echo?i=1&s=0" }, { path = "/query/echo?i=2&s=0" } })
    -- both are in the queue before the next ones arrive
    assert(wait_for(function()
      local _, hb = gw:get_json("/health")
      return hb and hb.pools.primary.waiting == 2
    end, 2), "the two requests are not waiting")
    local t0 = H.now()
    assert(t0 - t_slow < 2.5, "too slow to test: the connection is about to be free")
    local res = gw:parallel({ { path = "/query/echo?i=3&s=0" }, { path = "/query/echo?i=4&s=0" } })
    for i, r in ipairs(res) do
      assert(r.status == 503, ("over the queue bound, request %d: %s %s"):format(i, tostring(r.status), r.body))
      assert(r.headers["retry-after"], "503 without Retry-After")
      assert(r.time < 0.5, ("over the queue bound, request %d took %.2f s"):format(i, r.time))
    end
    assert(H.now() - t0 < 1, "the rejected requests were not rejected at once")
    for i, r in ipairs(queued:wait()) do
      assert(r.status == 200, ("queued request %d: %s %s"):format(i, tostring(r.status), r.body))
      assert.equal(i, r.json.i)
    end
    assert.equal(200, slow.wait().status)
    gw:stop()
  end)

  it("opens overflow connections for a burst and closes them after idle_timeout", function()
    -- one statement per connection (pipeline_depth 1): the burst needs the overflow
    local gw = start { pool_size = 1, max_overflow = 3, idle_timeout = 1, pool_timeout = 10, pipeline_depth = 1 }
    assert(wait_for(function() return backends() == 1 end, 3), "the resident connection did not open")
    local reqs = {}
    for i = 1, 4 do reqs[i] = { path = "/query/sleep?s=0.5" } end
    local res = gw:parallel(reqs, { timeout = 10 })
    local t_end = H.now()
    local n = backends()
    local t_n = H.now() - t_end
    assert(summary(res) == "", "burst: " .. summary(res))
    local slowest, pids, npids = 0, {}, 0
    for _, r in ipairs(res) do
      slowest = math.max(slowest, r.time)
      if not pids[r.json.pid] then npids = npids + 1 end
      pids[r.json.pid] = true
    end
    print(("# pipeline_depth 1: 4 x pg_sleep(0.5), slowest %.2f s, on %d backends"):format(slowest, npids))
    assert(slowest < 1.2, ("4 concurrent pg_sleep(0.5) took up to %.2f s: not served in parallel"):format(slowest))
    assert.equal(4, npids)
    -- still open while idle for less than idle_timeout (only checked when the count was quick)
    if t_n < 0.7 then assert(n == 4, ("backends %.2f s after the burst: %d"):format(t_n, n)) end
    local shrunk = wait_for(function() return backends() == 1 end, 5, 0.1)
    local waited = H.now() - t_end
    assert(shrunk, ("overflow connections still open %.1f s after the burst: %d"):format(waited, backends()))
    assert(waited >= 0.9, ("overflow connections closed %.2f s after the burst, before idle_timeout"):format(waited))
    print(("# back to 1 backend %.1f s after the burst (idle_timeout 1 s)"):format(waited))
    H.sleep(0.5)
    assert.equal(1, backends()) -- the resident connection stays
    H.assert_ok(gw:get_json("/query/fast"))
    gw:stop()
  end)

  it("runs a burst of slow statements in parallel on overflow connections (default pipelining)", function()
    local gw = start { pool_size = 1, max_overflow = 3, idle_timeout = 1, pool_timeout = 10 }
    assert(wait_for(function() return backends() == 1 end, 3), "the resident connection did not open")
    local reqs = {}
    for i = 1, 4 do reqs[i] = { path = "/query/sleep?s=0.5" } end
    local t0 = H.now()
    local res = gw:parallel(reqs, { timeout = 10 })
    local took = H.now() - t0
    assert(summary(res) == "", "burst: " .. summary(res))
    local slowest, pids, npids = 0, {}, 0
    for _, r in ipairs(res) do
      slowest = math.max(slowest, r.time)
      if not pids[r.json.pid] then npids = npids + 1 end
      pids[r.json.pid] = true
    end
    print(("# 4 x pg_sleep(0.5): %.2f s, slowest %.2f s, on %d backends"):format(took, slowest, npids))
    -- in parallel: about 0.5 s, not 4 x 0.5 s one after another on the resident connection
    assert(slowest < 1.2, ("4 concurrent pg_sleep(0.5) took up to %.2f s on %d backend(s): not served in parallel")
      :format(slowest, npids))
    assert(backends() <= 4)
    gw:stop()
  end)

  -- Samples the gateway's backends inside the server every few milliseconds for `seconds`, in
  -- the background; :wait() returns the largest count seen and the number of samples.
  local function start_sampler(seconds)
    local dir = H.tmpdir("sluice-sampler")
    H.writefile(dir .. "/s.sql", ([[
      DO $$
      DECLARE most int := 0; n int; samples int := 0; t0 timestamptz := clock_timestamp();
      BEGIN
        WHILE clock_timestamp() < t0 + interval '%g seconds' LOOP
          PERFORM pg_stat_clear_snapshot();
          SELECT count(*) INTO n FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s';
          most := greatest(most, n);
          samples := samples + 1;
          PERFORM pg_sleep(0.002);
        END LOOP;
        RAISE NOTICE 'most=%% samples=%%', most, samples;
      END $$;
    ]]):format(seconds, dbname))
    H.must(("( psql -X -q -d %s -f %s >%s 2>&1; echo $? >%s.tmp; mv %s.tmp %s ) </dev/null >/dev/null 2>&1 &")
      :format(H.q(H.admin_dsn()), H.q(dir .. "/s.sql"), H.q(dir .. "/out"), H.q(dir .. "/rc"), H.q(dir .. "/rc"), H.q(dir .. "/rc")))
    return {
      wait = function()
        local rc = wait_for(function() return H.readfile(dir .. "/rc") end, seconds + 10)
        local out = H.readfile(dir .. "/out") or ""
        H.sh("rm -rf " .. H.q(dir))
        assert(rc == "0\n", "the sampler failed: " .. out)
        local most, samples = out:match("most=(%d+) samples=(%d+)")
        assert(most, "no sample: " .. out)
        return tonumber(most), tonumber(samples)
      end,
    }
  end

  it("never opens more than pool_size + max_overflow backends under a burst of 50", function()
    local gw = start({ pool_size = 2, max_overflow = 2, pool_timeout = 15 }, { workers = 2 })
    local sampler = start_sampler(3)
    H.sleep(0.2)
    local reqs = {}
    for i = 1, 50 do reqs[i] = { path = ("/query/echo?i=%d&s=0.1"):format(i) } end
    local t0 = H.now()
    local res = gw:parallel(reqs, { timeout = 20 })
    local took = H.now() - t0
    local most, samples = sampler.wait()
    assert(summary(res) == "", "burst: " .. summary(res))
    for i, r in ipairs(res) do assert.equal(i, r.json.i) end
    print(("# at most %d backends over %d samples (limit 4); the burst took %.2f s"):format(most, samples, took))
    assert(most <= 4, "backends opened: " .. most .. ", limit pool_size + max_overflow = 4")
    assert(most >= 2, "the sampler saw no backends: " .. most)
    gw:stop()
  end)

  it("re-prepares after ALTER TABLE under a warm statement cache, unseen by clients", function()
    local gw = start({ pool_size = 2, max_overflow = 0, pool_timeout = 10 }, { workers = 2 })
    local names = { "one", "two" }
    -- 24 concurrent requests over the three queries; each answer must be the whole right row(s)
    -- and pass check(row) (the column b).
    local function round(what, check)
      local reqs, ids = {}, {}
      for i = 1, 24 do
        ids[i] = i % 2 + 1
        if i % 3 == 0 then reqs[i] = { path = "/query/row_w", body = { id = ids[i] } }
        elseif i % 3 == 1 then reqs[i] = { path = "/query/row?id=" .. ids[i] }
        else reqs[i] = { path = "/query/rows" } end
      end
      local res = gw:parallel(reqs, { timeout = 10 })
      local bad = {}
      for i, r in ipairs(res) do
        local ok = r.status == 200 and type(r.json) == "table"
        if ok and i % 3 == 2 then
          local rows = r.json.rows
          ok = type(rows) == "table" and #rows == 2 and rows[1].id == 1 and rows[1].a == "one"
            and rows[2].id == 2 and rows[2].a == "two" and check(rows[1]) and check(rows[2])
        elseif ok then
          ok = r.json.id == ids[i] and r.json.a == names[ids[i]] and check(r.json)
        end
        if not ok then bad[#bad + 1] = ("#%d %s %s"):format(i, tostring(r.status), r.body) end
      end
      assert(#bad == 0, what .. ": wrong answers:\n" .. table.concat(bad, "\n"))
    end
    local function no_b(row) return row.b == nil end
    for k = 1, 3 do round("warm-up " .. k, no_b) end
    for cycle = 1, 4 do
      H.psql(db, ("ALTER TABLE t ADD COLUMN b int4 NOT NULL DEFAULT %d"):format(cycle))
      round("after ADD COLUMN (cycle " .. cycle .. ")", function(row) return row.b == cycle end)
      -- one at a time as well, so that each connection meets the change on its own
      for i = 1, 4 do
        local row = H.assert_ok(gw:get_json("/query/row?id=1"))
        assert(row.b == cycle and row.a == "one", "request " .. i .. ": " .. H.encode(row))
      end
      H.psql(db, "ALTER TABLE t DROP COLUMN b")
      round("after DROP COLUMN (cycle " .. cycle .. ")", no_b)
      for i = 1, 4 do
        local s, row, h, raw = gw:post_json("/query/row_w", { id = 2 })
        H.assert_ok(s, row, h, raw)
        assert(row.b == nil and row.a == "two", "request " .. i .. ": " .. raw)
      end
    end
    gw:stop()
  end)

  -- Terminates every backend of the test database the gateway holds; returns how many.
  local function terminate_all()
    return tonumber(H.psql1(H.admin_dsn(), ([[
      SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
       WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname)))
  end

  local function check_echo(res, what)
    assert(summary(res) == "", what .. ":\n" .. summary(res))
    for i, r in ipairs(res) do assert(r.json.i == i, what .. ": request " .. i .. " got " .. r.body) end
  end

  it("answers readonly queries without error after every idle pooled backend is terminated", function()
    local gw = start({ pool_size = 4, max_overflow = 0, pool_timeout = 10 }, { workers = 2 })
    assert(wait_for(function() return backends() == 4 end, 3), "the pool did not open 4 connections")
    local before = sluice_pids()
    assert.equal(4, terminate_all())
    local reqs = {}
    for i = 1, 20 do reqs[i] = { path = ("/query/echo?i=%d&s=0"):format(i) } end
    check_echo(gw:parallel(reqs, { timeout = 10 }), "after terminating the idle backends")
    for _, old in ipairs(before) do
      for _, new in ipairs(sluice_pids()) do assert(old ~= new, "backend " .. old .. " survived") end
    end
    assert.is_true(gw:alive())
    gw:stop()
  end)

  it("answers readonly queries without error when busy pooled backends are terminated", function()
    local gw = start({ pool_size = 4, max_overflow = 0, pool_timeout = 10 }, { workers = 2 })
    assert(wait_for(function() return backends() == 4 end, 3), "the pool did not open 4 connections")
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = ("/query/echo?i=%d&s=0.2"):format(i) } end
    local batch = gw:start_parallel(reqs, { timeout = 15, max = 8 })
    assert(wait_for(function() return active_sleeps() >= 2 end, 3), "no statements running")
    local killed = terminate_all()
    check_echo(batch:wait(), ("after terminating %d busy backends"):format(killed))
    assert.is_true(gw:alive())
    gw:stop()
  end)

  it("answers readonly queries without error when more backends than breaker.failures are terminated", function()
    -- 6 connections, the default breaker (5 failures in 10 s): the server is healthy throughout
    -- and every reconnect succeeds, so nothing should fail
    local gw = start({ pool_size = 6, max_overflow = 0, pool_timeout = 10 }, { workers = 2 })
    assert(wait_for(function() return backends() == 6 end, 3), "the pool did not open 6 connections")
    assert.equal(6, terminate_all())
    local reqs = {}
    for i = 1, 20 do reqs[i] = { path = ("/query/echo?i=%d&s=0"):format(i) } end
    check_echo(gw:parallel(reqs, { timeout = 10 }), "after terminating 6 idle backends")
    local _, hb = gw:get_json("/health")
    assert(hb and hb.pools.primary.breaker == "closed", "breaker: " .. H.encode(hb))
    gw:stop()
  end)

  it("evicts from a prepared-statement cache of 2 and still answers 5 queries correctly", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 10, prepared_statement_cache_size = 2 }
    for round = 1, 4 do
      for k = 1, 5 do
        local x = round * 10 + k
        local s, row, h, raw = gw:get_json(("/query/q%d?x=%d"):format(k, x))
        H.assert_ok(s, row, h, raw)
        assert(row.v == x * k and row.name == "q" .. k, ("round %d, q%d: %s"):format(round, k, raw))
      end
    end
    -- the same, pipelined: concurrent requests share the one connection
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = ("/query/q%d?x=%d"):format((i - 1) % 5 + 1, i) } end
    local res = gw:parallel(reqs, { timeout = 10 })
    assert(summary(res) == "", summary(res))
    for i, r in ipairs(res) do
      local k = (i - 1) % 5 + 1
      assert(r.json.v == i * k and r.json.name == "q" .. k, ("request %d: %s"):format(i, r.body))
    end
    -- the one backend never holds more than 2 prepared statements (this query's included)
    local row = H.assert_ok(gw:get_json("/query/nprep"))
    assert(row.n <= 2, "prepared statements on the backend: " .. row.n)
    assert.equal(1, backends())
    gw:stop()
  end)

  it("discards a connection left inside a transaction instead of reusing it", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 5 }
    local first = H.assert_ok(gw:get_json("/query/pid")).pid
    local s = gw:post("/query/begin", {})
    assert(s == 200 or s == 500, "BEGIN: " .. tostring(s))
    -- the next statements run on a clean connection and commit on their own
    local row = H.assert_ok(gw:post_json("/query/put", { id = 100, a = "committed" }))
    assert.equal(100, row.id)
    assert.equal("committed", H.psql1(db, "SELECT a FROM t WHERE id = 100"))
    assert(H.assert_ok(gw:get_json("/query/pid")).pid ~= first, "the connection inside a transaction was reused")
    assert.equal("0", H.psql1(H.admin_dsn(), ([[
      SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s'
         AND state LIKE 'idle in transaction%%']]):format(dbname)))
    H.psql(db, "DELETE FROM t WHERE id = 100")
    gw:stop()
  end)

  it("replaces connections older than pool_recycle, never in the middle of a query", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 10, pool_recycle = 1 }
    local first = H.assert_ok(gw:get_json("/query/pid")).pid
    local t0 = H.now()
    local seen, order = { [first] = true }, { first }
    while H.now() - t0 < 3 and #order < 2 do
      local row = H.assert_ok(gw:get_json("/query/pid"))
      if not seen[row.pid] then
        seen[row.pid] = true
        order[#order + 1] = row.pid
        print(("# backend %d after %.2f s"):format(row.pid, H.now() - t0))
      end
      H.sleep(0.1)
    end
    assert(#order >= 2, "the backend pid did not change within 3 s with pool_recycle = 1")
    for _, pid in ipairs(sluice_pids()) do assert(pid ~= first, "the first backend is still open") end
    assert(backends() <= 1, "recycling left extra connections: " .. backends())
    -- a statement that outlives the connection's age still completes on it
    local s, row, h, raw = gw:get_json("/query/sleep?s=1.5", nil, 10)
    H.assert_ok(s, row, h, raw)
    assert(row.pid > 0)
    gw:stop()
  end)
end)
