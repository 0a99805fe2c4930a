-- hacluster_spec.lua — the HA test cluster itself (scripts/hacluster.sh: etcd, three Patroni
-- nodes with PostgreSQL 15 in synchronous mode, HAProxy): a leader is elected and takes writes
-- through the multi-host URL, replication is synchronous, a switchover moves the leader, a
-- killed leader is replaced within ttl + 2 s without losing a committed row, the killed node
-- rejoins, and HAProxy fronts gateways; docker/ha-compose.yml, which lays out the same cluster in
-- containers, is checked as a file. The figures are printed as TAP comments.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

describe("HA test cluster", function()
  local env, url

  -- psql through a URL; "?" or "&" joins extra parameters.
  local function with(u, extra) return u .. (u:find("?", 1, true) and "&" or "?") .. extra end
  local function leader()
    local name, port = H.hacluster("leader"):match("^(%S+) (%d+)")
    assert(name, "no leader")
    return name, tonumber(port)
  end

  setup(function()
    local out = H.hacluster("start")
    H.figure("cluster start: %s", (out:match("hacluster: (started in [^\n]*)") or out))
    env = H.hacluster_env()
    url = with(env.HA_PRIMARY_URL, "connect_timeout=3")
  end)

  teardown(function()
    H.cleanup()
    H.sh(H.q(H.root .. "/scripts/hacluster.sh") .. " stop")
  end)

  it("elects a leader that takes writes through the multi-host URL; standbys refuse them", function()
    local name, port = leader()
    assert.equal("f|" .. port, H.psql1(url, [[
      CREATE TABLE hc (id int PRIMARY KEY, v text);
      INSERT INTO hc SELECT g, 'before' FROM generate_series(1, 100) g;
      SELECT pg_is_in_recovery(), inet_server_port();]]))
    -- the same URL with target_session_attrs=standby reaches another node, in recovery
    local standby = H.psql1(with(env.HA_STANDBY_URL, "connect_timeout=3"), "SELECT pg_is_in_recovery(), inet_server_port()")
    local rec, sport = standby:match("^(%a)|(%d+)$")
    assert.equal("t", rec)
    assert.are_not.equal(port, tonumber(sport))
    local ok, err = pcall(H.psql, with(env.HA_STANDBY_URL, "connect_timeout=3"), "INSERT INTO hc VALUES (0, 'no')")
    assert.is_false(ok)
    assert.matches("read%-only transaction", tostring(err))
    H.figure("leader %s on port %d, a standby on %s", name, port, sport)
  end)

  it("replicates synchronously to one standby (pg_stat_replication)", function()
    H.hacluster("wait-healthy")
    local rows = H.psql(url, "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1")
    local sync, streaming = 0, 0
    for _, state, sync_state in rows:gmatch("(%w+)|(%w+)|(%w+)") do
      if state == "streaming" then streaming = streaming + 1 end
      if sync_state == "sync" then sync = sync + 1 end
    end
    assert.equal(2, streaming, rows)
    assert.equal(1, sync, rows)
    assert.are_not.equal("", H.psql1(url, "SHOW synchronous_standby_names"))
    assert.equal("on", H.psql1(url, "SHOW synchronous_commit"))
    H.figure("pg_stat_replication: %s", (rows:gsub("\n$", ""):gsub("\n", "; ")))
  end)

  it("switchover moves the leader, and the new leader takes writes", function()
    local before = leader()
    local out = H.hacluster("switchover")
    local from, to, secs = out:match("switchover (%S+) %-> (%S+) in ([%d.]+) s")
    assert(secs, out)
    assert.equal(before, from)
    local after, port = leader()
    assert.are_not.equal(before, after)
    assert.equal(to, after)
    assert.equal("f|" .. port .. "|100", H.psql1(url, [[
      INSERT INTO hc VALUES (101, 'after switchover');
      SELECT pg_is_in_recovery(), inet_server_port(), count(*) FILTER (WHERE v = 'before') FROM hc;]]))
    H.figure("switchover %s -> %s: %s s until a write commits on the new leader", from, to, secs)
  end)

  it("kill -9 of the leader: a new leader takes writes within ttl + 2 s, no committed row lost", function()
    H.hacluster("wait-healthy")
    local ttl = tonumber(env.HA_TTL)
    local before = leader()
    -- committed (synchronously) just before the kill
    H.psql(url, "INSERT INTO hc SELECT g, 'just before the kill' FROM generate_series(1000, 1999) g")
    local out = H.hacluster("kill-leader")
    local from, to, secs = out:match("failover (%S+) %-> (%S+) in ([%d.]+) s")
    assert(secs, out)
    assert.equal(before, from)
    H.figure("failover after kill -9 of %s: %s s until a write commits on %s (ttl %d s, loop_wait %s s)",
      from, secs, to, ttl, env.HA_LOOP_WAIT)
    assert(tonumber(secs) <= ttl + 2, ("failover took %s s, more than ttl + 2 = %d s"):format(secs, ttl + 2))
    local after = leader()
    assert.equal(to, after)
    assert.equal("1101", H.psql1(url, "SELECT count(*) FROM hc"))

    -- the killed node comes back as a standby of the new leader (rewound or cloned again)
    local back = H.hacluster("node-start " .. from)
    H.figure("%s", back:match("hacluster: ([^\n]*)") or back)
    H.hacluster("wait-healthy")
    assert.matches(from .. " %d+ %a+", H.hacluster("members"))
    assert.equal("1", H.psql1(url, ("SELECT count(*) FROM pg_stat_replication WHERE application_name = '%s'"):format(from)))
  end)

  it("HAProxy fronts two gateways and checks /health/ready", function()
    -- g1 leaves as a deployment stops a gateway: /health/ready turns 503 for its shutdown_grace
    local g1 = H.start { dsn = env.HA_PRIMARY_URL, config = { shutdown_grace = 1 }, scripts = { ["hc.lua"] =
      'sluice.query "count" { readonly = true, single = true, sql = "SELECT count(*) AS n FROM hc" }' } }
    local g2 = H.start { dsn = env.HA_PRIMARY_URL, scripts = { ["hc.lua"] =
      'sluice.query "count" { readonly = true, single = true, sql = "SELECT count(*) AS n FROM hc" }' } }
    local port = H.free_port()
    H.hacluster(("haproxy %d %d %d"):format(port, g1.port, g2.port))
    local deadline, status, body = H.now() + 5, nil, nil
    repeat
      H.sleep(0.1)
      status, body = H.http("GET", "http://127.0.0.1:" .. port .. "/query/count", nil, nil, 5)
    until status == 200 or H.now() > deadline
    assert.equal(200, status, tostring(body))
    assert.equal(1101, H.decode(body).n)
    -- a gateway that stops is taken out; the other one serves every request
    g1:stop()
    H.sleep(0.6)
    for i = 1, 20 do
      local s, b = H.http("GET", "http://127.0.0.1:" .. port .. "/query/count", nil, nil, 5)
      assert(s == 200, ("request %d with one gateway stopped: %s %s"):format(i, tostring(s), tostring(b)))
    end
    H.hacluster("haproxy-stop")
  end)

  -- No Docker engine runs in the tests: docker/ha-compose.yml, its Patroni settings and its
  -- HAProxy config are checked as files (YAML through the system python's yaml module, which
  -- patroni depends on; the HAProxy config with haproxy -c).
  it("docker/ha-compose.yml and its Patroni and HAProxy configs are valid", function()
    local py = os.tmpname()
    H.writefile(py, [[
import yaml
c = yaml.safe_load(open("docker/ha-compose.yml"))
s = c["services"]
print(" ".join(sorted(s)))
print(s["gw1"]["environment"]["DATABASE_URL"])
p = yaml.safe_load(open("docker/patroni/patroni.yml"))
d = p["bootstrap"]["dcs"]
print(d["synchronous_mode"], d["loop_wait"] + 2 * d["retry_timeout"] <= d["ttl"])
]])
    local out = H.must("cd " .. H.q(H.root) .. " && /usr/bin/python3 " .. H.q(py))
    os.remove(py)
    local services, dburl, checks = out:match("^([^\n]*)\n([^\n]*)\n([^\n]*)")
    assert.equal("etcd gw1 gw2 haproxy migrate pg1 pg2 pg3", services)
    assert.equal("postgresql://sluice:sluice@pg1:5432,pg2:5432,pg3:5432/sluice?target_session_attrs=read-write", dburl)
    assert.equal("True True", checks)
    H.must("cd " .. H.q(H.root .. "/docker") .. " && haproxy -c -q -f haproxy.cfg")
  end)
end)
