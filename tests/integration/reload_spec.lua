-- reload_spec.lua — live reload against a real PostgreSQL: SIGHUP adds, changes and removes named
-- queries and handlers; a broken script leaves the old definitions serving (SIGHUP and
-- POST /admin/reload); requests in flight finish on the definitions they started with; pool_size
-- grows and shrinks under a steady stream of requests; a change that needs a restart is refused.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local TOKEN = "reload-s3cret"

local base_scripts = {
  ["queries.lua"] = [==[
sluice.query "val" { readonly = true, single = true, sql = [[ SELECT 1 AS v ]] }
sluice.query "gone_soon" { readonly = true, single = true, sql = [[ SELECT 'here' AS g ]] }
sluice.query "count_items" { readonly = true, single = true, sql = [[ SELECT count(*)::int4 AS n FROM items ]] }
]==],
}

-- Polls fn every interval seconds until it returns a true value or timeout seconds pass;
-- returns that value (or nil) and the seconds waited.
local wait_for = H.wait_for

local function hup(gw)
  H.must("kill -HUP " .. gw.pid)
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Waits (bounded) until the log holds more than `before` lines matching pat; returns the log.
local function wait_log(gw, pat, before, timeout)
  local log = wait_for(function()
    local l = gw:log()
    return count(l, pat) > before and l
  end, timeout or 3)
  assert(log, ("no new log line matching %q within %ss; log:\n%s"):format(pat, timeout or 3, gw:log()))
  return log
end

-- Sends `n` requests one after another (each on a new connection, so over both workers) and
-- asserts each answer with check(status, body, raw).
local function all_answer(gw, path, n, check)
  for i = 1, n do
    local s, b, h, raw = gw:get_json(path)
    check(s, b, raw, h)
  end
end

-- Waits up to timeout seconds until `streak` requests in a row satisfy pred(status, body);
-- returns the seconds waited (errors after the timeout with the last answer).
local function wait_answers(gw, path, pred, timeout, streak)
  local last
  local ok, waited = wait_for(function()
    for _ = 1, streak or 4 do
      local s, b, _, raw = gw:get_json(path)
      last = tostring(s) .. " " .. tostring(raw)
      if not pred(s, b) then return false end
    end
    return true
  end, timeout, 0.02)
  assert(ok, ("%s: not the expected answer within %ss (last: %s)"):format(path, timeout, last))
  return waited
end

