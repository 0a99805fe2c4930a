-- docker_spec.lua — the start-up steps of docker/compose.yml without Docker (no engine runs in
-- the tests): `sluice migrate up` then `sluice serve` with docker/sluice.lua and the compose
-- file's environment, the Dockerfile's HEALTHCHECK command against it, the runtime packages of
-- the Dockerfile against the binary's libraries, the dashboard's metrics against /metrics, and
-- the compose file through `docker compose config` / `docker-compose config` where installed.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local clear = "-u SLUICE_LISTEN -u SLUICE_WORKERS -u SLUICE_ADMIN_TOKEN -u SLUICE_POOL_SIZE -u SLUICE_MAX_OVERFLOW " ..
  "-u SLUICE_POOL_TIMEOUT -u SLUICE_POOL_RECYCLE -u SLUICE_ECHO -u SLUICE_PREPARED_STATEMENT_CACHE_SIZE"

describe("docker/", function()
  local db, pid, base, log, tmp
  local dockerfile = H.readfile(H.root .. "/docker/Dockerfile")

  setup(function()
    db = H.createdb("docker")
    tmp = H.tmpdir("sluice-docker")
    log = tmp .. "/serve.log"
  end)

  teardown(function()
    if pid then
      H.sh("kill -TERM " .. pid)
      local deadline = H.now() + 10
      while H.now() < deadline and select(2, H.sh("kill -0 " .. pid)) == 0 do H.sleep(0.05) end
    end
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
  end)

  -- The compose file's environment for the migrate and sluice services, with this test's
  -- databases: the replica is the test replica when there is one, else a port nobody listens on.
  local function env()
    local replica = os.getenv("SLUICE_TEST_REPLICA_DSN")
    replica = replica and H.dsn_with_db(replica, H.dsn_dbname(db)) or
      ("host=127.0.0.1 port=%d user=postgres dbname=x connect_timeout=1"):format(H.free_port())
    return ("env %s DATABASE_URL=%s REPLICA_URL=%s SLUICE_ADMIN_TOKEN=change-me"):format(clear, H.q(db), H.q(replica))
  end

  it("migrate runs as the compose file's migrate service does", function()
    -- the image's working directory holds conf/, lua/ and migrations/ as the repository does
    local out, rc, err = H.sh(("cd %s && %s %s migrate --config docker/sluice.lua up"):format(H.q(H.root), env(), H.q(H.bin)))
    assert(rc == 0, out .. err)
    assert.truthy(out:find("applied 0001_forex.sql", 1, true), out)
  end)

  it("serve runs as the compose file's sluice service does, and the HEALTHCHECK passes", function()
    local port = H.free_port()
    base = "http://127.0.0.1:" .. port
    -- SLUICE_LISTEN stands in for the container's 0.0.0.0:8080
    pid = tonumber(H.must(("cd %s && { %s SLUICE_LISTEN=127.0.0.1:%d SLUICE_WORKERS=2 %s serve --config docker/sluice.lua >%s 2>&1 & echo $!; }")
      :format(H.q(H.root), env(), port, H.q(H.bin), H.q(log))))
    local health = dockerfile:match("HEALTHCHECK[^\n]*\\\n%s*CMD ([^\n]+)")
    assert(health, "no HEALTHCHECK ... CMD in docker/Dockerfile")
    health = health:gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. port)
    local deadline, rc = H.now() + 10, nil
    repeat
      _, rc = H.sh(health)
      if rc ~= 0 then H.sleep(0.1) end
    until rc == 0 or H.now() > deadline
    assert(rc == 0, "the HEALTHCHECK command failed: " .. health .. "\n" .. (H.readfile(log) or ""))
    -- readonly queries go to the replica while sluice.pools.replica.healthy; with the replica
    -- down they fall back to the primary once the health flags are refreshed (every second)
    local s, raw
    deadline = H.now() + 5
    repeat
      s, raw = H.http("GET", base .. "/quotes/EURUSD")
      if s ~= 200 then H.sleep(0.2) end
    until s == 200 or H.now() > deadline
    assert.equal(200, s, raw)
    assert.equal("EURUSD", H.decode(raw).pair)
    -- the replica pool is optional: ready even while it is down
    s, raw = H.http("GET", base .. "/health/ready")
    assert.equal(200, s, raw)
    local h = H.decode(select(2, H.http("GET", base .. "/health")))
    assert.is_table(h.pools.primary)
    assert.is_table(h.pools.replica)
    s = H.http("GET", base .. "/admin/queries", nil, { authorization = "Bearer change-me" })
    assert.equal(200, s)
  end)

  it("the dashboard's metrics are all on /metrics", function()
    assert(base, "the gateway is not running")
    local s, metrics = H.http("GET", base .. "/metrics")
    assert.equal(200, s)
    local have = {}
    for name, kind in metrics:gmatch("# TYPE ([%w_]+) (%a+)") do have[name] = kind end
    local dash = H.decode(H.readfile(H.root .. "/docker/grafana/dashboards/sluice.json"))
    local used = 0
    for _, p in ipairs(dash.panels) do
      for _, t in ipairs(p.targets or {}) do
        for name in t.expr:gmatch("([%a_][%w_]*){") do
          local base_name = name:gsub("_bucket$", "")
          assert(have[base_name], ("panel %q uses %s, which /metrics does not have"):format(p.title, name))
          if name ~= base_name then assert.equal("histogram", have[base_name], name) end
          used = used + 1
        end
      end
    end
    assert.is_true(used >= 15)
    -- every metric of docs/metrics.md has a panel
    for _, m in ipairs { "db_pool_size", "db_pool_usage", "db_connection_time_seconds", "prepared_stmt_cache_size",
      "prepared_stmt_execution_time_seconds", "prepared_stmt_executions_total", "bulk_operation_time_seconds",
      "bulk_operation_rows_total", "bulk_operation_executions_total", "db_query_time_seconds", "db_query_count",
      "db_slow_query_count", "db_deadlock_count", "db_connection_errors" } do
      assert.truthy(H.readfile(H.root .. "/docker/grafana/dashboards/sluice.json"):find(m, 1, true), m)
    end
  end)

  it("the Dockerfile installs the packages of the binary's libraries", function()
    local build = dockerfile:match("FROM debian:12 AS build.-apt%-get install[^\n]*\n([^\n]+)")
    local runtime = dockerfile:match("FROM debian:12%-slim.-apt%-get install[^\n]*\n([^\n]+)")
    assert(build and runtime, "no apt-get install lines in docker/Dockerfile")
    for _, p in ipairs { "build-essential", "pkg-config", "libssl-dev", "libpq-dev", "libh2o-evloop-dev",
      "libjansson-dev", "libluajit-5.1-dev" } do
      assert.truthy((" " .. build .. " "):find(" " .. p .. " ", 1, true), "build stage lacks " .. p)
    end
    -- the packages that ship the libraries sluice links against directly
    local out = H.must("ldd " .. H.q(H.bin))
    for _, lib in ipairs { "libh2o%-evloop", "libjansson", "libluajit", "libpq", "libssl" } do
      local path = out:match(lib .. "[^\n]-=> (%S+)")
      assert(path, "ldd shows no " .. lib)
      local pkg = H.must("dpkg -S \"$(readlink -f " .. H.q(path) .. ")\""):match("^([^:]+)")
      assert.truthy((" " .. runtime .. " "):find(" " .. pkg .. " ", 1, true), "runtime stage lacks " .. pkg)
    end
    assert.truthy(dockerfile:find("\nUSER sluice", 1, true))
    assert.truthy(dockerfile:find("debian:12-slim", 1, true))
  end)

  it("the compose file is valid", function()
    local _, v2 = H.sh("docker compose version >/dev/null 2>&1")
    local _, v1 = H.sh("command -v docker-compose >/dev/null")
    if v2 ~= 0 and v1 ~= 0 then
      pending("neither `docker compose` nor docker-compose is installed (Debian: apt-get install docker-compose)")
      return
    end
    local cmd = v2 == 0 and "docker compose" or "docker-compose"
    local out = H.must(("cd %s && %s -f compose.yml config"):format(H.q(H.root .. "/docker"), cmd))
    for _, svc in ipairs { "primary:", "replica:", "migrate:", "sluice:", "prometheus:", "grafana:" } do
      assert.truthy(out:find("\n  " .. svc, 1, true), svc)
    end
  end)
end)
