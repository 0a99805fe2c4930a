-- resilience_spec.lua — fault tests against a real PostgreSQL: waiting for a server
-- (failover_wait_ms) while it is down, with the breaker left closed, and the recovery, statement timeouts (504, connection kept), cancellation of
-- an abandoned statement, retries of 40001 / 40P01 for idempotent and readonly queries only, no
-- blind resend of a write, and graceful shutdown on SIGTERM.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local RETRY_ATTEMPTS = 3

local scripts = {
  ["resilience.lua"] = ([==[
sluice.policy {
  breaker = { failures = 3, window_ms = 10000, open_ms = 1000, half_open = 1 },
  retry = { attempts = %d, base_ms = 10, max_ms = 100 },
}
sluice.query "get" { readonly = true, single = true, sql = [[ SELECT id, v FROM kv WHERE id = :id ]] }
sluice.query "record" { single = true, sql = [[ INSERT INTO ledger (id) VALUES (:id) RETURNING id ]] }
sluice.query "pid" { readonly = true, single = true, sql = [[ SELECT pg_backend_pid() AS pid ]] }
sluice.query "sleep" { readonly = true, single = true, sql = [[
  SELECT pg_backend_pid() AS pid FROM pg_sleep(:s::float8) ]] }
sluice.query "limited" { readonly = true, single = true, timeout_ms = 200, sql = [[
  SELECT pg_backend_pid() AS pid FROM pg_sleep(:s::float8) ]] }
sluice.query "flaky_idem" { idempotent = true, single = true, sql = [[ SELECT flaky(:seq, :fails, :code) AS n ]] }
sluice.query "flaky_ro" { readonly = true, single = true, sql = [[ SELECT flaky(:seq, :fails, :code) AS n ]] }
sluice.query "flaky_write" { single = true, sql = [[
  INSERT INTO writes (tag, n) SELECT :seq, flaky(:seq, :fails, :code) RETURNING tag, n ]] }
sluice.query "slow_write" { single = true, sql = [[
  INSERT INTO writes (tag, n) SELECT :seq, counted_sleep(:seq, :s) RETURNING tag, n ]] }
]==]):format(RETRY_ATTEMPTS),
}

local SCHEMA = [[
CREATE TABLE kv (id int4 PRIMARY KEY, v text NOT NULL);
INSERT INTO kv VALUES (1, 'one');
CREATE TABLE writes (tag text NOT NULL, n int4 NOT NULL);
CREATE TABLE ledger (id int4 PRIMARY KEY);
-- Fails with SQLSTATE code while the sequence seq has handed out at most `fails` values: the
-- sequence is not rolled back with the failed statement, so it counts the attempts.
CREATE FUNCTION flaky(seq text, fails int4, code text) RETURNS int4 LANGUAGE plpgsql AS $$
DECLARE n int4;
BEGIN
  n := nextval(seq::regclass);
  IF n <= fails THEN
    RAISE EXCEPTION 'simulated failure (attempt % of %)', n, fails USING ERRCODE = code;
  END IF;
  RETURN n;
END $$;
-- Counts an attempt in the sequence seq, then sleeps s seconds.
CREATE FUNCTION counted_sleep(seq text, s float8) RETURNS int4 LANGUAGE plpgsql AS $$
DECLARE n int4;
BEGIN
  n := nextval(seq::regclass);
  PERFORM pg_sleep(s);
  RETURN n;
END $$;
]]

