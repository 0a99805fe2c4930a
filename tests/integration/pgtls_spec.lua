-- pgtls_spec.lua — TLS to PostgreSQL set in the pool URL, against a PostgreSQL of its own that
-- takes TCP only over TLS, with a CA, server and client certificates made here with openssl.
-- verify-full serves (pg_stat_ssl shows TLS); a wrong CA, a name the certificate lacks,
-- sslmode=disable, no client certificate or a wrong password give 503 unavailable with the reason
-- in the log and /health and no password anywhere; `sluice check` / `migrate` fail in one line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local PGBIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"
local IS_ROOT = H.must("id -u"):match("^0%s*$") ~= nil

-- The shell command that runs cmd as the postgres user when we are root (initdb and pg_ctl
-- refuse root), as it is otherwise.
local function as_pg(cmd)
  if IS_ROOT then return "cd / && runuser -u postgres -- " .. cmd end
  return cmd
end

-- Polls fn until it returns a true value or timeout seconds pass; returns that value or nil.
local function wait_for(fn, timeout, interval)
  local deadline = H.now() + timeout
  repeat
    local v = fn()
    if v then return v end
    H.sleep(interval or 0.1)
  until H.now() > deadline
  return nil
end

-- Harness timeouts scaled for slow runs (SLUICE_TEST_TIMEOUT_SCALE, valgrind).
local S = H.scaled or function(s) return s end

local function has(s, sub) return s ~= nil and s:find(sub, 1, true) ~= nil end

-- Passwords in URLs: random, so finding one in a log or a response can only be a leak.
local SECRET = ("Pw%dq%d"):format(math.random(1e6, 9e6), math.random(1e6, 9e6))
local WRONG = ("Wr%dq%d"):format(math.random(1e6, 9e6), math.random(1e6, 9e6))

local TLS_SQL = [[ SELECT ssl, version, client_dn, current_user::text AS usr
                   FROM pg_stat_ssl WHERE pid = pg_backend_pid() ]]

local scripts = {
  ["tls.lua"] = ([==[
sluice.policy { breaker = { failures = 3, window_ms = 10000, open_ms = 300, half_open = 1 } }
sluice.query "quotes" { readonly = true, sql = [[ SELECT pair, bid FROM quotes ORDER BY pair ]] }
sluice.query "tls" { readonly = true, single = true, sql = [[ %s ]] }
]==]):format(TLS_SQL),
}

-- The good gateway has one pool per way of authenticating; one TLS query on each.
local multi_scripts = { ["tls.lua"] = scripts["tls.lua"] }
for _, pool in ipairs { "ip", "pw", "cert" } do
  multi_scripts[pool .. ".lua"] =
    ('sluice.query "tls_%s" { readonly = true, single = true, pool = %q, sql = [[ %s ]] }\n')
      :format(pool, pool, TLS_SQL)
end

