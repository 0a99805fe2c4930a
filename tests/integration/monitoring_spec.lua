-- monitoring_spec.lua — explain_slow plans in /admin/queries, db_deadlock_count from a real
-- deadlock between two transactions, echo = true statement log lines, and /health with
-- PostgreSQL stopped and started again.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local ADMIN = { Authorization = "Bearer s3cret" }

local PGBIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

-- cmd run as the postgres user when we are root (pg_basebackup and pg_ctl refuse root).
local function as_pg(cmd)
  if H.must("id -u"):match("^0") then return "cd / && runuser -u postgres -- " .. cmd end
  return cmd
end

-- A streaming replica of the test server in a temp dir: { dsn(dbname), destroy() }.
local function start_replica()
  local r = { dir = H.tmpdir("sluice-mon-replica"), port = H.free_port() }
  if H.must("id -u"):match("^0") then H.must("chown postgres:postgres " .. H.q(r.dir)) end
  H.must("chmod 700 " .. H.q(r.dir))
  local data = r.dir .. "/data"
  H.must(as_pg(("%s/pg_basebackup -d %s -D %s -R -X stream -c fast"):format(PGBIN, H.q(H.admin_dsn()), H.q(data))))
  H.must(("printf '%%s\\n' %s %s %s >>%s"):format(H.q("port = " .. r.port),
    H.q("unix_socket_directories = '" .. r.dir .. "'"), H.q("listen_addresses = '127.0.0.1'"),
    H.q(data .. "/postgresql.conf")))
  H.must(as_pg(("%s/pg_ctl -D %s -l %s -w -t 30 start"):format(PGBIN, H.q(data), H.q(r.dir .. "/replica.log"))))
  function r.destroy()
    H.sh(as_pg(("%s/pg_ctl -D %s -m immediate -w -t 20 stop"):format(PGBIN, H.q(data))))
    H.sh("rm -rf " .. H.q(r.dir))
  end
  function r.dsn(dbname)
    return ("host=127.0.0.1 port=%d user=postgres dbname=%s"):format(r.port, dbname)
  end
  return r
end

local scripts = {
  ["mon.lua"] = [==[
sluice.policy { slow_query_ms = 200, explain_slow = true }
sluice.query "nap" { readonly = true, single = true,
  sql = [[ SELECT pg_sleep(:secs::float8) IS NULL AS slept, count(*) AS n FROM locks WHERE id > :min::int ]] }
sluice.query "quick" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "lock_row" { sql = [[ UPDATE locks SET v = v + 1 WHERE id = :id RETURNING id ]] }
sluice.query "pause" { sql = [[ SELECT pg_sleep(:secs::float8) IS NULL AS slept ]] }
]==],
}

-- The Prometheus sample value of a series (exact text of name{labels}), or nil.
local function sample(text, series)
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^(%S+) (%S+)$")
    if k == series then return tonumber(v) end
  end
  return nil
end

local function wait_for(pred, timeout)
  local deadline = H.now() + (timeout or 5)
  repeat
    local v = pred()
    if v then return v end
    H.sleep(0.05)
  until H.now() > deadline
  return nil
end

