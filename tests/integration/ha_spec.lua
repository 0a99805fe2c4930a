-- ha_spec.lua — the gateway in front of a real HA cluster (scripts/hacluster.sh: etcd, three
-- Patroni nodes with PostgreSQL 15 in synchronous mode, HAProxy), with the pool's url the
-- multi-host URL of the three nodes (target_session_attrs=read-write):
--   - a planned switchover under continuous writes and reads (to one gateway, and writes through
--     HAProxy in front of two): no acknowledged write lost, no answer other than 2xx;
--   - SIGTERM of one of two gateways behind HAProxy under load: no failed request;
--   - no primary at all for longer than failover_wait_ms: 503 + Retry-After, nothing hangs, and
--     service resumes once a primary is back;
--   - kill -9 of the leader under writes: no acknowledged write lost, the same gateway process
--     serves throughout, the first write after the kill succeeds within ttl + 2 s; a write in
--     flight at the kill may be answered 503 "outcome":"unknown" (counted apart).
-- The figures are printed as TAP comments ("# ...").
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["ha.lua"] = [==[
sluice.query "ha_put" { single = true,
  sql = [[ INSERT INTO ha_writes (run, id) VALUES (:run, :id) RETURNING id ]] }
sluice.query "ha_read" { readonly = true, single = true,
  sql = [[ SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM ha_writes WHERE run = :run ]] }
]==],
}

