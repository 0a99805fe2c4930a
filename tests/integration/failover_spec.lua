-- failover_spec.lua — a pool whose URL lists a primary and its streaming replica
-- (target_session_attrs=read-write), against a cluster of its own (scripts/testdb.sh with
-- TESTDB_REPLICA_PORT): while clients write and read continuously, the primary is stopped and the
-- replica promoted; requests wait for the new primary and succeed there (only writes in flight
-- when the primary stopped may fail: 503, their commit in doubt), every acknowledged write is on
-- the new primary, and /health names it. A prefer-standby pool over the same hosts reads from the
-- replica, sees it promoted (its connections ask their server's role) and keeps serving from it
-- as the only server left. A URL whose hosts are all unreachable gives 503 +
-- Retry-After after failover_wait_ms, and nothing hangs.
--
-- FAILOVER_STOP_MODE=immediate stops the primary as a crash would (pg_ctl -m immediate). The
-- cluster replicates asynchronously, so acknowledged writes not yet streamed may then be missing
-- on the new primary: they are reported, not failed (that is replication's guarantee, not the
-- gateway's).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local PGBIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

local scripts = {
  ["f.lua"] = [==[
sluice.query "record" { single = true, sql = [[
  INSERT INTO ledger (id) SELECT :id FROM pg_sleep(0.02) RETURNING id ]] }
sluice.query "count" { readonly = true, single = true, sql = [[ SELECT count(*) AS n FROM ledger ]] }
sluice.query "count_replica" { readonly = true, single = true, pool = "replica",
  sql = [[ SELECT count(*) AS n FROM ledger ]] }
]==],
}

-- A port that nothing listens on, above the range the kernel hands out to clients.
local function high_port()
  local socket = require "socket"
  for _ = 1, 200 do
    local port = math.random(61700, 64900)
    local s = socket.tcp()
    local ok = s:bind("127.0.0.1", port)
    s:close()
    if ok then return port end
  end
  error("no free port found")
end

-- The cluster: scripts/testdb.sh with its own directory and ports.
local Cluster = {}
Cluster.__index = Cluster

local function new_cluster()
  local c = setmetatable({ dir = H.tmpdir("sluice-failover-db"), port = high_port() }, Cluster)
  H.must("chmod 755 " .. H.q(c.dir)) -- the server's user must reach its data directory
  repeat c.rport = high_port() until c.rport ~= c.port
  c.env = ("TESTDB_DIR=%s TESTDB_PORT=%d TESTDB_REPLICA_PORT=%d"):format(H.q(c.dir .. "/db"), c.port, c.rport)
  return c
end

function Cluster:testdb(action)
  return H.sh(("env %s %s %s"):format(self.env, H.q(H.root .. "/scripts/testdb.sh"), action))
end

function Cluster:start()
  local out, rc, err = self:testdb("start")
  assert(rc == 0, "testdb.sh start failed: " .. out .. err)
  -- Stops the cluster should this test process die without its teardown. In a session of its
  -- own: the runner ends the test's whole process group on a timeout, and the servers (which
  -- pg_ctl detaches) would outlive a watcher in it.
  local watch = ("while kill -0 %d 2>/dev/null; do sleep 1; done; env %s %s stop; rm -rf %s")
    :format(H.pid, self.env, H.q(H.root .. "/scripts/testdb.sh"), H.q(self.dir))
  H.must(("setsid bash -c %s >/dev/null 2>&1 </dev/null &"):format(H.q(watch)))
end

function Cluster:stop() self:testdb("stop") end

function Cluster:dsn(port)
  return ("host=127.0.0.1 port=%d user=postgres dbname=postgres"):format(port or self.port)
end

-- pg_ctl on one of the two data directories, as the server's user.
function Cluster:pg_ctl(which, args)
  local as = H.sh("id -u") == "0\n" and "runuser -u postgres -- " or ""
  return H.sh(("cd / && %s%s/pg_ctl -D %s %s"):format(as, PGBIN, H.q(self.dir .. "/db/" .. which), args))
end

-- A client loop in the background: POSTs (or GETs) path until the stop file exists, one request
-- at a time; each line of its log is "id start_time status seconds". Bodies of non-200 answers
-- are kept as bodies/<id>.
local function client(gw, dir, name, path, base)
  local body = base and ([[-X POST -H 'content-type: application/json' -d "{\"id\":$id}"]]) or ""
  local script = ([[
i=0
while [ ! -e %s/stop ]; do
  i=$((i+1)); id=$((%d+i)); t=$(date +%%s.%%N)
  out=$(curl -s -o %s/%s.body -w '%%{http_code} %%{time_total}' --max-time 30 %s %s)
  echo "$id $t $out" >>%s/%s.log
  case $out in 200\ *) ;; *) cp %s/%s.body %s/bodies/$id ;; esac
done
]]):format(H.q(dir), base or 0, H.q(dir), name, body, H.q(gw:url(path)), H.q(dir), name,
    H.q(dir), name, H.q(dir))
  H.writefile(dir .. "/" .. name .. ".sh", script)
  H.must(("( bash %s ) >/dev/null 2>&1 </dev/null &"):format(H.q(dir .. "/" .. name .. ".sh")))