describe("TLS to PostgreSQL", function()
  local dir, certs, pgdir, port, admin, pg_started, watcher_started

  -- A pool URL for this server: user (with password), host, query options.
  local function url(userinfo, host, opts)
    return ("postgresql://%s@%s:%d/postgres%s"):format(userinfo, host, port, opts and ("?" .. opts) or "")
  end
  local function verify_full(ca) return "sslmode=verify-full&sslrootcert=" .. certs .. "/" .. ca end

  local function stop_pg()
    if pgdir and H.readfile(pgdir .. "/data/postmaster.pid") then
      H.sh(as_pg(("%s/pg_ctl -D %s -m immediate -w -t 20 stop"):format(PGBIN, H.q(pgdir .. "/data"))))
    end
    if dir then H.sh("rm -rf " .. H.q(dir)) end
  end

  local function openssl(args) return H.must("cd " .. H.q(certs) .. " && openssl " .. args .. " 2>&1") end

  -- A self-signed CA: name.key, name.crt.
  local function make_ca(name, cn)
    openssl(("req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      .. "-keyout %s.key -out %s.crt -subj %s -addext %s -addext %s"):format(name, name, H.q("/CN=" .. cn),
      H.q("basicConstraints=critical,CA:TRUE"), H.q("keyUsage=critical,keyCertSign,cRLSign")))
  end

  -- A leaf certificate signed by ca: name.key, name.crt, with the given extensions.
  local function make_leaf(name, cn, ca, serial, ext)
    H.writefile(certs .. "/" .. name .. ".ext", ext)
    openssl(("req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s.key -out %s.csr -subj %s")
      :format(name, name, H.q("/CN=" .. cn)))
    openssl(("x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -set_serial %d -days 2 -out %s.crt -extfile %s.ext")
      :format(name, ca, ca, serial, name, name))
  end

  local function start_everything()
    dir = H.tmpdir("sluice-pgtls")
    H.must("chmod 755 " .. H.q(dir)) -- the postgres user passes through to its own pg/
    certs, pgdir = dir .. "/certs", dir .. "/pg"
    H.must("mkdir -p " .. H.q(certs) .. " " .. H.q(pgdir))

    -- If this process dies, stop the server and remove everything (teardown does it otherwise).
    H.must(([[( trap '' TERM INT HUP
      while kill -0 %d 2>/dev/null; do sleep 1; done
      [ -f %s ] && %s
      rm -rf %s ) >/dev/null 2>&1 </dev/null &]]):format(H.pid, H.q(pgdir .. "/data/postmaster.pid"),
      as_pg(("%s/pg_ctl -D %s -m immediate -w -t 20 stop"):format(PGBIN, H.q(pgdir .. "/data"))), H.q(dir)))
    watcher_started = true

    make_ca("ca", "sluice test CA")
    make_ca("other", "unrelated test CA")
    make_leaf("server", "localhost", "ca", 2, table.concat({
      "subjectAltName = DNS:localhost, IP:127.0.0.1",
      "basicConstraints = CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth", "" }, "\n"))
    make_leaf("client", "tls_cert", "ca", 3, table.concat({
      "basicConstraints = CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = clientAuth", "" }, "\n"))
    H.must("chmod 600 " .. H.q(certs .. "/client.key")) -- libpq refuses a key others can read
    assert(has(openssl("verify -CAfile ca.crt server.crt client.crt"), "server.crt: OK"))

    -- The server's copies belong to postgres with mode 0600, as PostgreSQL demands of the key.
    for _, f in ipairs { "server.crt", "server.key", "ca.crt" } do
      H.must(("cp %s %s"):format(H.q(certs .. "/" .. f), H.q(pgdir .. "/" .. f)))
    end
    if IS_ROOT then H.must("chown -R postgres:postgres " .. H.q(pgdir)) end
    H.must(("chmod 700 %s && chmod 600 %s/server.crt %s/server.key %s/ca.crt"):format(
      H.q(pgdir), H.q(pgdir), H.q(pgdir), H.q(pgdir)))

    port = H.free_port()
    H.must(as_pg(("%s/initdb -D %s -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null"):format(
      PGBIN, H.q(pgdir .. "/data"))))
    -- (as root these files stay postgres's: they are written in place, not re-created)
    local conf = assert(io.open(pgdir .. "/data/postgresql.conf", "ab"))
    conf:write("\n# pgtls_spec.lua\n", table.concat({
      "listen_addresses = '127.0.0.1,127.0.0.2'",
      "port = " .. port,
      "unix_socket_directories = '" .. pgdir .. "'",
      "fsync = off", "synchronous_commit = off", "full_page_writes = off",
      "ssl = on",
      "ssl_cert_file = '" .. pgdir .. "/server.crt'",
      "ssl_key_file = '" .. pgdir .. "/server.key'",
      "ssl_ca_file = '" .. pgdir .. "/ca.crt'",
      "ssl_min_protocol_version = 'TLSv1.2'",
    }, "\n"), "\n")
    conf:close()
    -- TCP only over TLS: anything unencrypted is rejected before authentication.
    H.writefile(pgdir .. "/data/pg_hba.conf", table.concat({
      "local     all all                  trust",
      "hostnossl all all      0.0.0.0/0   reject",
      "hostnossl all all      ::/0        reject",
      "hostssl   all tls_cert 127.0.0.0/8 cert",
      "hostssl   all tls_pw   127.0.0.0/8 scram-sha-256",
      "hostssl   all all      127.0.0.0/8 trust",
    }, "\n") .. "\n")
    H.must(as_pg(("%s/pg_ctl -D %s -l %s -w -t 30 start >/dev/null"):format(PGBIN, H.q(pgdir .. "/data"),
      H.q(pgdir .. "/server.log"))))
    pg_started = true

    admin = ("host=%s port=%d user=postgres dbname=postgres"):format(pgdir, port) -- unix socket
    H.psql(admin, ([[
      CREATE TABLE quotes (pair text PRIMARY KEY, bid numeric NOT NULL);
      INSERT INTO quotes VALUES ('EURUSD', 1.0841), ('GBPUSD', 1.2702), ('USDJPY', 151.32);
      CREATE ROLE tls_pw LOGIN PASSWORD '%s';
      CREATE ROLE tls_cert LOGIN;
      GRANT SELECT ON quotes TO tls_pw, tls_cert;
    ]]):format(SECRET))
  end

  setup(function()
    local ok, err = pcall(start_everything)
    if not ok then
      stop_pg()
      error(err, 0)
    end
  end)

  teardown(function()
    H.cleanup()
    stop_pg()
  end)

  -- Asserts that neither the log nor /health of gw shows a password.
  local function assert_no_secret(gw, health_raw)
    for _, s in ipairs { SECRET, WRONG } do
      assert.falsy(has(gw:log(), s), "a password is in the gateway's log")
      assert.falsy(has(health_raw, s), "a password is in /health")
    end
  end

  it("the server takes TCP connections only over TLS, verified against the test CA", function()
    assert.truthy(pg_started)
    local out = H.psql1(url("postgres", "localhost", verify_full("ca.crt")),
      "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert.equal("t", out)
    local _, rc, err = H.sh(("psql -X -A -t -d %s -c 'SELECT 1'"):format(
      H.q(url("postgres", "localhost", "sslmode=disable"))))
    assert.are_not.equal(0, rc)
    assert.truthy(has(err, "no encryption"), err)
  end)

  describe("sslmode=verify-full with the CA that signed the server certificate", function()
    local gw

    setup(function()
      gw = H.start { scripts = multi_scripts, config = {
        log = { level = "debug" },
        pools = {
          primary = { url = url("postgres", "localhost", verify_full("ca.crt")), pool_size = 2 },
          -- the certificate's IP SAN
          ip = { url = url("postgres", "127.0.0.1", verify_full("ca.crt")), pool_size = 2 },
          -- a password (SCRAM) sent only inside TLS
          pw = { url = url("tls_pw:" .. SECRET, "localhost", verify_full("ca.crt")), pool_size = 2 },
          -- a client certificate instead of a password
          cert = { url = url("tls_cert", "localhost", verify_full("ca.crt") .. "&sslcert=" .. certs
            .. "/client.crt&sslkey=" .. certs .. "/client.key"), pool_size = 2 },
        },
      } }
    end)

    teardown(function()
      if gw then pcall(gw.stop, gw) end
    end)

    it("a named query returns its rows", function()
      local s, b, h, raw = gw:get_json("/query/quotes")
      H.assert_ok(s, b, h, raw)
      assert.equal(3, b.row_count)
      assert.same({ "EURUSD", "GBPUSD", "USDJPY" }, { b.rows[1].pair, b.rows[2].pair, b.rows[3].pair })
      assert.equal(1.0841, b.rows[1].bid)
    end)

    it("pg_stat_ssl shows TLS 1.2 or 1.3 on the gateway's own connection, for every pool", function()
      local want = {
        tls = { usr = "postgres" }, tls_ip = { usr = "postgres" }, tls_pw = { usr = "tls_pw" },
        tls_cert = { usr = "tls_cert", client_dn = "/CN=tls_cert" },
      }
      for name, w in pairs(want) do
        local s, b, h, raw = gw:get_json("/query/" .. name)
        H.assert_ok(s, b, h, raw)
        assert.is_true(b.ssl, name .. ": " .. raw)
        assert.truthy(b.version == "TLSv1.2" or b.version == "TLSv1.3", name .. ": " .. raw)
        assert.equal(w.usr, b.usr, name .. ": " .. raw)
        if w.client_dn then assert.equal(w.client_dn, b.client_dn, raw) end
      end
    end)

    it("every backend the gateway holds is encrypted (seen from the server)", function()
      local out = H.psql1(admin, [[
        SELECT count(*), count(*) FILTER (WHERE s.ssl AND s.version IN ('TLSv1.2', 'TLSv1.3'))
        FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'sluice' ]])
      local total, tls = out:match("^(%d+)|(%d+)$")
      assert.truthy(total, out)
      assert.is_true(tonumber(total) >= 4, out) -- at least one per pool after the queries above
      assert.equal(total, tls, out)
    end)

    it("/health is ok and nothing secret is logged", function()
      local s, b, h, raw = gw:get_json("/health")
      H.assert_ok(s, b, h, raw)
      assert.equal("ok", b.status, raw)
      for _, pool in ipairs { "primary", "ip", "pw", "cert" } do
        assert.equal("ok", b.pools[pool].status, raw)
      end
      assert_no_secret(gw, raw)
    end)
  end)

  it("PGSSLMODE and PGSSLROOTCERT in the environment work when the URL does not say", function()
    local gw = H.start { scripts = scripts, pool = { url = url("postgres", "localhost") },
      env = { PGSSLMODE = "verify-full", PGSSLROOTCERT = certs .. "/ca.crt" } }
    local s, b, h, raw = gw:get_json("/query/tls")
    H.assert_ok(s, b, h, raw)
    assert.is_true(b.ssl, raw)
    assert.equal(0, gw:stop())
    -- the same variables with the wrong CA: verification really is on
    gw = H.start { scripts = scripts, pool = { url = url("postgres", "localhost"),
      pool_timeout = 3 }, env = { PGSSLMODE = "verify-full", PGSSLROOTCERT = certs .. "/other.crt" } }
    H.assert_error(503, "unavailable", gw:get_json("/query/tls", nil, 15))
    assert.equal(0, gw:stop())
  end)

  -- Each case: a gateway whose only pool cannot connect. It still starts (live 200), answers
  -- 503 unavailable with Retry-After (docs/http-api.md: database unreachable), logs why, and /health
  -- and /health/ready are 503 with the reason in last_error.
  local cases = {
    { "a CA that did not sign the server certificate",
      function() return url("tls_pw:" .. SECRET, "localhost", verify_full("other.crt")) end,
      "certificate verify failed" },
    { "a host name the certificate does not carry (hostaddr 127.0.0.1)",
      function() return url("tls_pw:" .. SECRET, "db.invalid", "hostaddr=127.0.0.1&" .. verify_full("ca.crt")) end,
      'does not match host name \\"db.invalid\\"' },
    { "an address the certificate does not carry (127.0.0.2)",
      function() return url("postgres:" .. SECRET, "127.0.0.2", verify_full("ca.crt")) end,
      'does not match host name \\"127.0.0.2\\"' },
    { "sslmode=disable against a server that requires TLS",
      function() return url("postgres:" .. SECRET, "localhost", "sslmode=disable") end,
      "no encryption" },
    { "a user that must present a client certificate, without one",
      function() return url("tls_cert", "localhost", verify_full("ca.crt")) end,
      "connection requires a valid client certificate" },
    { "a wrong password (sent inside TLS)",
      function() return url("tls_pw:" .. WRONG, "localhost", verify_full("ca.crt")) end,
      'password authentication failed for user \\"tls_pw\\"' },
  }

  for _, case in ipairs(cases) do
    local what, make_url, reason = case[1], case[2], case[3]
    it(what .. ": starts, 503 unavailable, the reason in the log and /health, no secret", function()
      local gw = H.start { scripts = scripts, config = { log = { level = "debug" } },
        pool = { url = make_url(), pool_size = 2, pool_timeout = 3, connect_timeout = 5 } }
      local s, b, h, raw = gw:get_json("/health/live")
      H.assert_ok(s, b, h, raw)

      -- the first query after start is already a 503, well within pool_timeout + connect_timeout
      local t0 = H.now()
      s, b, h, raw = gw:get_json("/query/quotes", nil, 20)
      H.assert_error(503, "unavailable", s, b, h, raw)
      assert.truthy(h["retry-after"], "503 without Retry-After")
      assert.is_true(H.now() - t0 < S(8), ("took %.1f s"):format(H.now() - t0))

      assert.truthy(wait_for(function() return has(gw:log(), reason) end, S(10)),
        ("the log does not say %q:\n%s"):format(reason, gw:log()))

      local health
      assert.truthy(wait_for(function()
        s, b, h, raw = gw:get_json("/health")
        health = raw
        return s == 503
      end, S(10)), "/health did not go down: " .. tostring(raw))
      assert.equal("down", b.status, raw)
      assert.equal("down", b.pools.primary.status, raw)
      assert.truthy(has(b.pools.primary.last_error, (reason:gsub('\\"', '"'))), raw)
      H.assert_error(503, "unavailable", gw:get_json("/health/ready"))

      assert.is_true(gw:alive())
      assert.equal(0, gw:stop())
      assert_no_secret(gw, health)
    end)
  end

  it("a CA file that is fixed on disk is picked up without a restart", function()
    local rot = certs .. "/rotating.crt"
    H.must(("cp %s %s"):format(H.q(certs .. "/other.crt"), H.q(rot)))
    local gw = H.start { scripts = scripts, pool = { url = url("postgres", "localhost",
      "sslmode=verify-full&sslrootcert=" .. rot), pool_size = 2, pool_timeout = 2 } }
    H.assert_error(503, "unavailable", gw:get_json("/query/tls", nil, 15))
    H.must(("cp %s %s.new && mv %s.new %s"):format(H.q(certs .. "/ca.crt"), H.q(rot), H.q(rot), H.q(rot)))
    local last
    local ok = wait_for(function()
      local s, b, _, raw = gw:get_json("/query/tls", nil, 10)
      last = raw
      return s == 200 and b.ssl == true
    end, S(20), 0.2)
    assert.truthy(ok, "no recovery after the CA file was fixed; last: " .. tostring(last))
    assert.equal(0, gw:stop())
  end)

  describe("the CLI commands", function()
    local cli_dir

    -- A config for check/migrate with the given pool URL; returns its path.
    local function cli_config(pool_url)
      cli_dir = cli_dir or (dir .. "/cli")
      H.must("mkdir -p " .. H.q(cli_dir .. "/scripts") .. " " .. H.q(cli_dir .. "/migrations"))
      H.writefile(cli_dir .. "/scripts/q.lua",
        'sluice.query "quotes" { readonly = true, sql = [[ SELECT pair, bid FROM quotes ]] }\n')
      H.writefile(cli_dir .. "/migrations/0001_tls_mig.sql", "CREATE TABLE tls_mig (id int4 PRIMARY KEY);\n")
      local path = cli_dir .. "/config-" .. math.random(1e6, 9e6) .. ".lua"
      H.write_config(path, { listen = "127.0.0.1:1", pools = { primary = { url = pool_url } },
        scripts = { cli_dir .. "/scripts/*.lua" }, migrations = cli_dir .. "/migrations" })
      return path
    end

    local function run(cmd, path)
      return H.sh(("timeout -k 5 30 env -u DATABASE_URL -u PGSSLMODE -u PGSSLROOTCERT %s %s --config %s%s")
        :format(H.q(H.bin), cmd:match("^%S+"), H.q(path), cmd:match("^%S+(.*)$")))
    end

    local function lines(s)
      local t = {}
      for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
      return t
    end

    local function table_exists()
      return H.psql1(admin, "SELECT to_regclass('tls_mig') IS NOT NULL") == "t"
    end

    it("with a wrong CA: check, migrate up and migrate status exit 1 with one line naming the failure", function()
      local path = cli_config(url("tls_pw:" .. SECRET, "localhost", verify_full("other.crt")))
      for _, cmd in ipairs { "check", "migrate up", "migrate status" } do
        local out, rc, err = run(cmd, path)
        assert.equal(1, rc, cmd .. ": " .. out .. err)
        local l = lines(err)
        assert.equal(1, #l, cmd .. " stderr: " .. err)
        assert.truthy(has(l[1], "certificate verify failed"), cmd .. ": " .. err)
        assert.falsy(has(out, "ok "), cmd .. ": " .. out)
        assert.falsy(has(out .. err, SECRET), cmd .. " printed the password")
      end
      assert.is_false(table_exists())
    end)

    it("with the right CA: check passes and migrate up applies over TLS", function()
      local path = cli_config(url("postgres:" .. SECRET, "localhost", verify_full("ca.crt")))
      local out, rc, err = run("check", path)
      assert.equal(0, rc, out .. err)
      assert.truthy(has(out, "ok     quotes"), out)
      out, rc, err = run("migrate up", path)
      assert.equal(0, rc, out .. err)
      assert.is_true(table_exists())
      assert.falsy(has(out .. err, SECRET), "migrate printed the password")
    end)
  end)
end)