describe("resilience", function()
  local db, dbname

  setup(function()
    db = H.createdb("resilience")
    dbname = H.dsn_dbname(db)
    H.psql(db, SCHEMA)
  end)

  -- The server may still be down or starting after a failed test.
  local function ensure_up()
    H.sh(H.testdb_cmd("up"))
    local deadline = H.now() + 15
    while not pcall(H.psql, H.admin_dsn(), "SELECT 1") and H.now() < deadline do H.sleep(0.2) end
  end

  teardown(function()
    H.cleanup()
    if db then
      ensure_up()
      H.dropdb(db)
    end
  end)

  local function sql1(sql) return H.psql1(db, sql) end

  local wait_for = H.wait_for

  local function backends()
    return tonumber(H.psql1(H.admin_dsn(), ([[
      SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname)))
  end

  -- pids of the gateway's backends running a statement that contains `what` (pg_sleep) now.
  local function sleeping_pids(what)
    local out = H.psql(H.admin_dsn(), ([[
      SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s'
         AND state = 'active' AND query LIKE '%%%s%%']]):format(dbname, what or "pg_sleep"))
    local pids = {}
    for pid in out:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
    return pids
  end

  local function terminate_leftovers()
    H.psql(H.admin_dsn(), ([[
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname))
  end

  -- When the backend pid last changed state to idle (epoch seconds), or nil (busy or gone).
  local function idle_since(pid)
    return tonumber(H.psql1(H.admin_dsn(), ([[
      SELECT extract(epoch FROM state_change) FROM pg_stat_activity WHERE pid = %d AND state = 'idle']]):format(pid)))
  end

  -- Processes stopped with SIGSTOP by a test; continued again whatever happens.
  local stopped = {}
  local function stop_procs(pids)
    for _, pid in ipairs(pids) do
      stopped[#stopped + 1] = pid
      H.sh("kill -STOP " .. pid)
    end
  end
  local function continue_procs()
    for _, pid in ipairs(stopped) do H.sh("kill -CONT " .. pid) end
    stopped = {}
  end

  -- Most tests start a gateway of their own (start); one left running by a failed test is
  -- stopped here with whatever it left running on the server, so that the next test sees its own.
  local own = {}
  after_each(function()
    continue_procs()
    if #own > 0 then
      for _, gw in ipairs(own) do pcall(gw.stop, gw) end
      own = {}
      pcall(terminate_leftovers)
    end
  end)

  local function launch(pool, config)
    local gone = wait_for(function() return backends() == 0 end, 5)
    assert(gone, "backends of an earlier gateway are still open: " .. backends())
    local cfg = { workers = 1 }
    for k, v in pairs(config or {}) do cfg[k] = v end
    return H.start { dsn = db, scripts = scripts, config = cfg, pool = pool }
  end

  local function start(pool, config)
    local gw = launch(pool, config)
    own[#own + 1] = gw
    return gw
  end

  -- Attempts counted by the sequence seq (see flaky()).
  local function attempts(seq)
    return tonumber(sql1(("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s"):format(seq)))
  end

  ---------------------------------------------------------------------------------------------

  it("answers 504 for a statement over its timeout_ms and keeps the connection usable", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 5 }
    local pid = H.assert_ok(gw:get_json("/query/pid")).pid
    local t0 = H.now()
    local s, b, h, raw = gw:get_json("/query/limited?s=2", nil, 10)
    local took = H.now() - t0
    H.assert_error(504, "timeout", s, b, h, raw)
    assert(took < 1, ("the 504 took %.2f s (timeout_ms 200)"):format(took))
    assert.equal("57014", b.error.sqlstate)
    print(("# 504 after %.2f s"):format(took))
    -- the backend is idle again at once, and the same connection serves the next request
    assert(wait_for(function() return #sleeping_pids() == 0 end, 1), "the statement still runs on the server")
    assert.equal(pid, H.assert_ok(gw:get_json("/query/pid")).pid)
    -- the 200 ms limit belongs to that query only: others on the connection keep the pool's
    s, b, h, raw = gw:get_json("/query/sleep?s=0.5", nil, 10)
    H.assert_ok(s, b, h, raw)
    assert.equal(pid, b.pid)
    H.assert_ok(gw:get_json("/query/limited?s=0.01"))
    -- statement timeouts of one query never open the breaker (failures = 3)
    for i = 1, 4 do
      s, b, h, raw = gw:get_json("/query/limited?s=1", nil, 10)
      H.assert_error(504, "timeout", s, b, h, raw)
    end
    H.assert_ok(gw:get_json("/query/get?id=1"))
    local _, hb = gw:get_json("/health")
    assert(hb and hb.pools.primary.breaker == "closed", "after statement timeouts: " .. H.encode(hb))
    gw:stop()
  end)

  it("cancels the statement of a client that disconnects", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 5 }
    local dir = H.tmpdir("sluice-cancel")
    -- the client gives up after 1 s; the file "gone" gets the time it did
    H.must(("( curl -s -m 1 -o /dev/null %s; date +%%s.%%N >%s.tmp; mv %s.tmp %s ) </dev/null >/dev/null 2>&1 &")
      :format(H.q(gw:url("/query/sleep?s=5")), H.q(dir .. "/gone"), H.q(dir .. "/gone"), H.q(dir .. "/gone")))
    local running = wait_for(function()
      local p = sleeping_pids()
      return #p == 1 and p[1]
    end, 1, 0.02)
    assert(running, "the statement did not start")
    local gone_at = wait_for(function() return tonumber(H.readfile(dir .. "/gone") or "") end, 5, 0.02)
    H.sh("rm -rf " .. H.q(dir))
    assert(gone_at, "the client did not finish")
    local ended = wait_for(function() return #sleeping_pids() == 0 end, 3, 0.05)
    assert(ended, "pg_sleep(5) still runs on the server 3 s after its client left")
    -- when the backend went idle, by the server's clock (the polling above lags under load)
    local after = (idle_since(running) or H.now()) - gone_at
    print(("# the statement stopped %.2f s after its client left"):format(after))
    assert(after < 1.2, ("the statement stopped %.2f s after its client left (want within 1 s)"):format(after))
    -- the connection serves at once: nothing of the abandoned statement holds it
    local t0 = H.now()
    H.assert_ok(gw:get_json("/query/get?id=1", nil, 5))
    assert(H.now() - t0 < 0.5, ("the next request took %.2f s"):format(H.now() - t0))
    gw:stop()
  end)

  describe("retries", function()
    -- one gateway for these: a pool of 2 on one worker
    local gw
    setup(function() gw = launch { pool_size = 2, max_overflow = 0, pool_timeout = 5 } end)
    teardown(function() if gw then pcall(gw.stop, gw) end end)

    it("resends an idempotent query after 40001 and a readonly one after 40P01", function()
      sql1("CREATE SEQUENCE s_idem; CREATE SEQUENCE s_ro")
      local s, b, h, raw = gw:post_json("/query/flaky_idem", { seq = "s_idem", fails = 1, code = "40001" })
      H.assert_ok(s, b, h, raw)
      assert.equal(2, b.n)
      assert.equal(2, attempts("s_idem"))
      s, b, h, raw = gw:get_json("/query/flaky_ro?seq=s_ro&fails=2&code=40P01")
      H.assert_ok(s, b, h, raw)
      assert.equal(3, b.n)
      assert.equal(3, attempts("s_ro"))
    end)

    it("gives up after retry.attempts tries in all", function()
      sql1("CREATE SEQUENCE s_many")
      local s, b, h, raw = gw:post_json("/query/flaky_idem", { seq = "s_many", fails = 100, code = "40001" })
      H.assert_error(409, "conflict", s, b, h, raw)
      assert.equal("40001", b.error.sqlstate)
      assert.equal(RETRY_ATTEMPTS, attempts("s_many"))
    end)

    it("does not retry a write that is neither readonly nor idempotent", function()
      sql1("CREATE SEQUENCE s_write")
      local s, b, h, raw = gw:post_json("/query/flaky_write", { seq = "s_write", fails = 1, code = "40001" })
      H.assert_error(409, "conflict", s, b, h, raw)
      assert.equal("40001", b.error.sqlstate)
      assert.equal(1, attempts("s_write"))
      assert.equal("0", sql1("SELECT count(*) FROM writes WHERE tag = 's_write'"))
      -- the next call succeeds on its first try (the sequence is past `fails`)
      s, b, h, raw = gw:post_json("/query/flaky_write", { seq = "s_write", fails = 1, code = "40001" })
      H.assert_ok(s, b, h, raw)
      assert.equal(2, b.n)
      assert.equal(2, attempts("s_write"))
    end)
  end)

  it("runs a write again when the server ended it before it completed (rolled back), once", function()
    -- pg_terminate_backend ends the statement with FATAL 57P01 before it completes: its implicit
    -- transaction rolls back, so the write is not in doubt and runs again on a new connection.
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 5 }
    sql1("CREATE SEQUENCE s_lost")
    local call = gw:async("POST", "/query/slow_write", { seq = "s_lost", s = 1 }, nil, 10)
    local pids = wait_for(function()
      local p = sleeping_pids("counted_sleep")
      return #p == 1 and p
    end, 2, 0.02)
    assert(pids, "the write did not start")
    assert.equal("t", H.psql1(H.admin_dsn(), ("SELECT pg_terminate_backend(%d)"):format(pids[1])))
    local r = call.wait()
    assert(r.status == 200, "the write whose backend died: " .. tostring(r.status) .. " " .. r.body)
    assert.equal(2, r.json.n) -- the sequence (not transactional) saw both attempts
    assert.equal(2, attempts("s_lost"))
    assert.equal("1", sql1("SELECT count(*) FROM writes WHERE tag = 's_lost'")) -- written once
    H.assert_ok(gw:get_json("/query/get?id=1"))
    gw:stop()
  end)

  it("drains in-flight requests on SIGTERM and exits 0", function()
    -- one statement per connection, so that all three are seen running on the server
    local gw = start({ pool_size = 4, max_overflow = 0, pool_timeout = 5, pipeline_depth = 1 }, { shutdown_timeout = 5 })
    local reqs = {}
    for i = 1, 3 do reqs[i] = { path = "/query/sleep?s=1" } end
    local batch = gw:start_parallel(reqs, { timeout = 10 })
    assert(wait_for(function() return #sleeping_pids() == 3 end, 0.8, 0.02), "the three requests are not all running")
    local t_term = H.now()
    H.must("kill -TERM " .. gw.pid)
    H.sleep(0.3)
    -- new connections are no longer served
    local s = gw:get("/query/get?id=1", nil, 2)
    assert(s == nil or s == 503, "a request after SIGTERM got " .. tostring(s))
    local res = batch:wait()
    for i, r in ipairs(res) do
      assert(r.status == 200, ("in-flight request %d: %s %s"):format(i, tostring(r.status), r.body))
    end
    local rc = wait_for(function() return gw:exit_code() end, 6, 0.05)
    local took = H.now() - t_term
    assert(rc, "the gateway still runs 6 s after SIGTERM (shutdown_timeout 5)")
    assert(rc == 0, "exit code " .. tostring(rc) .. "; log:\n" .. gw:log():sub(-2000))
    assert(took < 5.5, ("exited %.1f s after SIGTERM"):format(took))
    print(("# exited %.2f s after SIGTERM"):format(took))
  end)

  it("exits 0 within shutdown_timeout even when a request runs longer", function()
    local gw = start({ pool_size = 1, max_overflow = 0, pool_timeout = 5 }, { shutdown_timeout = 1 })
    local call = gw:async("GET", "/query/sleep?s=10", nil, nil, 15)
    assert(wait_for(function() return #sleeping_pids() == 1 end, 2, 0.02), "the request did not start")
    local t_term = H.now()
    H.must("kill -TERM " .. gw.pid)
    local rc = wait_for(function() return gw:exit_code() end, 4, 0.05)
    local took = H.now() - t_term
    local r = call.wait()
    terminate_leftovers()
    assert(rc, "the gateway still runs 4 s after SIGTERM (shutdown_timeout 1)")
    assert(rc == 0, "exit code " .. tostring(rc) .. "; log:\n" .. gw:log():sub(-2000))
    assert(took < 2, ("exited %.1f s after SIGTERM (shutdown_timeout 1)"):format(took))
    assert(r.status ~= 200, "the 10 s request cannot have completed")
    print(("# exited %.2f s after SIGTERM; the cut request got %s"):format(took, tostring(r.status)))
  end)

  it("answers 504 at the request deadline and cancels the statement on the server", function()
    local gw = start({ pool_size = 1, max_overflow = 0, pool_timeout = 5 }, { request_timeout = 1 })
    local pid = H.assert_ok(gw:get_json("/query/pid")).pid
    local t0 = H.now()
    local s, b, h, raw = gw:get_json("/query/sleep?s=5", nil, 10)
    local took = H.now() - t0
    H.assert_error(504, "timeout", s, b, h, raw)
    assert(took >= 0.9 and took < 1.6, ("the 504 came after %.2f s (request_timeout 1 s)"):format(took))
    local idle = wait_for(function() return #sleeping_pids() == 0 end, 3)
    assert(idle, "pg_sleep(5) still runs on the server 3 s after the deadline")
    local waited = (idle_since(pid) or H.now()) - (t0 + took)
    assert(waited < 1, ("the statement stopped %.2f s after the deadline"):format(waited))
    t0 = H.now()
    H.assert_ok(gw:get_json("/query/get?id=1", nil, 5))
    assert(H.now() - t0 < 0.5, ("the next request took %.2f s"):format(H.now() - t0))
    print(("# 504 after %.2f s; the statement stopped %.2f s after it"):format(took, waited))
    gw:stop()
  end)

  it("answers 504 on its own when the server does not answer past timeout_ms", function()
    local gw = start { pool_size = 1, max_overflow = 0, pool_timeout = 5 }
    local pid = H.assert_ok(gw:get_json("/query/pid")).pid
    -- the backend is frozen: its statement_timeout cannot fire, only the gateway can answer
    stop_procs({ pid })
    local t0 = H.now()
    local s, b, h, raw = gw:get_json("/query/limited?s=5", nil, 10)
    local took = H.now() - t0
    continue_procs()
    H.assert_error(504, "timeout", s, b, h, raw)
    assert(took >= 0.2 and took < 2, ("the 504 came after %.2f s (timeout_ms 200)"):format(took))
    print(("# 504 after %.2f s with the backend frozen"):format(took))
    -- once it runs again, the cancelled statement ends at once and the pool serves
    assert(wait_for(function() return #sleeping_pids() == 0 end, 2), "the statement still runs on the server")
    H.assert_ok(gw:get_json("/query/get?id=1", nil, 5))
    gw:stop()
  end)

  it("answers 503/504 promptly while every PostgreSQL process is frozen, and recovers", function()
    local dir = os.getenv("TESTDB_DIR")
    assert(dir and dir ~= "", "TESTDB_DIR is not set (scripts/testdb.sh env)")
    local LIMIT = 2 -- request_timeout and pool_timeout
    local gw = start({ pool_size = 2, max_overflow = 0, pool_timeout = LIMIT, connect_timeout = 1 },
      { workers = 2, request_timeout = LIMIT })
    local function round(n)
      local reqs = {}
      for i = 1, n do reqs[i] = { path = "/query/get?id=1" } end
      return gw:parallel(reqs, { timeout = LIMIT + 8 })
    end
    for i, r in ipairs(round(8)) do assert(r.status == 200, "warm-up " .. i .. ": " .. r.body) end
    local postmaster = tonumber((H.readfile(dir .. "/data/postmaster.pid") or ""):match("^(%d+)"))
    assert(postmaster, "no postmaster.pid in " .. dir .. "/data")
    stop_procs({ postmaster })
    local children = {}
    for pid in H.sh("pgrep -P " .. postmaster):gmatch("%d+") do children[#children + 1] = tonumber(pid) end
    stop_procs(children)
    local seen = {}
    local ok, err = pcall(function()
      local t_end = H.now() + 3
      while H.now() < t_end do
        for i, r in ipairs(round(4)) do
          seen[tostring(r.status)] = (seen[tostring(r.status)] or 0) + 1
          assert(r.status == 503 or r.status == 504,
            ("frozen server, request %d: %s %s"):format(i, tostring(r.status), r.body))
          assert(r.time < LIMIT + 0.5, ("frozen server, request %d took %.2f s"):format(i, r.time))
          assert(type(r.json) == "table" and type(r.json.error) == "table", "not a JSON error: " .. r.body)
          if r.status == 503 then assert(r.headers["retry-after"], "503 without Retry-After") end
        end
        assert.is_true(gw:alive(), "the gateway died")
      end
    end)
    continue_procs()
    assert(ok, err)
    local back_at, back = H.now(), nil
    while H.now() < back_at + 10 do
      local all_ok = true
      for _, r in ipairs(round(8)) do all_ok = all_ok and r.status == 200 end
      if all_ok then back = H.now() - back_at; break end
      H.sleep(0.1)
    end
    local parts = {}
    for k, n in pairs(seen) do parts[#parts + 1] = k .. " x" .. n end
    table.sort(parts)
    print(("# while frozen: %s; full service %s s after SIGCONT"):format(table.concat(parts, ", "),
      back and ("%.2f"):format(back) or "never"))
    assert(back and back < 5, "not every request succeeds within 5 s of the server running again")
    for i, r in ipairs(round(20)) do assert(r.status == 200, "after recovery, request " .. i .. ": " .. r.body) end
    gw:stop()
  end)

  it("waits failover_wait_ms while PostgreSQL is down, then 503, breaker closed, and recovers", function()
    local POOL_TIMEOUT, WAIT = 2, 1
    local gw = start({ pool_size = 2, max_overflow = 0, pool_timeout = POOL_TIMEOUT, connect_timeout = 1,
      failover_wait_ms = WAIT * 1000 }, { workers = 2 })
    local all, counts = {}, {}
    local next_id, acked = 0, {}
    -- the gateway's open descriptors, before and after the whole fault
    local function fds() return tonumber((H.must("ls /proc/" .. gw.pid .. "/fd | wc -l"):gsub("%s", ""))) end
    local function round(phase, n)
      local reqs = {}
      -- half reads, half writes of unique ids (the ledger)
      for i = 1, n or 4 do
        if i % 2 == 0 then
          next_id = next_id + 1
          reqs[i] = { path = "/query/record", body = { id = next_id } }
        else
          reqs[i] = { path = "/query/get?id=1" }
        end
      end
      local t0 = H.now()
      local res = gw:parallel(reqs, { timeout = POOL_TIMEOUT + 8 })
      for i, r in ipairs(res) do
        r.started, r.phase = t0, phase
        if reqs[i].body and r.status == 200 then acked[#acked + 1] = reqs[i].body.id end
        all[#all + 1] = r
        local k = phase .. " " .. tostring(r.status)
        counts[k] = (counts[k] or 0) + 1
        -- whatever happens, an answer comes within pool_timeout and is a proper one
        assert(r.status, ("%s, request %d: no HTTP answer"):format(phase, i))
        assert(r.time < POOL_TIMEOUT + 0.5, ("%s, request %d took %.2f s (pool_timeout %d)"):format(phase, i, r.time, POOL_TIMEOUT))
        if r.status ~= 200 then
          assert(type(r.json) == "table" and type(r.json.error) == "table", phase .. ": not a JSON error: " .. r.body)
          if r.status == 503 then assert(r.headers["retry-after"], phase .. ": 503 without Retry-After") end
        end
      end
      assert.is_true(gw:alive(), "the gateway died: " .. gw:log():sub(-2000))
      return res
    end
    for _ = 1, 3 do
      for i, r in ipairs(round("before")) do assert(r.status == 200, "warm-up " .. i .. ": " .. r.body) end
    end
    local fds_before = fds()

    local dir = H.tmpdir("sluice-down")
    H.must(("( %s >%s 2>&1; echo $? >%s/rc; date +%%s.%%N >%s.tmp; mv %s.tmp %s ) </dev/null >/dev/null 2>&1 &")
      :format(H.testdb_cmd("down"), H.q(dir .. "/out"), H.q(dir), H.q(dir .. "/at"), H.q(dir .. "/at"), H.q(dir .. "/at")))
    local ok, err = pcall(function()
      local down_at
      local deadline = H.now() + 30
      repeat
        round("stopping")
        H.sleep(0.05)
        down_at = tonumber(H.readfile(dir .. "/at") or "")
      until down_at or H.now() > deadline
      assert(down_at, "stopping PostgreSQL did not finish")
      assert(H.readfile(dir .. "/rc") == "0\n", "stopping PostgreSQL failed: " .. (H.readfile(dir .. "/out") or ""))

      -- while the server is down every request waits failover_wait_ms for one, then gets 503 +
      -- Retry-After; failed connects never open the breaker
      local breaker_seen, health_seen = {}, {}
      while H.now() < down_at + 4 do
        local res = round("down")
        for _, r in ipairs(res) do
          assert(r.status ~= 200, "a request succeeded while PostgreSQL is down: " .. r.body)
        end
        local _, hb = gw:get_json("/health", nil, 2)
        if hb and hb.pools then
          breaker_seen[hb.pools.primary.breaker] = true
          health_seen[hb.pools.primary.status] = true
        end
        H.sleep(0.05)
      end
      local off, longest = {}, 0
      for _, r in ipairs(all) do
        if r.started >= down_at + 0.5 then
          longest = math.max(longest, r.time)
          if r.status ~= 503 or r.time < WAIT - 0.1 or r.time >= WAIT + 0.6 then
            off[#off + 1] = ("%s after %.2f s: %s in %.3f s"):format(r.phase, r.started - down_at, tostring(r.status), r.time)
          end
        end
      end
      assert(#off == 0, "while PostgreSQL is down, answers other than 503 after failover_wait_ms:\n" .. table.concat(off, "\n"))
      assert.same({ closed = true }, breaker_seen)
      assert.same({ down = true }, health_seen)
      print(("# while down: every answer a 503 after failover_wait_ms (longest %.2f s), breaker closed"):format(longest))

      H.must(H.testdb_cmd("up"))
      local up_at = H.now()
      local first_ok, back
      while H.now() < up_at + 10 do
        local res = round("back", 8) -- enough to reach both workers
        local all_ok = true
        for _, r in ipairs(res) do
          all_ok = all_ok and r.status == 200
          if r.status == 200 and not first_ok then first_ok = H.now() - up_at end
        end
        if all_ok then back = H.now() - up_at; break end
        H.sleep(0.1)
      end
      print(("# first success %.2f s, full service %.2f s after the server is back")
        :format(first_ok or -1, back or -1))
      assert(first_ok and first_ok < 5, "no request succeeds within 5 s of PostgreSQL being back")
      assert(back and back < 5, ("not every request succeeds within 5 s of PostgreSQL being back (%s)")
        :format(back and ("%.2f s"):format(back) or "not within 10 s"))
      for i, r in ipairs(round("after", 20)) do
        assert(r.status == 200, "after recovery, request " .. i .. ": " .. tostring(r.status) .. " " .. r.body)
      end
      -- every acknowledged write is there
      local have = {}
      for id in H.psql(db, "SELECT id FROM ledger"):gmatch("%d+") do have[tonumber(id)] = true end
      local lost = {}
      for _, id in ipairs(acked) do
        if not have[id] then lost[#lost + 1] = id end
      end
      assert(#lost == 0, "acknowledged writes missing from the table: " .. table.concat(lost, ", "))
      local fds_after = wait_for(function()
        local n = fds()
        return n <= fds_before + 2 and n
      end, 3)
      assert(fds_after, ("open descriptors before the fault %d, after it %d"):format(fds_before, fds()))
      print(("# %d acknowledged writes all present; descriptors %d before, %d after"):format(#acked, fds_before, fds_after))
      local _, hb = gw:get_json("/health")
      assert(hb and hb.pools.primary.breaker == "closed", "after recovery: " .. H.encode(hb))
      local parts = {}
      for k, n in pairs(counts) do parts[#parts + 1] = k .. " x" .. n end
      table.sort(parts)
      print("# answers: " .. table.concat(parts, ", "))
      assert.is_true(gw:alive())
    end)
    H.sh("rm -rf " .. H.q(dir))
    ensure_up()
    assert(ok, err)
    assert.equal(0, gw:stop())
  end)
end)
