-- route_spec.lua — sluice.route against a real primary and a real streaming replica (started here
-- with pg_basebackup from the test server): readonly queries run on the replica
-- (pg_is_in_recovery() is true there), writes on the primary; a route function that errors,
-- returns an unknown pool or loops forever falls back to the query's own pool; /metrics labels
-- each query with the pool that ran it; readonly traffic falls back to the primary while the
-- replica is down and returns once it is back.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local PGBIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

-- The shell command that runs cmd as the postgres user when we are root (initdb, pg_ctl and
-- pg_basebackup refuse root), as it is otherwise.
local function as_pg(cmd)
  if H.must("id -u"):match("^0") then return "cd / && runuser -u postgres -- " .. cmd end
  return cmd
end

-- A streaming replica of the test server in a temp dir: { dir, port, dsn(dbname) , stop(), start() }.
local function start_replica()
  local r = { dir = H.tmpdir("sluice-replica"), port = H.free_port() }
  if H.must("id -u"):match("^0") then H.must("chown postgres:postgres " .. H.q(r.dir)) end
  H.must("chmod 700 " .. H.q(r.dir))
  local data = r.dir .. "/data"
  H.must(as_pg(("%s/pg_basebackup -d %s -D %s -R -X stream -c fast"):format(
    PGBIN, H.q(H.admin_dsn()), H.q(data))))
  -- the copied postgresql.conf names the primary's port and socket directory; later lines win
  H.must(("printf '%%s\\n' %s %s %s >>%s"):format(H.q("port = " .. r.port),
    H.q("unix_socket_directories = '" .. r.dir .. "'"), H.q("listen_addresses = '127.0.0.1'"),
    H.q(data .. "/postgresql.conf")))
  function r.start()
    H.must(as_pg(("%s/pg_ctl -D %s -l %s -w -t 30 start"):format(PGBIN, H.q(data), H.q(r.dir .. "/replica.log"))))
  end
  function r.stop(mode)
    H.sh(as_pg(("%s/pg_ctl -D %s -m %s -w -t 20 stop"):format(PGBIN, H.q(data), mode or "fast")))
  end
  function r.destroy()
    if H.readfile(data .. "/postmaster.pid") then r.stop("immediate") end
    H.sh("rm -rf " .. H.q(r.dir))
  end
  function r.dsn(dbname)
    return ("host=127.0.0.1 port=%d user=postgres dbname=%s"):format(r.port, dbname)
  end
  r.start()
  return r
end

-- Polls fn every interval seconds until it returns a true value or timeout seconds pass;
-- returns that value (or nil) and the seconds waited.
local wait_for = H.wait_for

local WHERE = "pg_is_in_recovery() AS in_recovery, inet_server_port() AS port"

