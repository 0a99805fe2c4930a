-- ryw_spec.lua — reading your writes, against a PostgreSQL primary and a streaming replica of
-- their own (scripts/testdb.sh with TESTDB_REPLICA_PORT, stopped in teardown and, should this
-- process die first, by a watcher). Every successful write answer — a named query, a route alias,
-- /batch pipelined or in a transaction, a Lua handler's write or transaction, a bulk load — carries
-- Sluice-LSN between the WAL position before the write and after it; readonly answers carry none;
-- a malformed token is 400. With the replica held 500 ms behind (recovery_min_apply_delay), 1000
-- concurrent write-then-read pairs that send the token back never read stale data, while reads
-- without it, which sluice.route sends to the replica, do; sluice_read_your_writes_total counts
-- where the reads went.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local TESTDB = H.q(H.root .. "/scripts/testdb.sh")
local NOTE = [[ SELECT EXISTS (SELECT 1 FROM notes WHERE id = :id) AS seen, pg_is_in_recovery() AS standby ]]

local scripts = {
  ["ryw.lua"] = ([==[
sluice.query "add" { single = true, sql = [[ INSERT INTO notes (body) VALUES (:body) RETURNING id ]] }
sluice.query "add_alias" { single = true, route = "POST /notes", sql = [[ INSERT INTO notes (body) VALUES (:body) RETURNING id ]] }
sluice.query "add_dup" { single = true, sql = [[ INSERT INTO notes (id, body) VALUES (1, 'dup') RETURNING id ]] }
sluice.query "seen" { readonly = true, single = true, sql = [[ %s ]] }
sluice.query "seen_alias" { readonly = true, single = true, route = "GET /notes/{id}", sql = [[ %s ]] }
sluice.query "seen_free" { readonly = true, single = true, sql = [[ %s ]] }
sluice.query "seen_rows" { readonly = true, sql = [[ %s ]] }
sluice.query "peek" { readonly = true, single = true, sql = [[ SELECT pg_is_in_recovery() AS standby ]] }
sluice.bulk "notes_bulk" { table = "notes", columns = { "body" } }
sluice.endpoint "h_add" { route = "POST /h/add", handler = function(req)
  return 200, sluice.db.query("add", { body = req.body.body })
end }
sluice.endpoint "h_tx" { route = "POST /h/tx", handler = function(req)
  return 200, sluice.db.transaction(function(tx)
    return { tx:query("add", { body = "tx1" }), tx:query("add", { body = "tx2" }) }
  end)
end }
sluice.endpoint "h_read" { route = "GET /h/read", handler = function(req)
  return 200, sluice.db.query("peek")
end }
function sluice.route(query, req)
  if query.name == "peek" then
    sluice.log.info("route saw", { lsn = req.lsn or "none", replay = sluice.pools.replica.replay_lsn or "none" })
  end
  if query.name == "seen_free" then return nil end -- the gateway's own choice
  if query.readonly and sluice.pools.replica.healthy then return "replica" end
end
]==]):format(NOTE, NOTE, NOTE, NOTE),
}

-- A free TCP port above the ephemeral range.
local function high_port() return H.free_port(61000, 64999) end

