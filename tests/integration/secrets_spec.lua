-- secrets_spec.lua — a pool URL's password shows nowhere: not in /health, /metrics,
-- /admin/queries, a 503 body or the log of the gateway, nor in what `sluice check` and
-- `sluice migrate` print. Three URLs a password leaked from: a bad percent-escape in the password
-- (libpq's parse error quoted it), a raw '@' in the password (libpq took the rest for the host
-- and named it), and a well-formed URL to a server that is not there.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local ADMIN = "secrets-admin-token"

-- Every text that must not appear (the passwords and the parts libpq would split them into).
local SECRETS = { "s3cr%zzet", "s3cr", "zzet", "hunt@r2", "hunt", "r2@", "pw-0f9e8d" }

local function urls(port)
  return {
    primary = ("postgresql://app:s3cr%%zzet@127.0.0.1:%d/app"):format(port),
    at_sign = ("postgresql://app:hunt@r2@127.0.0.1:%d/app"):format(port),
    down = ("postgresql://app:pw-0f9e8d@127.0.0.1:%d/app?connect_timeout=2"):format(port),
  }
end

local scripts = {
  ["q.lua"] = [==[
sluice.query "a" { readonly = true, sql = [[ SELECT 1 AS x ]] }
sluice.query "b" { readonly = true, sql = [[ SELECT 1 AS x ]], pool = "at_sign" }
sluice.query "c" { readonly = true, sql = [[ SELECT 1 AS x ]], pool = "down" }
]==],
}

local function assert_no_secret(text, what)
  for _, s in ipairs(SECRETS) do
    assert(not text:find(s, 1, true), ("%s shows %q:\n%s"):format(what, s, text))
  end
end

-- Writes a config for the CLI commands; returns its path.
local function cli_config(dir, pools)
  H.must("mkdir -p " .. H.q(dir .. "/scripts") .. " " .. H.q(dir .. "/migrations"))
  H.writefile(dir .. "/scripts/q.lua", [[ sluice.query "a" { readonly = true, sql = "SELECT 1 AS x" } ]])
  H.writefile(dir .. "/migrations/0001_t.sql", "CREATE TABLE t (id int);\n")
  local p = {}
  for name, url in pairs(pools) do p[name] = { url = url } end
  local path = dir .. "/config.lua"
  H.write_config(path, { pools = p, scripts = { dir .. "/scripts/*.lua" }, migrations = dir .. "/migrations" })
  return path
end

local function cli(cmd, path)
  local out, rc, err = H.sh(("timeout -k 5 30 env -u DATABASE_URL %s %s --config %s"):format(H.q(H.bin), cmd,
    H.q(path)))
  return rc, out .. err
end

describe("pool URL passwords", function()
  local port = H.free_port() -- nothing listens there
  local pools = urls(port)

  teardown(function() H.cleanup() end)

  it("show in none of /health, /metrics, /admin/queries, 503 bodies and the log", function()
    local gw = H.start { dsn = pools.primary, scripts = scripts,
      pool = { pool_timeout = 1 },
      config = { admin_token = ADMIN, pools = {
        primary = { url = pools.primary, pool_timeout = 1 },
        at_sign = { url = pools.at_sign, pool_timeout = 1 },
        down = { url = pools.down, pool_timeout = 1 },
      } } }
    for _, q in ipairs { "a", "b", "c" } do
      local s, b, h, raw = gw:get_json("/query/" .. q, nil, 10)
      H.assert_error(503, "unavailable", s, b, h, raw)
      assert_no_secret(raw, "the 503 of /query/" .. q)
    end
    -- every pool has tried and failed by now: /health shows each one's last error
    local raw
    local deadline = H.now() + 10
    repeat
      local _, b
      _, b, _, raw = gw:get_json("/health")
      local pools_seen = 0
      for _, p in pairs(type(b) == "table" and type(b.pools) == "table" and b.pools or {}) do
        if type(p) == "table" and p.last_error then pools_seen = pools_seen + 1 end
      end
      if pools_seen == 3 then break end
      H.sleep(0.2)
    until H.now() > deadline
    assert_no_secret(raw, "/health")
    assert.truthy(raw:find("invalid connection URL", 1, true), raw)
    local _, health_ready = gw:get("/health/ready")
    assert_no_secret(health_ready, "/health/ready")
    local _, metrics = gw:get("/metrics")
    assert_no_secret(metrics, "/metrics")
    local _, admin = gw:get("/admin/queries", { authorization = "Bearer " .. ADMIN })
    assert_no_secret(admin, "/admin/queries")
    gw:stop()
    local log = gw:log()
    assert.truthy(log:find("invalid connection URL", 1, true), log)
    assert_no_secret(log, "the log")
  end)

  it("show in no output of sluice check; the URL shows with *** for its password", function()
    local dir = H.tmpdir("sluice-secrets")
    for name, url in pairs(pools) do
      local path = cli_config(dir .. "/" .. name, { primary = url })
      local rc, all = cli("check", path)
      assert.equal(1, rc, all)
      assert_no_secret(all, "sluice check with the " .. name .. " URL")
      assert.truthy(all:find("postgresql://app:***@", 1, true), all)
    end
    H.sh("rm -rf " .. H.q(dir))
  end)

  it("show in no output of sluice migrate", function()
    local dir = H.tmpdir("sluice-secrets")
    for name, url in pairs(pools) do
      local path = cli_config(dir .. "/" .. name, { primary = url })
      for _, sub in ipairs { "up", "status" } do
        local rc, all = cli("migrate " .. sub, path)
        assert.equal(1, rc, all)
        assert_no_secret(all, "sluice migrate " .. sub .. " with the " .. name .. " URL")
        assert.truthy(all:find("^migrate: cannot connect to postgresql://app:%*%*%*@"), all)
      end
    end
    H.sh("rm -rf " .. H.q(dir))
  end)
end)