describe("monitoring", function()
  local db, gw

  setup(function()
    db = H.createdb("monitoring")
    H.psql(db, "CREATE TABLE locks (id int PRIMARY KEY, v int NOT NULL); INSERT INTO locks VALUES (1, 0), (2, 0)")
    gw = H.start { dsn = db, scripts = scripts, pool = { pool_size = 4, echo = true }, config = { admin_token = "s3cret" } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function queries()
    local s, b, h, raw = gw:get_json("/admin/queries", ADMIN)
    H.assert_ok(s, b, h, raw)
    local by = {}
    for _, q in ipairs(b.queries) do by[q.name] = q end
    return by, raw
  end

  it("explain_slow: a slow query's plan appears in /admin/queries within 2 s", function()
    local by, raw = queries()
    assert.equal(H.null, by.nap.plan, raw)
    assert.equal(H.null, by.quick.plan, raw)
    local s, b, h, r = gw:get_json("/query/nap?secs=0.3&min=0")
    H.assert_ok(s, b, h, r)
    local plan = wait_for(function()
      local q = queries()
      return q.nap.plan ~= H.null and q.nap.plan
    end, 2)
    assert.is_table(plan, "no plan within 2 s")
    -- EXPLAIN (FORMAT JSON): an array of one object with a Plan
    assert.is_table(plan[1], raw)
    assert.is_table(plan[1].Plan, raw)
    assert.is_string(plan[1].Plan["Node Type"])
    -- the capture ran with the request's values and was rolled back: nothing left open
    assert.equal("0", (H.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'"):gsub("%s+", "")))
    -- a fast query has no plan
    s = gw:get_json("/query/quick")
    assert.equal(200, s)
    by = queries()
    assert.equal(H.null, by.quick.plan)
  end)

  it("echo = true logs every statement of the pool with its duration", function()
    local s = gw:get_json("/query/quick")
    assert.equal(200, s)
    local line = wait_for(function()
      for l in gw:log():gmatch("[^\n]+") do
        if l:find('"statement"', 1, true) and l:find('"quick"', 1, true) then return l end
      end
    end, 2)
    assert.is_string(line, gw:log():sub(-2000))
    local ev = H.decode(line)
    assert.is_table(ev, line)
    assert.equal("info", ev.level, line)
    assert.equal("statement", ev.msg, line)
    local f = ev
    assert.equal("quick", f.query, line)
    assert.equal("primary", f.pool, line)
    assert.equal(200, f.status, line)
    assert.is_number(f.duration_ms, line)
  end)

  it("a real deadlock between two transactions increments db_deadlock_count", function()
    local _, before_text = gw:get("/metrics")
    local before = sample(before_text, 'db_deadlock_count{pool="primary"}')
    assert.is_number(before, "no db_deadlock_count for the pool")
    -- two transactions lock rows 1 and 2 in opposite order, pausing in between
    local function item(first, second)
      return H.encode(H.array {
        { query = "lock_row", params = { id = first } },
        { query = "pause", params = { secs = 0.5 } },
        { query = "lock_row", params = { id = second } },
      })
    end
    local dir = H.tmpdir("sluice-mon")
    local cmd = ("curl -s -o %s -w '%%{http_code}' -H 'Content-Type: application/json' --data-binary %s %s/batch?transaction=true > %s &")
    H.must(cmd:format(H.q(dir .. "/a.body"), H.q(item(1, 2)), gw.base, H.q(dir .. "/a.code")))
    H.must(cmd:format(H.q(dir .. "/b.body"), H.q(item(2, 1)), gw.base, H.q(dir .. "/b.code")))
    local done = wait_for(function()
      local a, b = H.readfile(dir .. "/a.code"), H.readfile(dir .. "/b.code")
      return a and b and #a == 3 and #b == 3 and { a, b }
    end, 10)
    assert.is_table(done, "the two transactions did not finish")
    local bodies = (H.readfile(dir .. "/a.body") or "") .. (H.readfile(dir .. "/b.body") or "")
    assert.is_truthy(bodies:find("40P01", 1, true) or bodies:find("deadlock", 1, true), bodies)
    local _, after_text = gw:get("/metrics")
    assert.equal(before + 1, sample(after_text, 'db_deadlock_count{pool="primary"}'), bodies)
  end)

  it("/health turns down and /health/ready 503 while PostgreSQL is stopped; both come back", function()
    local s, b = gw:get_json("/health")
    assert.equal(200, s)
    assert.equal("ok", b.status)
    H.must(H.testdb_cmd("down"))
    local ok, err = pcall(function()
      -- the pool notices on its next use or probe
      local down = wait_for(function()
        gw:get("/query/quick")
        local st, body = gw:get_json("/health")
        local rs = gw:get("/health/ready")
        return body and body.status == "down" and rs == 503
      end, 15)
      assert.is_true(down == true, "not down: " .. tostring(select(4, gw:get_json("/health"))))
    end)
    H.must(H.testdb_cmd("up"))
    assert(ok, err)
    local up = wait_for(function()
      gw:get("/query/quick")
      local st, body = gw:get_json("/health")
      local rs = gw:get("/health/ready")
      return body and body.status == "ok" and rs == 200
    end, 20)
    assert.is_true(up == true, "not back: " .. tostring(select(4, gw:get_json("/health"))))
  end)

  it("exits cleanly on SIGTERM (no sanitizer report from captures or probes)", function()
    local rc = gw:stop()
    assert.equal(0, rc, gw:log():sub(-3000))
  end)
end)

describe("replication lag in /health", function()
  local db, replica, gw

  setup(function()
    db = H.createdb("monlag")
    H.psql(db, "CREATE TABLE t (id int)")
    replica = start_replica()
    local rdsn = replica.dsn(H.dsn_dbname(db))
    assert(wait_for(function()
      local ok, v = pcall(H.psql1, rdsn, "SELECT to_regclass('t') IS NOT NULL")
      return ok and v == "t"
    end, 10), "the replica did not catch up")
    gw = H.start { dsn = db, scripts = { ["q.lua"] = 'sluice.query "one" { readonly = true, sql = [[ SELECT 1 ]] }\n' },
      config = { pools = { primary = { url = db, pool_size = 2 }, replica = { url = rdsn, pool_size = 2 } } } }
  end)

  teardown(function()
    H.cleanup()
    if replica then replica.destroy() end
    if db then H.dropdb(db) end
  end)

  it("is a number for the streaming replica and null for the primary", function()
    local got = wait_for(function()
      local s, b = gw:get_json("/health")
      return s == 200 and b.pools.replica and type(b.pools.replica.replication_lag_seconds) == "number" and b
    end, 6)
    assert.is_table(got, "no lag for the replica: " .. tostring(select(4, gw:get_json("/health"))))
    assert.is_true(got.pools.replica.replication_lag_seconds >= 0)
    assert.equal(H.null, got.pools.primary.replication_lag_seconds)
    -- and in /metrics: a series for the replica only
    local _, text = gw:get("/metrics")
    local lag = text:match('\nsluice_pool_replication_lag_seconds{pool="replica"} (%S+)\n')
    assert.truthy(lag and tonumber(lag) >= 0, text)
    assert.is_nil(text:find('sluice_pool_replication_lag_seconds{pool="primary"}', 1, true))
    -- a write replayed on the replica keeps the lag small
    H.psql(db, "INSERT INTO t VALUES (1)")
    H.sleep(2.5)
    local _, b = gw:get_json("/health")
    assert.is_number(b.pools.replica.replication_lag_seconds)
    assert.is_true(b.pools.replica.replication_lag_seconds < 5, H.encode(b))
  end)

  it("exits cleanly on SIGTERM with its probe connections open", function()
    local rc = gw:stop()
    assert.equal(0, rc, gw:log():sub(-3000))
  end)
end)

describe("scrape cost", function()
  local db, gw

  setup(function()
    db = H.createdb("monscrape")
    local defs = {}
    for i = 1, 100 do
      defs[#defs + 1] = ('sluice.query "q%03d" { readonly = true, single = true, sql = [[ SELECT 1/:d::int AS x ]] }'):format(i)
    end
    gw = H.start { dsn = db, scripts = { ["many.lua"] = table.concat(defs, "\n") .. "\n" }, pool = { pool_size = 4 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("GET /metrics with 100 queries (ok, bad_request, internal) costs under 2 ms per 1000 series (measured and printed)", function()
    for i = 1, 100 do
      local name = ("q%03d"):format(i)
      gw:get("/query/" .. name .. "?d=1")       -- ok
      gw:get("/query/" .. name .. "?d=zz")      -- bad_request
      gw:get("/query/" .. name .. "?d=0")       -- division by zero: internal
    end
    local _, text = gw:get("/metrics")
    local series = 0
    for line in text:gmatch("[^\n]+") do
      if line:sub(1, 1) ~= "#" then series = series + 1 end
    end
    assert.is_true(series >= 1000, "only " .. series .. " series")
    -- curl times each transfer on one kept-alive connection: time_starttransfer is the
    -- gateway's render (request sent to first byte), time_total adds the transfer
    local n = 50
    local urls = {}
    for i = 1, n do urls[i] = "-o /dev/null " .. H.q(gw.base .. "/metrics") end
    local out = H.must("curl -s -w '%{time_starttransfer} %{time_total}\\n' " .. table.concat(urls, " "))
    local first, total, k = 0, 0, 0
    for a, b in out:gmatch("(%S+) (%S+)") do
      first, total, k = first + tonumber(a), total + tonumber(b), k + 1
    end
    assert.equal(n, k, out)
    local ms = total * 1000 / n
    local per1000 = ms * 1000 / series
    print(("# scrape: %d series, %.3f ms to first byte, %.3f ms total per scrape, %.3f ms per 1000 series")
      :format(series, first * 1000 / n, ms, per1000))
    -- sanitizer builds (make asan) run several times slower, valgrind (make valgrind) tens of
    -- times: only a runaway is caught there
    local bound = H.wrapper and 60 or os.getenv("ASAN_OPTIONS") and 10 or 2
    assert.is_true(per1000 < bound, ("%.3f ms per 1000 series"):format(per1000))
  end)
end)