end

local function read_log(dir, name)
  local rows = {}
  for id, t, status, took in (H.readfile(dir .. "/" .. name .. ".log") or ""):gmatch("(%d+) ([%d.]+) (%d+) ([%d.]+)\n") do
    rows[#rows + 1] = { id = tonumber(id), start = tonumber(t), status = tonumber(status), time = tonumber(took),
      ["end"] = tonumber(t) + tonumber(took) }
  end
  return rows
end

describe("failover", function()
  local cluster

  setup(function()
    cluster = new_cluster()
    cluster:start()
    H.psql(cluster:dsn(), "CREATE TABLE ledger (id int8 PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());")
    -- the replica serves reads from the start: wait until it has replayed the table
    for _ = 1, 100 do
      if H.psql1(cluster:dsn(cluster.rport), "SELECT to_regclass('ledger') IS NOT NULL") == "t" then break end
      H.sleep(0.05)
    end
  end)

  teardown(function()
    H.cleanup()
    if cluster then
      cluster:stop()
      H.sh("rm -rf " .. H.q(cluster.dir))
    end
  end)

  it("follows a promoted replica: writes wait and succeed on the new primary", function()
    local url = ("postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?target_session_attrs=read-write")
      :format(cluster.port, cluster.rport)
    local replica_url = url:gsub("read%-write", "prefer-standby")
    local gw = H.start { scripts = scripts, config = { pools = {
      primary = { url = url, pool_size = 4, max_overflow = 0, connect_timeout = 2, failover_wait_ms = 10000 },
      replica = { url = replica_url, pool_size = 2, max_overflow = 0, connect_timeout = 2 },
    } } }
    H.assert_ok(gw:post_json("/query/record", { id = 1 }))
    local _, hb = gw:get_json("/health")
    local rp = hb.pools.replica
    assert.equal("127.0.0.1:" .. cluster.rport, rp.host, H.encode(hb))
    assert.equal("standby", rp.role)
    assert.equal("prefer-standby", rp.target)
    local p = hb.pools.primary
    assert.equal("127.0.0.1:" .. cluster.port, p.host, H.encode(hb))
    assert.equal("primary", p.role)
    assert.equal("read-write", p.target)
    assert.equal(2, #p.hosts)
    assert.equal("127.0.0.1:" .. cluster.rport, p.hosts[2].host)
    assert.equal(0, p.hosts[2].connections)

    local mode = os.getenv("FAILOVER_STOP_MODE") or "fast"
    local dir = H.tmpdir("sluice-failover")
    H.must("mkdir -p " .. H.q(dir .. "/bodies"))
    local ok, err = pcall(function()
      client(gw, dir, "w1", "/query/record", 1000000)
      client(gw, dir, "w2", "/query/record", 2000000)
      client(gw, dir, "r", "/query/count")
      client(gw, dir, "rr", "/query/count_replica")
      H.sleep(1.5)
      -- the primary goes away; a second later (the time a failover manager takes to decide),
      -- the replica is promoted
      local t_stop = H.now()
      local out, rc, e = cluster:pg_ctl("data", "-m " .. mode .. " -w -t 30 stop")
      assert(rc == 0, "stopping the primary failed: " .. out .. e)
      local t_stopped = H.now()
      H.sleep(1)
      out, rc, e = cluster:pg_ctl("replica", "-w -t 30 promote")
      assert(rc == 0, "promoting the replica failed: " .. out .. e)
      local t_promoted = H.now()
      H.sleep(3)
      H.writefile(dir .. "/stop", "")
      H.sleep(0.5)

      local writes, reads = {}, read_log(dir, "r")
      for _, r in ipairs(read_log(dir, "rr")) do reads[#reads + 1] = r end
      for _, w in ipairs({ "w1", "w2" }) do
        for _, r in ipairs(read_log(dir, w)) do writes[#writes + 1] = r end
      end
      assert(#writes > 20 and #reads > 20, ("too few requests: %d writes, %d reads"):format(#writes, #reads))
      local acked, bad, in_doubt = {}, {}, {}
      local first_ok, longest = nil, 0
      for _, r in ipairs(writes) do
        longest = math.max(longest, r.time)
        if r.status == 200 then
          acked[#acked + 1] = r.id
          if r["end"] > t_promoted and (not first_ok or r["end"] < first_ok) then first_ok = r["end"] end
        elseif r.status == 503 and r.start < t_stopped then
          -- in flight when the primary stopped: the commit is in doubt, never resent
          in_doubt[#in_doubt + 1] = r.id
          local b = H.decode(H.readfile(dir .. "/bodies/" .. r.id) or "")
          assert(b and b.error and b.error.code == "unavailable" and b.error.outcome == "unknown",
            "in-doubt write body: " .. H.encode(b))
        else
          bad[#bad + 1] = ("write %d at %+.2f s: %d after %.2f s"):format(r.id, r.start - t_stop, r.status, r.time)
        end
      end
      for _, r in ipairs(reads) do
        longest = math.max(longest, r.time)
        if r.status ~= 200 then
          bad[#bad + 1] = ("read at %+.2f s: %d after %.2f s"):format(r.start - t_stop, r.status, r.time)
        end
      end
      assert(#bad == 0, "answers other than 200 (and in-doubt 503s):\n" .. table.concat(bad, "\n"))
      assert(#in_doubt <= 2, "more in-doubt writes than writers: " .. #in_doubt)
      assert(first_ok, "no write succeeded after the promotion")
      local after = first_ok - t_promoted
      -- the promoted server is looked for every half second while no server is usable
      assert(after < 1.5, ("first successful write %.2f s after the promotion"):format(after))

      -- every acknowledged write is on the new primary
      local have = {}
      for id in H.psql(cluster:dsn(cluster.rport), "SELECT id FROM ledger"):gmatch("%d+") do have[tonumber(id)] = true end
      local lost = {}
      for _, id in ipairs(acked) do if not have[id] then lost[#lost + 1] = id end end
      if mode == "fast" then
        assert(#lost == 0, "acknowledged writes missing on the new primary: " .. table.concat(lost, ", "))
      elseif #lost > 0 then
        print(("# %d acknowledged writes not replicated before the crash"):format(#lost))
      end

      _, hb = gw:get_json("/health")
      p = hb.pools.primary
      assert.equal("ok", p.status, H.encode(hb))
      assert.equal("127.0.0.1:" .. cluster.rport, p.host, H.encode(hb))
      assert.equal("primary", p.role)
      assert.equal("down", p.hosts[1].status)
      assert.equal(H.null, p.hosts[1].role)
      assert.equal("up", p.hosts[2].status)
      assert.equal("closed", p.breaker)
      rp = hb.pools.replica -- the standby it read from is the only server left: a primary now
      assert.equal("127.0.0.1:" .. cluster.rport, rp.host, H.encode(hb))
      assert.equal("primary", rp.role)
      local _, metrics = gw:get("/metrics")
      local rchanges = tonumber(metrics:match('sluice_pool_role_changes_total{pool="replica"} (%d+)'))
      assert.equal(1, rchanges)
      local changes = tonumber(metrics:match('sluice_pool_role_changes_total{pool="primary"} (%d+)'))
      local waited = tonumber(metrics:match('sluice_failover_wait_seconds_count{pool="primary"} (%d+)'))
      assert(changes and changes >= 1, "role changes: " .. tostring(changes))
      assert(waited and waited >= 1, "failover waits: " .. tostring(waited))
      print(("# stop -m %s: %d writes (%d in doubt), %d reads; first write %.3f s after the promotion, longest "
        .. "stall %.2f s; primary down for %.2f s before the promotion; role changes %d, waits %d")
        :format(mode, #writes, #in_doubt, #reads, after, longest, t_promoted - t_stopped, changes, waited))
    end)
    H.writefile(dir .. "/stop", "")
    H.sleep(0.2)
    H.sh("rm -rf " .. H.q(dir))
    assert(ok, err)
    assert.equal(0, gw:stop())
  end)

  it("answers 503 + Retry-After after failover_wait_ms when no host is reachable, and stops cleanly", function()
    local p1, p2 = high_port(), high_port()
    local url = ("postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?target_session_attrs=read-write")
      :format(p1, p2)
    local gw = H.start { dsn = url, scripts = { ["f.lua"] = scripts["f.lua"]:gsub('sluice.query "count_replica".*', "") },
      pool = { pool_size = 2, connect_timeout = 1, failover_wait_ms = 1500, pool_timeout = 10 } }
    local reqs = {}
    for i = 1, 6 do
      reqs[i] = i % 2 == 0 and { path = "/query/record", body = { id = i } } or { path = "/query/count" }
    end
    local res = gw:parallel(reqs, { timeout = 15 })
    for i, r in ipairs(res) do
      assert(r.status == 503, ("request %d: %s %s"):format(i, tostring(r.status), r.body))
      assert(r.headers["retry-after"], "503 without Retry-After")
      assert(r.json and r.json.error and r.json.error.message:find("failover_wait_ms", 1, true), r.body)
      assert(r.time >= 1.4 and r.time < 2.5, ("request %d answered after %.2f s"):format(i, r.time))
    end
    local s, hb = gw:get_json("/health")
    assert.equal(503, s)
    assert.equal("down", hb.pools.primary.status)
    assert.equal(H.null, hb.pools.primary.host)
    assert.equal("down", hb.pools.primary.hosts[1].status)
    assert.equal("down", hb.pools.primary.hosts[2].status)
    assert.equal("closed", hb.pools.primary.breaker)
    assert.equal(0, gw:stop())
  end)
end)