describe("gateway over a Patroni cluster", function()
  local env, url, ttl

  local function with(u, extra) return u .. (u:find("?", 1, true) and "&" or "?") .. extra end

  setup(function()
    local out = H.hacluster("start")
    H.figure("cluster start: %s", out:match("hacluster: (started in [^\n]*)") or out)
    env = H.hacluster_env()
    ttl = tonumber(env.HA_TTL)
    url = with(env.HA_PRIMARY_URL, "connect_timeout=3")
    H.psql(url, [[CREATE TABLE ha_writes (run text, id bigint, at timestamptz DEFAULT clock_timestamp(),
      PRIMARY KEY (run, id))]])
  end)

  teardown(function()
    H.cleanup()
    H.sh(H.q(H.root .. "/scripts/hacluster.sh") .. " stop")
  end)

  -- A gateway on the cluster's read-write multi-host URL; pool and config keys added.
  local function gateway(pool, config)
    local p = { pool_size = 4 }
    for k, v in pairs(pool or {}) do p[k] = v end
    return H.start { dsn = env.HA_PRIMARY_URL, scripts = scripts, pool = p, config = config }
  end

  -- What a load's answers add up to: counts, the acknowledged ids (writes), failures listed,
  -- the longest time between two successive 2xx answers (the stall a client sees) and the
  -- slowest single answer.
  local function summarize(res)
    local s = { total = #res, ok = 0, failed = {}, unknown = {}, acked = {}, stall = 0, slowest = 0 }
    local last_ok
    for _, x in ipairs(res) do
      if x.status and x.status >= 200 and x.status < 300 then
        s.ok = s.ok + 1
        s.acked[#s.acked + 1] = x.n
        if last_ok then s.stall = math.max(s.stall, x.t1 - last_ok) end
        last_ok = x.t1
      elseif x.status == 503 and x.outcome == "unknown" then
        s.unknown[#s.unknown + 1] = x
      else
        s.failed[#s.failed + 1] = x
      end
      s.slowest = math.max(s.slowest, x.t1 - x.t0)
    end
    -- the time from the last 2xx answer to the end of the load counts too
    if last_ok and #res > 0 then s.stall = math.max(s.stall, res[#res].t1 - last_ok) end
    return s
  end

  -- Failures by kind ("12 x 503 unavailable circuit_breaker_open..."), then the first few with
  -- their time relative to t_ref (the switchover, the kill, the SIGTERM).
  local function describe_failures(list, t_ref)
    local count, order = {}, {}
    for _, x in ipairs(list) do
      local k = ("%s %s%s %s"):format(tostring(x.status or "no answer"), x.code or "",
        x.outcome and (" outcome=" .. x.outcome) or "", (x.err or ""):gsub("_", " "))
      if not count[k] then order[#order + 1] = k end
      count[k] = (count[k] or 0) + 1
    end
    local parts = {}
    for _, k in ipairs(order) do parts[#parts + 1] = count[k] .. " x " .. k end
    local first = {}
    for i = 1, math.min(#list, 3) do
      first[#first + 1] = ("#%d sent at %+.2f s, answered after %.2f s"):format(list[i].n,
        list[i].t0 - (t_ref or list[i].t0), list[i].t1 - list[i].t0)
    end
    return table.concat(parts, "; ") .. " (first: " .. table.concat(first, ", ") .. ")"
  end

  -- The acknowledged ids of run that the current primary does not have (waiting up to 30 s for
  -- a primary, when a failover is still under way).
  local function lost(run, acked)
    local present = {}
    local sql = ("SELECT id FROM ha_writes WHERE run = '%s'"):format(run)
    local deadline, ok, rows = H.now() + 30, nil, nil
    repeat
      ok, rows = pcall(H.psql, url, sql)
      if not ok then H.sleep(0.2) end
    until ok or H.now() > deadline
    assert(ok, rows)
    for id in rows:gmatch("%d+") do present[tonumber(id)] = true end
    local missing = {}
    for _, id in ipairs(acked) do
      if not present[id] then missing[#missing + 1] = id end
    end
    return missing, present
  end

  -- Waits until HAProxy on hport serves (both gateways up: rise 2 checks, 250 ms apart).
  local function haproxy_ready(hport)
    local deadline = H.now() + 5
    repeat H.sleep(0.1) until H.http("GET", "http://127.0.0.1:" .. hport .. "/health/ready", nil, nil, 1) == 200
      or H.now() > deadline
    H.sleep(0.8)
  end

  it("planned switchover under writes and reads: no acknowledged write lost, every answer 2xx but a write in doubt", function()
    H.hacluster("wait-healthy")
    local gw, g2 = gateway(), gateway()
    -- a second writer goes through HAProxy in front of both gateways
    local hport = H.free_port()
    H.hacluster(("haproxy %d %d %d"):format(hport, gw.port, g2.port))
    haproxy_ready(hport)
    local w = H.start_load("write", gw:url("/query/ha_put"), { run = "switchover" })
    local r = H.start_load("read", gw:url("/query/ha_read?run=switchover"))
    local lb = H.start_load("write", "http://127.0.0.1:" .. hport .. "/query/ha_put", { run = "switchover-lb" })
    -- what a load balancer checking readiness sees meanwhile (reported, not asserted)
    local ready = H.start_load("read", gw:url("/health/ready"), { pause_ms = 20 })
    H.sleep(1.5)
    local t_sw = H.now()
    local out = H.hacluster("switchover")
    local t_done = H.now()
    H.sleep(2)
    for _, l in ipairs({ w, r, lb, ready }) do l:stop() end
    H.hacluster("haproxy-stop")

    local ws, rs, ls = summarize(w:results()), summarize(r:results()), summarize(lb:results())
    local missing, present = lost("switchover", ws.acked)
    local lb_missing = lost("switchover-lb", ls.acked)
    local failed_committed = 0
    for _, x in ipairs(ws.failed) do if present[x.n] then failed_committed = failed_committed + 1 end end
    for _, x in ipairs(ws.unknown) do if present[x.n] then failed_committed = failed_committed + 1 end end
    local not_ready, longest, run_start = 0, 0, nil
    local rres = ready:results()
    for i, x in ipairs(rres) do
      local nxt = rres[i + 1] and rres[i + 1].t0 or x.t1
      if x.status ~= 200 then
        not_ready = not_ready + (nxt - x.t0)
        run_start = run_start or x.t0
        longest = math.max(longest, nxt - run_start)
      else
        run_start = nil
      end
    end
    local after = 0
    for _, x in ipairs(w:results()) do
      if x.t0 > t_done and x.status and x.status < 300 then after = after + 1 end
    end
    H.figure("switchover: %s", out:match("hacluster: ([^\n]*)") or out)
    H.figure("switchover under load: writes %d (2xx %d, 503 unknown %d, other %d), reads %d (2xx %d, other %d)",
      ws.total, ws.ok, #ws.unknown, #ws.failed, rs.total, rs.ok, #rs.failed + #rs.unknown)
    H.figure("switchover under load: longest stall %d ms for writes, %d ms for reads; slowest answer %d ms; acknowledged writes lost %d; writes not answered 2xx but committed %d",
      ws.stall * 1000, rs.stall * 1000, math.max(ws.slowest, rs.slowest) * 1000, #missing, failed_committed)
    H.figure("switchover under load: GET /health/ready was not 200 for %d ms in all (longest run %d ms)",
      not_ready * 1000, longest * 1000)
    H.figure("switchover under load, writes through HAProxy: %d (2xx %d, 503 outcome unknown %d, other failures %d), longest stall %d ms, acknowledged writes lost %d",
      ls.total, ls.ok, #ls.unknown, #ls.failed, ls.stall * 1000, #lb_missing)
    if #ls.failed + #ls.unknown > 0 then
      H.figure("switchover under load, writes through HAProxy not answered 2xx: %s",
        describe_failures(#ls.failed > 0 and ls.failed or ls.unknown, t_sw))
    end

    assert(#missing == 0, ("%d acknowledged writes are missing on the new primary: %s"):format(#missing,
      table.concat(missing, ", ", 1, math.min(#missing, 20))))
    -- Every write waits for the new primary and runs there, but for one case: when the old
    -- primary closes a session while a write is in flight without sending its FATAL, nobody can
    -- tell whether it committed, and the gateway answers it 503 "outcome":"unknown" (never re-run).
    -- A writer has one write in flight at a time: at most one such answer each.
    assert(#ws.failed == 0 and #ws.unknown <= 1, ("%d of %d writes were not answered 2xx: %s"):format(
      #ws.failed + #ws.unknown, ws.total, describe_failures(#ws.failed > 0 and ws.failed or ws.unknown, t_sw)))
    assert(#rs.failed + #rs.unknown == 0, ("%d of %d reads were not answered 2xx: %s"):format(#rs.failed + #rs.unknown,
      rs.total, describe_failures(#rs.failed > 0 and rs.failed or rs.unknown, t_sw)))
    assert(ws.ok > 0 and after > 0, ("the writer made no progress (%d 2xx, %d after the switchover)"):format(ws.ok, after))
    assert(#lb_missing == 0, ("%d acknowledged writes through HAProxy are missing"):format(#lb_missing))
    assert(#ls.failed == 0 and #ls.unknown <= 1, ("%d of %d writes through HAProxy were not answered 2xx: %s"):format(
      #ls.failed + #ls.unknown, ls.total, describe_failures(#ls.failed > 0 and ls.failed or ls.unknown, t_sw)))
    assert.is_true(gw:alive())
  end)

  it("SIGTERM of one of two gateways behind HAProxy under load: no failed request", function()
    H.hacluster("wait-healthy")
    -- 1 s of grace: HAProxy checks /health/ready every 250 ms and takes a gateway out at the first 503
    local cfg = { shutdown_timeout = 5, shutdown_grace = 1 }
    local g1, g2 = gateway(nil, cfg), gateway(nil, cfg)
    local hport = H.free_port()
    H.hacluster(("haproxy %d %d %d"):format(hport, g1.port, g2.port))
    local base = "http://127.0.0.1:" .. hport
    haproxy_ready(hport)
    local loads = {
      H.start_load("write", base .. "/query/ha_put", { run = "term1", pause_ms = 1 }),
      H.start_load("write", base .. "/query/ha_put", { run = "term2", pause_ms = 1 }),
      H.start_load("read", base .. "/query/ha_read?run=term1", { pause_ms = 1 }),
      H.start_load("read", base .. "/query/ha_read?run=term2", { pause_ms = 1 }),
    }
    H.sleep(1.5)
    local t_term = H.now()
    H.must("kill -TERM " .. g1.pid)
    local exit_deadline = t_term + cfg.shutdown_timeout + 5
    while not g1:exit_code() and H.now() < exit_deadline do H.sleep(0.02) end
    local t_exit = H.now()
    H.sleep(1.5)
    for _, l in ipairs(loads) do l:stop() end

    local total, ok, during, failed, missing = 0, 0, 0, {}, {}
    for i, l in ipairs(loads) do
      local res = l:results()
      local s = summarize(res)
      total, ok = total + s.total, ok + s.ok
      for _, x in ipairs(s.failed) do failed[#failed + 1] = x end
      for _, x in ipairs(s.unknown) do failed[#failed + 1] = x end
      for _, x in ipairs(res) do
        if x.t1 >= t_term and x.t0 <= t_exit then during = during + 1 end
      end
      if i <= 2 then
        for _, id in ipairs((lost("term" .. i, s.acked))) do missing[#missing + 1] = id end
      end
    end
    H.figure("SIGTERM behind HAProxy: %d requests (%d while the gateway stopped), %d failed; the gateway exited %.2f s after SIGTERM (code %s); acknowledged writes lost %d",
      total, during, #failed, t_exit - t_term, tostring(g1:exit_code()), #missing)

    assert(g1:exit_code() == 0, ("the stopped gateway exited with %s after %.1f s; log:\n%s"):format(
      tostring(g1:exit_code()), t_exit - t_term, g1:log():sub(-1500)))
    assert(#failed == 0, ("%d of %d requests failed: %s"):format(#failed, total, describe_failures(failed, t_term)))
    assert(#missing == 0, ("%d acknowledged writes missing: %s"):format(#missing, table.concat(missing, ", ")))
    assert.is_true(g2:alive())
    H.hacluster("haproxy-stop")
    g2:stop()
  end)

  it("no primary for longer than failover_wait_ms: 503 + Retry-After, nothing hangs, service resumes", function()
    H.hacluster("wait-healthy")
    local WAIT_MS = 1500
    local gw = gateway({ failover_wait_ms = WAIT_MS }, { request_timeout = 10 })
    local s, b, h, raw = gw:post_json("/query/ha_put", { run = "nopri", id = 0 })
    H.assert_ok(s, b, h, raw)

    local out = H.hacluster("down")
    local t_down = H.now()
    local is_down = true
    -- whatever fails below, the next test finds the cluster up
    finally(function() if is_down then pcall(H.hacluster, "up") end end)
    local id = 0
    local function wave(label)
      local reqs = {}
      for i = 1, 8 do
        if i % 2 == 0 then
          id = id + 1
          reqs[i] = { path = "/query/ha_put", body = { run = "nopri", id = id } }
        else
          reqs[i] = { path = "/query/ha_read?run=nopri" }
        end
      end
      local res = gw:parallel(reqs, { timeout = 15 })
      local tmin, tmax = math.huge, 0
      for i, r in ipairs(res) do
        local what = ("%s, request %d"):format(label, i)
        assert(r.status, what .. ": no HTTP answer " .. tostring(r.body))
        tmin, tmax = math.min(tmin, r.time), math.max(tmax, r.time)
        assert(r.status == 503, ("%s: expected 503, got %s %s"):format(what, r.status, r.body))
        assert(type(r.json) == "table" and type(r.json.error) == "table" and r.json.error.code == "unavailable",
          what .. ": not a JSON 'unavailable' error: " .. r.body)
        assert(tonumber(r.headers["retry-after"] or ""), what .. ": 503 without a Retry-After")
        assert(r.time <= WAIT_MS / 1000 + 2, ("%s: answered after %.2f s (failover_wait_ms %d)"):format(what, r.time, WAIT_MS))
      end
      return tmin, tmax
    end
    -- at once, then again when the cluster has had no primary for longer than failover_wait_ms
    local min1, max1 = wave("right after the cluster went down")
    H.sleep(math.max(0, t_down + WAIT_MS / 1000 + 0.5 - H.now()))
    local min2, max2 = wave(("%.1f s into the outage"):format(H.now() - t_down))
    -- the gateway itself stays responsive
    local t = H.now()
    assert.equal(200, (gw:get("/health/live", nil, 2)))
    local hs = gw:get("/health", nil, 2)
    assert(hs == 200 or hs == 503, "GET /health: " .. tostring(hs))
    local t_health = H.now() - t
    H.figure("no primary (%s): 503 + Retry-After after %.2f-%.2f s at once, %.2f-%.2f s later on (failover_wait_ms %d); /health answered in %d ms",
      out:match("hacluster: ([^\n]*)") or "down", min1, max1, min2, max2, WAIT_MS, t_health * 1000)
    -- the requests waited for a primary before giving up
    assert(min1 >= WAIT_MS / 1000 - 0.25, ("answered 503 after %.2f s, without waiting failover_wait_ms (%d)"):format(min1, WAIT_MS))

    out = H.hacluster("up")
    is_down = false
    local t_up = H.now()
    local back
    local deadline = t_up + 15
    repeat
      id = id + 1
      local st = gw:post_json("/query/ha_put", { run = "nopri", id = 1000 + id }, nil, 12)
      if st == 200 then back = H.now() end
      if not back then H.sleep(0.1) end
    until back or H.now() > deadline
    H.figure("primary back (%s): the gateway's first successful write %.2f s later", out:match("hacluster: ([^\n]*)") or "up",
      (back or H.now()) - t_up)
    assert(back, "no successful write within 15 s of the primary being back")
    assert.is_true(gw:alive())
  end)

  it("kill -9 of the leader under writes: no acknowledged write lost, first write within ttl + 2 s", function()
    H.hacluster("wait-healthy")
    local gw = gateway({ failover_wait_ms = 15000 }, { request_timeout = 30 })
    local pid = gw.pid
    local w = H.start_load("write", gw:url("/query/ha_put"), { run = "kill" })
    local r = H.start_load("read", gw:url("/query/ha_read?run=kill"))
    H.sleep(1.5)
    local out = H.hacluster("kill-leader --no-wait")
    local t_kill = tonumber(out:match(" at ([%d.]+)"))
    assert(t_kill, out)
    -- until the first 2xx answer to a write sent after the kill (ttl + 15 s at most)
    local first
    local deadline = t_kill + ttl + 15
    while not first and H.now() < deadline do
      H.sleep(0.2)
      for _, x in ipairs(w:results()) do
        if x.t0 >= t_kill and x.status and x.status < 300 then first = x; break end
      end
    end
    H.sleep(1)
    w:stop()
    r:stop()

    local res = w:results()
    local ws, rs = summarize(res), summarize(r:results())
    local missing, present = lost("kill", ws.acked)
    local unknown_committed, failed_committed = 0, 0
    for _, x in ipairs(ws.unknown) do
      if present[x.n] then unknown_committed = unknown_committed + 1 end
    end
    for _, x in ipairs(ws.failed) do
      if present[x.n] then failed_committed = failed_committed + 1 end
    end
    -- the last write sent before the kill: in flight when the leader died, or just answered
    local in_flight
    for _, x in ipairs(res) do
      if x.t0 < t_kill then in_flight = x end
    end
    H.figure("kill -9: %s", out:match("hacluster: ([^\n]*)") or out)
    H.figure("kill -9 under load: first successful write %s after the kill (ttl %d s); the last write sent before the kill: %s",
      first and ("%.2f s"):format(first.t1 - t_kill) or "never", ttl,
      in_flight and ("%s %s%s, answered %+.3f s from the kill"):format(tostring(in_flight.status), in_flight.code or "",
        in_flight.outcome and (" outcome=" .. in_flight.outcome) or "", in_flight.t1 - t_kill) or "none")
    H.figure("kill -9 under load: writes %d (2xx %d, 503 outcome unknown %d of which %d committed, other failures %d of which %d committed), reads %d (2xx %d, failed %d); longest write stall %d ms; acknowledged writes lost %d",
      ws.total, ws.ok, #ws.unknown, unknown_committed, #ws.failed, failed_committed, rs.total, rs.ok,
      #rs.failed + #rs.unknown, ws.stall * 1000, #missing)

    assert(#missing == 0, ("%d acknowledged writes are missing on the new primary: %s"):format(#missing,
      table.concat(missing, ", ", 1, math.min(#missing, 20))))
    assert(gw:alive() and gw.pid == pid, "the gateway did not stay up: " .. gw:log():sub(-1500))
    assert(first, ("no write sent after the kill succeeded within %d s: %s"):format(ttl + 15,
      describe_failures(ws.failed, t_kill)))
    assert(first.t1 - t_kill <= ttl + 2, ("the first write after the kill succeeded %.2f s after it, more than ttl + 2 = %d s")
      :format(first.t1 - t_kill, ttl + 2))
    assert(#ws.failed == 0, ("%d writes failed other than 503 outcome unknown: %s"):format(#ws.failed,
      describe_failures(ws.failed, t_kill)))
    assert(#rs.failed + #rs.unknown == 0, ("%d reads failed: %s"):format(#rs.failed + #rs.unknown,
      describe_failures(#rs.failed > 0 and rs.failed or rs.unknown, t_kill)))
  end)
end)