local function scripts()
  local defs = {
    ('sluice.query "where" { readonly = true, single = true, sql = [[ SELECT %s, (SELECT count(*)::int4 FROM notes) AS notes ]] }'):format(WHERE),
    ('sluice.query "add_note" { single = true, sql = [[ INSERT INTO notes (body) VALUES (:body) RETURNING id, %s ]] }'):format(WHERE),
    ('sluice.query "where_w" { single = true, sql = [[ SELECT %s ]] }'):format(WHERE),
    ('sluice.query "m_read" { readonly = true, single = true, sql = [[ SELECT %s ]] }'):format(WHERE),
    ('sluice.query "m_write" { single = true, sql = [[ INSERT INTO notes (body) VALUES (:body) RETURNING %s ]] }'):format(WHERE),
    ('sluice.query "by_method" { readonly = true, single = true, sql = [[ SELECT %s ]] }'):format(WHERE),
  }
  -- one query per misbehaving route kind, on each pool: the fallback is the query's own pool
  for _, kind in ipairs { "boom", "bogus", "number", "spin", "spinpcall" } do
    defs[#defs + 1] = ('sluice.query "%s_p" { readonly = true, single = true, sql = [[ SELECT %s ]] }'):format(kind, WHERE)
    defs[#defs + 1] = ('sluice.query "%s_r" { readonly = true, single = true, pool = "replica", sql = [[ SELECT %s ]] }'):format(kind, WHERE)
  end
  defs[#defs + 1] = [==[
function sluice.route(query, req)
  local kind = query.name:match("^(%a+)_[pr]$")
  if kind == "boom" then error("route exploded for " .. query.name) end
  if kind == "bogus" then return "no_such_pool" end
  if kind == "number" then return 42 end
  if kind == "spin" then while true do end end
  if kind == "spinpcall" then
    while true do pcall(function() while true do end end) end
  end
  if query.name == "by_method" then
    if req.method == "GET" then return "replica" end
    return "primary"
  end
  if query.readonly and sluice.pools.replica and sluice.pools.replica.healthy then return "replica" end
  return "primary"
end
]==]
  return { ["route.lua"] = table.concat(defs, "\n") .. "\n" }
end

describe("route", function()
  local db, dbname, replica, gw, pport, rport

  setup(function()
    db = H.createdb("route")
    dbname = H.dsn_dbname(db)
    H.psql(db, "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);")
    pport = tonumber(H.psql1(db, "SELECT inet_server_port()"))
    replica = start_replica()
    rport = replica.port
    local rdsn = replica.dsn(dbname)
    -- the replica has replayed the table
    assert(wait_for(function()
      local ok, v = pcall(H.psql1, rdsn, "SELECT to_regclass('notes') IS NOT NULL")
      return ok and v == "t"
    end, 10, 0.1), "the replica did not catch up")
    gw = H.start { dsn = db, scripts = scripts(), config = {
      pools = {
        primary = { url = db, pool_size = 2 },
        -- a request routed to the replica just before it goes down waits this long for it; the
        -- next ones are routed to the primary (sluice.pools.replica.healthy)
        replica = { url = rdsn, pool_size = 2, failover_wait_ms = 1000 },
      },
    } }
  end)

  teardown(function()
    H.cleanup()
    if replica then replica.destroy() end
    if db then H.dropdb(db) end
  end)

  local function where(path, method, body)
    local s, b, _, raw = gw:json(method or "GET", path, body)
    assert.equal(200, s, raw)
    return b
  end

  it("the replica is a real one: in recovery, on its own port", function()
    assert.equal("t", H.psql1(replica.dsn(dbname), "SELECT pg_is_in_recovery()"))
    assert.equal("f", H.psql1(db, "SELECT pg_is_in_recovery()"))
    assert.are_not.equal(pport, rport)
  end)

  it("readonly queries run on the replica, writes on the primary", function()
    for _ = 1, 10 do
      local b = where("/query/where")
      assert.same({ in_recovery = true, port = rport }, { in_recovery = b.in_recovery, port = b.port })
      b = where("/query/where", "POST", {})
      assert.is_true(b.in_recovery)
    end
    for i = 1, 5 do
      local b = where("/query/add_note", "POST", { body = "n" .. i })
      assert.same({ in_recovery = false, port = pport }, { in_recovery = b.in_recovery, port = b.port })
      b = where("/query/where_w", "POST", {})
      assert.same({ in_recovery = false, port = pport }, b)
    end
    assert.equal("5", H.psql1(db, "SELECT count(*) FROM notes"))
    -- what was written on the primary shows up through the replica once replayed
    local seen = wait_for(function() return where("/query/where").notes == 5 end, 5, 0.05)
    assert.truthy(seen, "the replica did not show the 5 notes")
  end)

  it("pipelined /batch items are routed one by one; a transaction stays on one pool", function()
    local s, b, _, raw = gw:post_json("/batch", H.encode(H.array {
      { query = "where" }, { query = "where_w" }, { query = "by_method" } }))
    assert.equal(200, s, raw)
    assert.same({ true, rport }, { b[1].body.in_recovery, b[1].body.port }) -- readonly: the replica
    assert.same({ false, pport }, { b[2].body.in_recovery, b[2].body.port }) -- a write: the primary
    assert.is_false(b[3].body.in_recovery) -- by_method: the route sees POST
    s, b, _, raw = gw:post_json("/batch?transaction=true", H.encode(H.array { { query = "where" } }))
    assert.equal(200, s, raw)
    assert.is_false(b[1].body.in_recovery) -- one transaction, on the first query's own pool
  end)

  it("the route function sees the request (method)", function()
    local b = where("/query/by_method")
    assert.is_true(b.in_recovery)
    b = where("/query/by_method", "POST", {})
    assert.is_false(b.in_recovery)
    assert.equal(pport, b.port)
  end)

  it("a route function that errors falls back to the query's own pool", function()
    local before = select(2, gw:log():gsub("route exploded", ""))
    for _ = 1, 3 do
      local b = where("/query/boom_p")
      assert.same({ in_recovery = false, port = pport }, b)
      b = where("/query/boom_r")
      assert.same({ in_recovery = true, port = rport }, b)
    end
    local log = wait_for(function()
      local l = gw:log()
      return select(2, l:gsub("route exploded", "")) >= before + 6 and l
    end, 2)
    assert.truthy(log, "the route errors are logged:\n" .. gw:log())
  end)

  it("a route function that names no pool falls back to the query's own pool", function()
    for _ = 1, 3 do
      assert.same({ in_recovery = false, port = pport }, where("/query/bogus_p"))
      assert.same({ in_recovery = true, port = rport }, where("/query/bogus_r"))
      assert.same({ in_recovery = false, port = pport }, where("/query/number_p"))
      assert.same({ in_recovery = true, port = rport }, where("/query/number_r"))
    end
    assert.truthy(wait_for(function() return gw:log():find("no_such_pool", 1, true) end, 2),
      "the unknown pool name is logged")
  end)

  it("a route function in an endless loop is stopped; the request still succeeds within 1 s", function()
    for _ = 1, 3 do
      local t0 = H.now()
      local b = where("/query/spin_p")
      assert.truthy(H.now() - t0 < 1, "answered in " .. (H.now() - t0) .. " s")
      assert.same({ in_recovery = false, port = pport }, b)
      t0 = H.now()
      b = where("/query/spin_r")
      assert.truthy(H.now() - t0 < 1, "answered in " .. (H.now() - t0) .. " s")
      assert.same({ in_recovery = true, port = rport }, b)
    end
    -- several at once, and the workers serve on afterwards
    local reqs = {}
    for i = 1, 8 do reqs[i] = { path = i % 2 == 0 and "/query/spin_p" or "/query/spin_r" } end
    for _, r in ipairs(gw:parallel(reqs, { timeout = 5 })) do
      assert.equal(200, r.status, r.body)
    end
    for _ = 1, 6 do assert.is_true(where("/query/where").in_recovery) end
  end)

  it("/metrics labels each query with the pool that ran it", function()
    for _ = 1, 7 do assert.is_true(where("/query/m_read").in_recovery) end
    for i = 1, 3 do assert.is_false(where("/query/m_write", "POST", { body = "m" .. i }).in_recovery) end
    local s, text = gw:get("/metrics")
    assert.equal(200, s)
    local function sample(name, labels)
      for line in text:gmatch("[^\n]+") do
        local n, l, v = line:match("^([%w_]+){(.-)} (%S+)$")
        if n == name and l == labels then return tonumber(v) end
      end
    end
    assert.equal(7, sample("db_query_count", 'pool="replica",query="m_read",status="ok"'), text)
    assert.equal(3, sample("db_query_count", 'pool="primary",query="m_write",status="ok"'), text)
    assert.equal(7, sample("prepared_stmt_executions_total", 'pool="replica",query="m_read"'), text)
    -- nothing of m_read ran on the primary, nothing of m_write on the replica
    assert.truthy((sample("db_query_count", 'pool="primary",query="m_read",status="ok"') or 0) == 0, text)
    assert.is_nil(sample("db_query_count", 'pool="replica",query="m_write",status="ok"'), text)
    -- the route fallbacks count on the pool that really ran them
    assert.equal(3, sample("db_query_count", 'pool="replica",query="boom_r",status="ok"'), text)
    assert.equal(3, sample("db_query_count", 'pool="primary",query="boom_p",status="ok"'), text)
  end)

  it("readonly traffic falls back to the primary while the replica is down, and returns", function()
    replica.stop("fast")
    local t0 = H.now()
    local back = wait_for(function()
      local s, b = gw:get_json("/query/where")
      return s == 200 and b.in_recovery == false
    end, 10, 0.1)
    assert.truthy(back, "readonly traffic did not fall back to the primary within 10 s")
    -- the route function reads sluice.pools.replica.healthy: from now on no request fails
    H.sleep(1.2) -- both workers have refreshed the flag
    local res = gw:parallel((function()
      local t = {}
      for i = 1, 30 do t[i] = { path = "/query/where" } end
      return t
    end)(), { max = 4, timeout = 5 })
    for _, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      assert.same({ false, pport }, { r.json.in_recovery, r.json.port })
    end
    local s, h = gw:get_json("/health")
    assert.equal("down", h.pools.replica.status)
    assert.equal("ok", h.pools.primary.status)
    assert.truthy(H.now() - t0 < 20)

    replica.start()
    -- each worker learns on its own (its pool reconnects, its flag refreshes every second), so
    -- the return is complete when several answers in a row come from the replica
    local streak = 0
    local again = wait_for(function()
      local st, b = gw:get_json("/query/where")
      if st == 200 and b.in_recovery == true then streak = streak + 1 else streak = 0 end
      return streak >= 6
    end, 10, 0.1)
    assert.truthy(again, "readonly traffic did not return to the replica within 10 s; /health: " ..
      tostring(select(4, gw:get_json("/health"))))
    for _ = 1, 6 do
      local st, b = gw:get_json("/query/where")
      assert.equal(200, st)
      assert.is_true(b.in_recovery)
    end
  end)

  -- Last: when it fails, a worker may stay stuck in the route function.
  it("a route function that swallows the stop with pcall is still stopped", function()
    local t0 = H.now()
    local s, b, _, raw = gw:get_json("/query/spinpcall_p", nil, 3)
    assert.equal(200, s, raw)
    assert.truthy(H.now() - t0 < 1, "answered in " .. (H.now() - t0) .. " s")
    assert.same({ in_recovery = false, port = pport }, b)
    for _ = 1, 6 do assert.equal(200, (gw:get_json("/query/where", nil, 3))) end
  end)
end)