-- A primary and a streaming replica of their own, under dir: { dsn(db), rdsn(db), stop() }.
local function start_cluster(dir)
  local port, rport = high_port(), high_port()
  while rport == port do rport = high_port() end
  H.must("chmod 755 " .. H.q(dir)) -- the postgres user must reach it
  local env = ("TESTDB_DIR=%s TESTDB_PORT=%d TESTDB_REPLICA_PORT=%d"):format(H.q(dir .. "/db"), port, rport)
  -- stops the cluster if this process ends without its teardown (in a session of its own, so
  -- that a timeout killing this test's process group does not take the watcher with it)
  H.must(("setsid sh -c 'while kill -0 %d 2>/dev/null; do sleep 1; done; env %s %s stop' >/dev/null 2>&1 </dev/null &")
    :format(H.pid, env, TESTDB))
  local c = {}
  function c.stop() H.sh("env " .. env .. " " .. TESTDB .. " stop") end
  local _, rc, err = H.sh("env " .. env .. " " .. TESTDB .. " start")
  if rc ~= 0 then
    c.stop()
    error("scripts/testdb.sh start failed: " .. err)
  end
  function c.dsn(db) return ("host=127.0.0.1 port=%d user=postgres dbname=%s"):format(port, db) end
  function c.rdsn(db) return ("host=127.0.0.1 port=%d user=postgres dbname=%s"):format(rport, db) end
  return c
end

local wait_for = H.wait_for

-- sluice_read_your_writes_total by "pool/outcome".
local function ryw_counts(gw)
  local s, body = gw:get("/metrics")
  assert.equal(200, s)
  local t = {}
  for pool, outcome, n in body:gmatch('sluice_read_your_writes_total{pool="([^"]+)",outcome="([^"]+)"} (%d+)') do
    t[pool .. "/" .. outcome] = tonumber(n)
  end
  return t
end

local function delta(after, before)
  local d = {}
  for k, v in pairs(after) do d[k] = v - (before[k] or 0) end
  return d
end

-- Runs `clients` rywload.lua processes of `pairs` pairs each; returns the pairs' records.
local function load(gw, dir, clients, pairs, mode)
  local tag = mode .. math.random(1e6)
  H.must(("cd %s && for i in $(seq %d); do luajit %s %s %d %s %s-$i >%s-$i.out 2>%s-$i.err & done; wait")
    :format(H.q(dir), clients, H.q(H.root .. "/tests/integration/rywload.lua"), H.q(gw.base), pairs, mode, tag, tag, tag))
  local recs = {}
  for i = 1, clients do
    local out = H.readfile(("%s/%s-%d.out"):format(dir, tag, i)) or ""
    for id, seen, standby, ws, rs, ms in out:gmatch("(%d+) (%d) (%d) (%S+) (%S+) (%S+)\n") do
      recs[#recs + 1] = { id = tonumber(id), seen = seen == "1", standby = standby == "1", ws = ws, rs = rs,
        ms = tonumber(ms) }
    end
    assert.equal(pairs * i, #recs, "client " .. i .. ": " .. (H.readfile(("%s/%s-%d.err"):format(dir, tag, i)) or ""))
  end
  return recs
end

local function summary(recs)
  local s = { n = #recs, stale = 0, standby = 0, bad = 0, ms = {} }
  for _, r in ipairs(recs) do
    if r.ws ~= "200" or r.rs ~= "200" then s.bad = s.bad + 1 end
    if not r.seen then s.stale = s.stale + 1 end
    if r.standby then s.standby = s.standby + 1 end
    s.ms[#s.ms + 1] = r.ms
  end
  table.sort(s.ms)
  s.p50 = s.ms[math.max(1, math.floor(#s.ms * 0.5))]
  s.p99 = s.ms[math.max(1, math.floor(#s.ms * 0.99))]
  return s
end

describe("read your writes", function()
  local dir, cluster, db, rdb, gw

  setup(function()
    dir = H.tmpdir("sluice-ryw")
    cluster = start_cluster(dir)
    local admin = cluster.dsn("postgres")
    H.psql(admin, "CREATE DATABASE ryw; ALTER DATABASE ryw SET synchronous_commit = on;")
    db, rdb = cluster.dsn("ryw"), cluster.rdsn("ryw")
    H.psql(db, "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);")
    assert(wait_for(function()
      local ok, v = pcall(H.psql1, rdb, "SELECT to_regclass('notes') IS NOT NULL")
      return ok and v == "t"
    end, 20, 0.1), "the replica did not replay the table")
    gw = H.start { dsn = db, scripts = scripts, config = {
      pools = {
        primary = { url = db, pool_size = 4, read_your_writes_wait_ms = 1000 },
        replica = { url = rdb, pool_size = 4 },
      },
    } }
    -- the probe has found the replica
    assert(wait_for(function()
      local _, b = gw:get_json("/health")
      return b and b.pools and b.pools.replica and b.pools.replica.replication_lag_seconds ~= H.null
    end, 10), "the probe did not find the replica")
  end)

  teardown(function()
    H.cleanup()
    if cluster then cluster.stop() end
    if dir then H.sh("rm -rf " .. H.q(dir)) end
  end)

  local function lsn_before()
    return H.psql1(db, "SELECT pg_current_wal_lsn()")
  end

  -- Asserts that tok is a pg_lsn at or after `before` that the primary's WAL has reached (at the
  -- first look, or within 2 s: another session's WAL may lie before it, unflushed); returns
  -- whether the first look found it.
  local function check_token(tok, before, what)
    assert(type(tok) == "string" and tok:match("^%x+/%x+$"), what .. ": no Sluice-LSN, got " .. tostring(tok))
    local sql = ("SELECT '%s'::pg_lsn >= '%s'::pg_lsn, '%s'::pg_lsn <= pg_current_wal_lsn()"):format(tok, before, tok)
    local after, reached = H.psql1(db, sql):match("^(%a)|(%a)$")
    assert.equal("t", after, what .. ": " .. tok .. " is before the write (" .. before .. ")")
    if reached == "t" then return true end
    assert(wait_for(function() return H.psql1(db, sql) == "t|t" end, 2, 0.01),
      what .. ": " .. tok .. " is past the primary's WAL (" .. lsn_before() .. ")")
    return false
  end

  it("every successful write answer carries Sluice-LSN, between the WAL before and after it", function()
    local writes = {
      { "named query", function() return gw:post_json("/query/add", { body = "q" }) end },
      { "route alias", function() return gw:post_json("/notes", { body = "alias" }) end },
      { "pipelined batch", function()
        return gw:post_json("/batch", { { query = "add", params = { body = "b1" } }, { query = "seen", params = { id = 1 } } })
      end },
      { "batch in a transaction", function()
        return gw:post_json("/batch?transaction=true",
          { { query = "add", params = { body = "t1" } }, { query = "add", params = { body = "t2" } } })
      end },
      { "handler's write", function() return gw:post_json("/h/add", { body = "h" }) end },
      { "handler's transaction", function() return gw:post_json("/h/tx", {}) end },
      { "bulk load", function()
        return gw:post_json("/bulk/notes_bulk", '[{"body":"bulk1"},{"body":"bulk2"}]')
      end },
    }
    local last, at_once = nil, 0
    for round = 1, 3 do
      for _, w in ipairs(writes) do
        local before = lsn_before()
        local s, b, h, raw = w[2]()
        H.assert_ok(s, b, h, raw)
        local tok = h["sluice-lsn"]
        if check_token(tok, before, w[1]) then at_once = at_once + 1 end
        if last then
          assert.equal("t", H.psql1(db, ("SELECT '%s'::pg_lsn >= '%s'::pg_lsn"):format(tok, last)), w[1] .. ": went back")
        end
        last = tok
      end
    end
    print(("# 21 write answers (7 kinds x 3): each Sluice-LSN >= pg_current_wal_lsn() before the write; %d of 21 <= pg_current_wal_lsn() at the first look after, the rest within 2 s"):format(at_once))
  end)

  it("readonly and failed answers carry no Sluice-LSN", function()
    H.assert_ok(gw:post_json("/query/add", { body = "one" }))
    local reads = {
      { "GET", "/query/seen?id=1" }, { "POST", "/query/seen", { id = 1 } }, { "GET", "/notes/1" },
      { "GET", "/h/read" }, { "POST", "/batch", { { query = "seen", params = { id = 1 } } } },
      { "POST", "/batch?transaction=true", { { query = "seen", params = { id = 1 } } } },
    }
    for _, r in ipairs(reads) do
      local s, b, h, raw = gw:json(r[1], r[2], r[3])
      H.assert_ok(s, b, h, raw)
      -- a transaction batch commits, so it says where; the others never do
      if r[2]:match("transaction") then
        assert.truthy(h["sluice-lsn"])
      else
        assert.is_nil(h["sluice-lsn"], r[1] .. " " .. r[2])
      end
    end
    gw:post_json("/query/add_dup", {})
    local s, b, h, raw = gw:post_json("/query/add_dup", {})
    H.assert_error(409, "conflict", s, b, h, raw)
    assert.is_nil(h["sluice-lsn"])
  end)

  it("a malformed Sluice-LSN is 400 naming the header", function()
    local bad = { "nope", "0/", "/0", "0/1/2", "123456789/0", "0x1/0", "0/1,", "0/1 0/2", "-1/0", "0/g" }
    for _, v in ipairs(bad) do
      for _, req in ipairs { { "GET", "/query/seen?id=1" }, { "GET", "/notes/1" }, { "POST", "/query/add", { body = "x" } },
        { "POST", "/batch", { { query = "seen", params = { id = 1 } } } } } do
        local s, b, h, raw = gw:json(req[1], req[2], req[3], { ["Sluice-LSN"] = v })
        local e = H.assert_error(400, "bad_request", s, b, h, raw)
        assert(e.message:find("Sluice-LSN", 1, true), raw)
      end
    end
    -- a list (a header sent twice and joined) is read as its largest position
    H.assert_ok(gw:get_json("/query/seen?id=1", { ["Sluice-LSN"] = "0/1, 0/2" }))
  end)

  it("sluice.route sees req.lsn and sluice.pools.<name>.replay_lsn; nil leaves the choice to the gateway", function()
    H.assert_ok(gw:get_json("/query/peek", { ["Sluice-LSN"] = "0/16B3748" }))
    H.assert_ok(gw:get_json("/query/peek"))
    local saw = {}
    for line in gw:log():gmatch("[^\n]+") do
      if line:find('"route saw"', 1, true) then saw[#saw + 1] = H.decode(line) end
    end
    assert.equal(2, #saw)
    assert.equal("0/16B3748", saw[1].lsn)
    assert.truthy(tostring(saw[1].replay):match("^%x+/%x+$"), "replay_lsn: " .. tostring(saw[1].replay))
    assert.equal("none", saw[2].lsn)
    -- seen_free: sluice.route returns nil; with a token the gateway picks a standby that has it
    local s, b, h = gw:post_json("/query/add", { body = "free" })
    local tok = h["sluice-lsn"]
    assert(wait_for(function()
      return H.psql1(rdb, ("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn"):format(tok)) == "t"
    end, 5), "the replica did not catch up")
    local before = ryw_counts(gw)
    s, b = gw:get_json("/query/seen_free?id=" .. b.id, { ["Sluice-LSN"] = tok })
    assert.equal(200, s)
    assert.same({ seen = true, standby = true }, b)
    s, b = gw:get_json("/query/seen_free?id=1")
    assert.is_false(b.standby, "without a token the query's own pool (primary)")
    local d = delta(ryw_counts(gw), before)
    assert.equal(1, (d["replica/standby"] or 0) + (d["replica/waited"] or 0))
  end)

  it("behind a delayed replica: 0 stale reads with the token, stale reads without it", function()
    H.psql(cluster.rdsn("postgres"), "ALTER SYSTEM SET recovery_min_apply_delay = '500ms'; SELECT pg_reload_conf();")
    assert(wait_for(function()
      return H.psql1(cluster.rdsn("postgres"), "SHOW recovery_min_apply_delay") == "500ms"
    end, 5), "the replica did not take recovery_min_apply_delay")
    local before = ryw_counts(gw)

    -- 1000 pairs from 25 clients, each read sending its write's token back; wait up to 1000 ms
    local t0 = H.now()
    local with = summary(load(gw, dir, 25, 40, "token"))
    local took = H.now() - t0
    local d = delta(ryw_counts(gw), before)
    assert.equal(1000, with.n)
    assert.equal(0, with.bad, "failed requests")
    assert.equal(0, with.stale, "stale reads with the token")
    local counted = 0
    for _, v in pairs(d) do counted = counted + v end
    assert.equal(1000, counted, "sluice_read_your_writes_total counted every read")
    assert.equal(with.standby, (d["replica/standby"] or 0) + (d["replica/waited"] or 0))
    assert(with.standby > 0, "no read with a token was served by the replica")
    print(("# with Sluice-LSN (wait 1000 ms, replica 500 ms behind): 1000 pairs in %.1f s, 0 stale; %d served by the replica (standby %d, waited %d), %d by the primary (fallback); read p50 %.0f ms, p99 %.0f ms")
      :format(took, with.standby, d["replica/standby"] or 0, d["replica/waited"] or 0, d["primary/fallback"] or 0,
        with.p50, with.p99))

    -- without the token, sluice.route sends the reads to the replica: stale
    local bare = summary(load(gw, dir, 10, 20, "bare"))
    assert.equal(0, bare.bad)
    assert.equal(200, bare.standby, "reads without a token all went to the replica")
    assert(bare.stale > 0, "no stale read without the token: the replica is not behind")
    print(("# without Sluice-LSN (sluice.route -> replica): %d of %d reads stale"):format(bare.stale, bare.n))

    -- pipelined /batch items and streamed answers wait for the replica the same way
    local waited = 0
    for i = 1, 5 do
      local s, b, h, raw = gw:post_json("/batch", { { query = "add", params = { body = "batch" .. i } } })
      assert.equal(200, s, raw)
      local tok, id = h["sluice-lsn"], b[1].body.id
      s, b, h, raw = gw:post_json("/batch", { { query = "seen", params = { id = id } } }, { ["Sluice-LSN"] = tok })
      assert.equal(200, s, raw)
      assert.is_true(b[1].body.seen, raw)
      if b[1].body.standby then waited = waited + 1 end
      s, b, h = gw:post_json("/query/add", { body = "stream" .. i })
      local rows
      s, rows = gw:get("/query/seen_rows?id=" .. b.id, { Accept = "application/x-ndjson", ["Sluice-LSN"] = h["sluice-lsn"] })
      assert.equal(200, s, rows)
      local row = H.decode(rows:match("[^\n]+"))
      assert.is_true(row.seen, rows)
      if row.standby then waited = waited + 1 end
    end
    assert(waited > 0, "no /batch item or stream was served by the replica")
    print(("# /batch items and NDJSON streams with Sluice-LSN: 10 of 10 saw their write, %d served by the replica"):format(waited))

    -- read_your_writes_wait_ms reloads: at 200 ms, shorter than the delay, reads fall back
    local cfg = gw.config
    cfg.pools.primary.read_your_writes_wait_ms = 200
    H.write_config(gw.config_path, cfg)
    H.must("kill -HUP " .. gw.pid)
    assert(wait_for(function() return gw:log():find("reloaded:", 1, true) end, 10), "no reload")
    before = ryw_counts(gw)
    local short = summary(load(gw, dir, 10, 10, "token"))
    d = delta(ryw_counts(gw), before)
    assert.equal(0, short.stale, "stale reads with the token (wait 200 ms)")
    assert(d["primary/fallback"] >= 90, "fell back: " .. tostring(d["primary/fallback"]))
    print(("# wait 200 ms (< 500 ms delay): %d of 100 fell back to the primary, 0 stale; read p50 %.0f ms"):format(
      d["primary/fallback"], short.p50))

    -- the wait takes at most half the time left before the deadline: the query still runs
    local gw2 = H.start { dsn = db, scripts = scripts, config = { request_timeout = 0.4,
      pools = { primary = { url = db, pool_size = 2, read_your_writes_wait_ms = 1000 }, replica = { url = rdb, pool_size = 2 } } } }
    assert(wait_for(function()
      local _, hb = gw2:get_json("/health")
      return hb and hb.pools and hb.pools.replica and hb.pools.replica.replication_lag_seconds ~= H.null
    end, 10), "the probe did not find the replica")
    local hs, hb, hh = gw2:post_json("/query/add", { body = "deadline" })
    assert.equal(200, hs)
    local ht = H.now()
    local rs, rb, _, rraw = gw2:get_json("/query/seen?id=" .. hb.id, { ["Sluice-LSN"] = hh["sluice-lsn"] })
    local rms = (H.now() - ht) * 1000
    assert.equal(200, rs, rraw)
    assert.same({ seen = true, standby = false }, rb)
    assert(rms < 390, ("answered after %.0f ms"):format(rms))
    print(("# request_timeout 0.4 s, wait 1000 ms: the read waited for half the deadline, then the primary answered (%.0f ms)"):format(rms))
    gw2:stop()

    -- once the replica has replayed it, an old token is served by the replica at once
    local s, b, h = gw:post_json("/query/add", { body = "late" })
    local tok, id = h["sluice-lsn"], b.id
    assert(wait_for(function()
      return H.psql1(rdb, ("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn"):format(tok)) == "t"
    end, 5), "the replica did not catch up")
    H.sleep(2.5) -- the probe's pace: its position is published by then
    before = ryw_counts(gw)
    local t = H.now()
    s, b = gw:get_json("/query/seen?id=" .. id, { ["Sluice-LSN"] = tok })
    local ms = (H.now() - t) * 1000
    assert.equal(200, s)
    assert.same({ seen = true, standby = true }, b)
    d = delta(ryw_counts(gw), before)
    assert.equal(1, d["replica/standby"])
    print(("# a token the replica has replayed: served there at once (%.1f ms), counted standby"):format(ms))
  end)
end)