describe("reload", function()
  local db, dbname, gw, sdir

  setup(function()
    db = H.createdb("reload")
    dbname = H.dsn_dbname(db)
    H.psql(db, "CREATE TABLE items (id int4 PRIMARY KEY, name text NOT NULL); INSERT INTO items VALUES (1, 'one');")
    gw = H.start { dsn = db, scripts = base_scripts, config = { admin_token = TOKEN },
      pool = { pool_size = 4, max_overflow = 4 } }
    sdir = gw.dir .. "/scripts"
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function reloads() return count(gw:log(), "reloaded:") end

  describe("SIGHUP", function()
    it("serves a query from a newly added file within 2 s", function()
      H.assert_error(404, "not_found", gw:get_json("/query/added"))
      H.writefile(sdir .. "/added.lua", [==[
sluice.query "added" { readonly = true, single = true, sql = [[ SELECT 'fresh' AS a, count(*)::int4 AS n FROM items ]] }
]==])
      local before = reloads()
      hup(gw)
      local waited = wait_answers(gw, "/query/added", function(s) return s == 200 end, 2)
      assert.is_true(waited <= 2)
      wait_log(gw, "reloaded:", before)
      all_answer(gw, "/query/added", 20, function(s, b, raw)
        assert.equal(200, s, raw)
        assert.same({ a = "fresh", n = 1 }, b)
      end)
      -- the old queries still serve
      local s, b = gw:get_json("/query/val")
      assert.equal(200, s)
      assert.same({ v = 1 }, b)
    end)

    it("a changed query's new SQL takes effect: no cached statement serves the old one", function()
      -- warm the statement caches of every connection with the old statement
      local res = gw:parallel((function()
        local t = {}
        for i = 1, 40 do t[i] = { path = "/query/val" } end
        return t
      end)(), { max = 8 })
      for _, r in ipairs(res) do
        assert.equal(200, r.status, r.body)
        assert.same({ v = 1 }, r.json)
      end
      -- same name, new SQL, a new result type and a parameter
      H.writefile(sdir .. "/queries.lua", [==[
sluice.query "val" { readonly = true, single = true, sql = [[ SELECT 'two'::text AS v, CAST(:k AS int4) + 1 AS k ]] }
sluice.query "gone_soon" { readonly = true, single = true, sql = [[ SELECT 'here' AS g ]] }
sluice.query "count_items" { readonly = true, single = true, sql = [[ SELECT count(*)::int4 AS n FROM items ]] }
]==])
      hup(gw)
      wait_answers(gw, "/query/val?k=1", function(s, b) return s == 200 and b and b.v == "two" end, 2)
      res = gw:parallel((function()
        local t = {}
        for i = 1, 40 do t[i] = { path = "/query/val?k=" .. i } end
        return t
      end)(), { max = 8 })
      for i, r in ipairs(res) do
        assert.equal(200, r.status, r.body)
        assert.same({ v = "two", k = i + 1 }, r.json)
      end
      -- the old form (no parameter) is refused now
      H.assert_error(400, "bad_request", gw:get_json("/query/val"))
    end)

    it("a removed query answers 404", function()
      local s, b = gw:get_json("/query/gone_soon")
      assert.equal(200, s)
      assert.same({ g = "here" }, b)
      H.writefile(sdir .. "/queries.lua", [==[
sluice.query "val" { readonly = true, single = true, sql = [[ SELECT 'two'::text AS v, CAST(:k AS int4) + 1 AS k ]] }
sluice.query "count_items" { readonly = true, single = true, sql = [[ SELECT count(*)::int4 AS n FROM items ]] }
]==])
      hup(gw)
      wait_answers(gw, "/query/gone_soon", function(st) return st == 404 end, 2)
      all_answer(gw, "/query/gone_soon", 10, function(st, body, raw, hdrs)
        H.assert_error(404, "not_found", st, body, hdrs, raw)
      end)
      os.remove(sdir .. "/added.lua")
      hup(gw)
      wait_answers(gw, "/query/added", function(st) return st == 404 end, 2)
      s = gw:get_json("/query/count_items")
      assert.equal(200, s)
    end)
  end)

  describe("a broken script", function()
    local broken = [==[
sluice.query "never" { readonly = true, sql = [[ SELECT 1 AS x ]] }
sluice.query "oops" {
  readonly = true
  sql = [[ SELECT 2 ]]
}
]==]

    it("on SIGHUP: the old definitions keep serving and the log says reload failed", function()
      H.writefile(sdir .. "/zz_broken.lua", broken)
      local before = count(gw:log(), "reload failed")
      hup(gw)
      local log = wait_log(gw, "reload failed", before)
      assert.truthy(log:find("zz_broken.lua:4", 1, true), "the log names the file and line:\n" .. log)
      H.sleep(0.3) -- both workers have had their turn
      all_answer(gw, "/query/count_items", 10, function(s, b, raw)
        assert.equal(200, s, raw)
        assert.same({ n = 1 }, b)
      end)
      H.assert_error(404, "not_found", gw:get_json("/query/never"))
      assert.is_true(gw:alive())
    end)

    it("POST /admin/reload answers 400 with the Lua error; the old definitions keep serving", function()
      local e = H.assert_error(400, "bad_request",
        gw:post_json("/admin/reload", "", { Authorization = "Bearer " .. TOKEN }))
      assert.truthy(e.message:find("zz_broken.lua:4:", 1, true), "message: " .. e.message)
      assert.truthy(e.message:find("'}' expected", 1, true), "message: " .. e.message)
      H.sleep(0.3)
      all_answer(gw, "/query/count_items", 10, function(s, b, raw)
        assert.equal(200, s, raw)
        assert.same({ n = 1 }, b)
      end)
      H.assert_error(404, "not_found", gw:get_json("/query/never"))
    end)

    it("POST /admin/reload needs the token: 401 without it, 403 with a wrong one", function()
      H.assert_error(401, "unauthorized", gw:post_json("/admin/reload", ""))
      H.assert_error(403, "forbidden", gw:post_json("/admin/reload", "", { Authorization = "Bearer nope" }))
      -- neither reloaded anything
      H.assert_error(404, "not_found", gw:get_json("/query/never"))
    end)

    it("POST /admin/reload with the script fixed answers 200 and the new definitions serve", function()
      H.writefile(sdir .. "/zz_broken.lua", [==[
sluice.query "never" { readonly = true, single = true, sql = [[ SELECT 1 AS x ]] }
]==])
      local before = reloads()
      local s, b, h, raw = gw:post_json("/admin/reload", "", { Authorization = "Bearer " .. TOKEN })
      H.assert_ok(s, b, h, raw)
      assert.equal("reloading", b.status)
      assert.equal(3, b.queries) -- val, count_items, never
      wait_answers(gw, "/query/never", function(st) return st == 200 end, 2)
      wait_log(gw, "reloaded:", before)
      s, b = gw:get_json("/query/never")
      assert.same({ x = 1 }, b)
      -- GET is not a reload
      H.assert_error(405, "method_not_allowed", gw:get_json("/admin/reload", { Authorization = "Bearer " .. TOKEN }))
    end)
  end)

  describe("requests in flight", function()
    it("finish on the definitions they started with", function()
      H.writefile(sdir .. "/slow.lua", [==[
sluice.query "slow_changed" { readonly = true, single = true, sql = [[ SELECT 'old' AS v FROM pg_sleep(2) ]] }
sluice.query "slow_removed" { readonly = true, single = true, sql = [[ SELECT 'old' AS v FROM pg_sleep(2) ]] }
]==])
      hup(gw)
      -- an unknown parameter (400) shows the query is defined, without running it
      wait_answers(gw, "/query/slow_removed?unknown=1", function(s) return s == 400 end, 2)
      local before = reloads()
      local b = gw:start_parallel({ { path = "/query/slow_changed" }, { path = "/query/slow_removed" } })
      local running = wait_for(function()
        return tonumber(H.psql1(H.admin_dsn(), ([[
          SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'sluice'
             AND state = 'active' AND query LIKE '%%pg_sleep(2)%%']]):format(dbname))) == 2
      end, 1.5, 0.02)
      assert.truthy(running, "the two slow queries did not start")
      H.writefile(sdir .. "/slow.lua", [==[
sluice.query "slow_changed" { readonly = true, single = true, sql = [[ SELECT 'new' AS v ]] }
]==])
      hup(gw)
      wait_log(gw, "reloaded:", before)
      -- new requests see the new definitions while the old ones still run
      local s, body = gw:get_json("/query/slow_changed")
      assert.equal(200, s)
      assert.same({ v = "new" }, body)
      local res = b:wait()
      assert.equal(200, res[1].status, res[1].body)
      assert.same({ v = "old" }, res[1].json)
      assert.equal(200, res[2].status, res[2].body)
      assert.same({ v = "old" }, res[2].json)
      wait_answers(gw, "/query/slow_removed", function(st) return st == 404 end, 2)
      assert.is_true(gw:alive())
    end)

    it("a handler waiting on the database outlives its retired generation", function()
      H.writefile(sdir .. "/waiter.lua", [==[
sluice.query "nap" { readonly = true, single = true, sql = [[ SELECT true AS napped FROM pg_sleep(CAST(:s AS float8)) ]] }
local tag = "generation-1"
sluice.endpoint "waiter" {
  route = "GET /waiter",
  handler = function(req)
    local a = sluice.db.query("nap", { s = req.query.s })
    -- by now the janitor has had the chance to free a retired generation nothing holds
    local b = sluice.db.query("count_items", {})
    return 200, { tag = tag, napped = a.napped, n = b.n }
  end,
}
]==])
      hup(gw)
      wait_answers(gw, "/waiter?s=0", function(s) return s == 200 end, 2)
      local before = reloads()
      local w = gw:async("GET", "/waiter?s=7", nil, nil, 15)
      local running = wait_for(function()
        return tonumber(H.psql1(H.admin_dsn(), ([[
          SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'sluice'
             AND state = 'active' AND query LIKE '%%pg_sleep%%']]):format(dbname))) == 1
      end, 1.5, 0.02)
      assert.truthy(running, "the handler's query did not start")
      H.writefile(sdir .. "/waiter.lua", (H.readfile(sdir .. "/waiter.lua"):gsub("generation%-1", "generation-2")))
      hup(gw)
      wait_log(gw, "reloaded:", before)
      wait_answers(gw, "/waiter?s=0", function(s, b) return s == 200 and b and b.tag == "generation-2" end, 2)
      local r = w.wait()
      assert.equal(200, r.status, r.body)
      assert.same({ tag = "generation-1", napped = true, n = 1 }, r.json)
      assert.is_true(gw:alive())
      local s, b = gw:get_json("/waiter?s=0")
      assert.equal(200, s)
      assert.equal("generation-2", b.tag)
    end)
  end)

  describe("handlers", function()
    it("a handler changed by reload: new code, a moved route, a removed endpoint", function()
      H.writefile(sdir .. "/hello.lua", [==[
sluice.endpoint "hello" { route = "GET /hello/{who}", handler = function(req)
  return 200, { greeting = "hello " .. req.path.who, version = 1 } end }
sluice.endpoint "bye" { route = "GET /bye", handler = function(req) return 200, { bye = true } end }
]==])
      hup(gw)
      wait_answers(gw, "/hello/ann", function(s) return s == 200 end, 2)
      local s, b = gw:get_json("/hello/ann")
      assert.same({ greeting = "hello ann", version = 1 }, b)
      s = gw:get_json("/bye")
      assert.equal(200, s)

      H.writefile(sdir .. "/hello.lua", [==[
sluice.endpoint "hello" { route = "GET /hi/{who}", handler = function(req)
  local r = sluice.db.query("count_items", {})
  return 200, { greeting = "hi " .. req.path.who, version = 2, n = r.n } end }
]==])
      hup(gw)
      wait_answers(gw, "/hi/bob", function(st) return st == 200 end, 2)
      all_answer(gw, "/hi/bob", 10, function(st, body, raw)
        assert.equal(200, st, raw)
        assert.same({ greeting = "hi bob", version = 2, n = 1 }, body)
      end)
      H.assert_error(404, "not_found", gw:get_json("/hello/ann"))
      H.assert_error(404, "not_found", gw:get_json("/bye"))
    end)
  end)

  describe("a change that needs a restart", function()
    it("a new listen address is refused with a log line; the gateway keeps serving where it was", function()
      local cfg = gw.config
      local old_listen = cfg.listen
      local other = H.free_port()
      cfg.listen = "127.0.0.1:" .. other
      H.write_config(gw.config_path, cfg)
      local before = count(gw:log(), "after a restart")
      hup(gw)
      wait_log(gw, "after a restart", before)
      H.sleep(0.2)
      local s = gw:get_json("/query/count_items")
      assert.equal(200, s)
      local st = H.http("GET", "http://127.0.0.1:" .. other .. "/health/live", nil, nil, 1)
      assert.is_nil(st, "nothing listens on the new address")
      cfg.listen = old_listen

      -- so are new workers
      cfg.workers = 3
      H.write_config(gw.config_path, cfg)
      before = count(gw:log(), "after a restart")
      hup(gw)
      wait_log(gw, "after a restart", before)
      cfg.workers = 2
      H.write_config(gw.config_path, cfg)
      s = gw:get_json("/query/count_items")
      assert.equal(200, s)
    end)

    it("a broken config file is refused with a log line; the gateway keeps serving", function()
      H.writefile(gw.config_path, "return { listen = \n")
      local before = count(gw:log(), "the previous config stays")
      hup(gw)
      wait_log(gw, "the previous config stays", before)
      H.write_config(gw.config_path, gw.config)
      all_answer(gw, "/query/count_items", 5, function(s, b, raw)
        assert.equal(200, s, raw)
        assert.same({ n = 1 }, b)
      end)
      -- and a good reload afterwards still works
      before = reloads()
      hup(gw)
      wait_log(gw, "reloaded:", before)
      assert.is_true(gw:alive())
    end)
  end)
end)

describe("reload of pool_size", function()
  local db, dbname, gw

  setup(function()
    db = H.createdb("resize")
    dbname = H.dsn_dbname(db)
    gw = H.start { dsn = db, pool = { pool_size = 2, max_overflow = 0, idle_timeout = 1 },
      scripts = { ["q.lua"] = [==[
sluice.query "tick" { readonly = true, single = true, sql = [[ SELECT CAST(:i AS int4) AS i FROM pg_sleep(0.005) ]] }
]==] } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function backends()
    return tonumber(H.psql1(H.admin_dsn(), ([[
      SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = '%s']]):format(dbname)))
  end

  -- A steady stream of readonly requests: batches of curl requests, a new one started whenever
  -- the last has finished; :check() starts the next batch when due, :finish() returns every result.
  local function stream()
    local st = { batches = {}, results = {}, next_i = 0 }
    function st:start()
      local reqs = {}
      for k = 1, 60 do
        self.next_i = self.next_i + 1
        reqs[k] = { path = "/query/tick?i=" .. self.next_i }
      end
      self.current = gw:start_parallel(reqs, { max = 3, timeout = 10 })
      self.batches[#self.batches + 1] = self.current
    end
    function st:check()
      if H.readfile(self.current.dir .. "/done") then self:start() end
    end
    function st:finish()
      local out = {}
      for _, b in ipairs(self.batches) do
        for _, r in ipairs(b:wait()) do out[#out + 1] = r end
      end
      return out
    end
    st:start()
    return st
  end

  it("grows to 6 and shrinks back to 2 on SIGHUP with no failed request", function()
    local s, h = gw:get_json("/health")
    assert.equal(200, s)
    assert.equal(2, h.pools.primary.size)
    assert.truthy(wait_for(function() return backends() == 2 end, 3), "2 backends at start")

    local st = stream()
    local max_seen = 0
    local function sample()
      st:check()
      local n = backends()
      if n > max_seen then max_seen = n end
      return n
    end

    local cfg = gw.config
    cfg.pools.primary.pool_size = 6
    H.write_config(gw.config_path, cfg)
    H.must("kill -HUP " .. gw.pid)
    local grown, t_grow = wait_for(function() return sample() == 6 end, 2.5, 0.05)
    assert.truthy(grown, ("backends did not reach 6 within 2.5 s (last max %d)"):format(max_seen))
    assert.truthy(t_grow <= 2.5)
    s, h = gw:get_json("/health")
    assert.equal(6, h.pools.primary.size)
    assert.truthy(wait_for(function()
      local _, hh = gw:get_json("/health")
      st:check()
      return hh and hh.pools.primary.open == 6
    end, 2), "/health shows 6 open connections")
    -- steady at 6 for a moment, never more
    local t_end = H.now() + 0.5
    while H.now() < t_end do sample(); H.sleep(0.05) end

    cfg.pools.primary.pool_size = 2
    H.write_config(gw.config_path, cfg)
    H.must("kill -HUP " .. gw.pid)
    local shrunk = wait_for(function() return sample() == 2 end, 3, 0.05)
    assert.truthy(shrunk, "backends did not go back to 2 within 3 s: " .. backends())
    s, h = gw:get_json("/health")
    assert.equal(2, h.pools.primary.size)
    assert.truthy(wait_for(function()
      local _, hh = gw:get_json("/health")
      return hh and hh.pools.primary.open == 2
    end, 2), "/health shows 2 open connections")
    st:check()

    local res = st:finish()
    assert.truthy(#res >= 60)
    local failed = {}
    for _, r in ipairs(res) do
      if r.status ~= 200 then failed[#failed + 1] = tostring(r.status) .. " " .. r.body end
    end
    assert.same({}, failed)
    for _, r in ipairs(res) do
      local i = tonumber(r.json and r.json.i)
      assert.truthy(i, r.body)
    end
    assert.truthy(max_seen <= 6, "never more than pool_size + max_overflow backends: " .. max_seen)
    -- still 2 once the stream has stopped
    H.sleep(0.5)
    assert.equal(2, backends())
  end)
end)
