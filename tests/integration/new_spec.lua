-- new_spec.lua — `sluice new demo` against a fresh database: the skeleton, unchanged, migrates
-- (twice: the second run is a no-op), passes `sluice check`, is served by `sluice serve` from its
-- own folder with its own conf/sluice.lua, and its busted spec passes against it.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

-- Variables that would override the skeleton's config; cleared for every command.
local clear = "-u SLUICE_LISTEN -u SLUICE_WORKERS -u SLUICE_ADMIN_TOKEN -u SLUICE_POOL_SIZE -u SLUICE_MAX_OVERFLOW " ..
  "-u SLUICE_POOL_TIMEOUT -u SLUICE_POOL_RECYCLE -u SLUICE_ECHO -u SLUICE_PREPARED_STATEMENT_CACHE_SIZE"

describe("sluice new", function()
  local tmp, dir, db, pid, base, log

  -- Runs `sluice <args>` in dir with DATABASE_URL set; returns stdout, exit code, stderr.
  local function sluice(args, env)
    return H.sh(("cd %s && env %s DATABASE_URL=%s %s %s %s"):format(H.q(dir), clear, H.q(db), env or "", H.q(H.bin), args))
  end

  setup(function()
    tmp = H.tmpdir("sluice-new")
    dir = tmp .. "/demo"
    db = H.createdb("demo")
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

  it("creates the skeleton", function()
    local out = H.must(("cd %s && %s new demo"):format(H.q(tmp), H.q(H.bin)))
    for _, f in ipairs { "conf/sluice.lua", "lua/endpoints/example.lua", "lua/policy.lua", "migrations/0001_init.sql",
      "tests/example_spec.lua", "README.md" } do
      assert.truthy(H.readfile(dir .. "/" .. f), f)
      assert.truthy(out:find("demo/" .. f, 1, true), out)
    end
    assert.truthy(H.readfile(dir .. "/conf/sluice.lua"):find("/demo\"", 1, true))
    assert.truthy(H.readfile(dir .. "/README.md"):find("# demo", 1, true))
  end)

  it("refuses a folder that exists, and a missing name", function()
    local _, rc, err = H.sh(("cd %s && %s new demo"):format(H.q(tmp), H.q(H.bin)))
    assert.equal(2, rc)
    assert.truthy(err:find("already exists", 1, true), err)
    _, rc, err = H.sh(H.q(H.bin) .. " new")
    assert.equal(2, rc)
    assert.truthy(err:find("sluice new NAME", 1, true), err)
  end)

  it("refuses a service name that could leave its string, and writes nothing", function()
    for _, name in ipairs { 'x"); os.execute("touch pwned") --', "demo\nos.execute('touch pwned')\n--",
      "a]]b", "na'me", "a b", ".hidden", "caf\195\169" } do
      local _, rc, err = H.sh(("cd %s && %s new %s"):format(H.q(tmp), H.q(H.bin), H.q(name)))
      assert.equal(2, rc, name)
      assert.truthy(err:find("may hold only letters, digits", 1, true), err)
      assert.is_nil(err:find("\n.", 1), err) -- one line, the name escaped
      assert.equal("demo\n", H.must("ls " .. H.q(tmp)), name)
    end
  end)

  it("writes Lua files that load and name the service as given", function()
    local out = H.must(("cd %s && %s new my-svc.v2_x"):format(H.q(tmp), H.q(H.bin)))
    assert.truthy(out:find("my-svc.v2_x/README.md", 1, true), out)
    local d = tmp .. "/my-svc.v2_x/"
    for _, f in ipairs { "conf/sluice.lua", "lua/endpoints/example.lua", "lua/policy.lua", "tests/example_spec.lua" } do
      assert(loadfile(d .. f))
    end
    assert.truthy(H.readfile(d .. "tests/example_spec.lua"):find('\ndescribe("my-svc.v2_x", function()\n', 1, true))
    assert.truthy(H.readfile(d .. "conf/sluice.lua"):find('5432/my_svc_v2_x"', 1, true))
    assert.truthy(H.readfile(d .. "migrations/0001_init.sql"):find("'the first note of my-svc.v2_x'", 1, true))
    H.must("rm -rf " .. H.q(d))
  end)

  it("migrate up applies 0001_init.sql; a second run is a no-op", function()
    local out, rc, err = sluice("migrate up")
    assert(rc == 0, out .. err)
    assert.truthy(out:find("applied 0001_init.sql", 1, true), out)
    out, rc, err = sluice("migrate up")
    assert(rc == 0, out .. err)
    assert.equal("up to date\n", out)
    assert.equal("1", H.psql1(db, "SELECT count(*) FROM notes"))
    assert.equal("1", H.psql1(db, "SELECT count(*) FROM sluice_migrations"))
  end)

  it("sluice check accepts it unchanged", function()
    local out, rc, err = sluice("check")
    assert(rc == 0, out .. err)
    assert.truthy(out:find("3 queries checked, 0 failed", 1, true), out)
  end)

  it("sluice serve answers with the example queries", function()
    local port = H.free_port()
    base = "http://127.0.0.1:" .. port
    log = tmp .. "/serve.log"
    pid = tonumber(H.must(("cd %s && { env %s DATABASE_URL=%s SLUICE_LISTEN=127.0.0.1:%d SLUICE_WORKERS=2 %s serve >%s 2>&1 & echo $!; }")
      :format(H.q(dir), clear, H.q(db), port, H.q(H.bin), H.q(log))))
    local deadline, status = H.now() + 10, nil
    while H.now() < deadline and status ~= 200 do
      status = H.http("GET", base .. "/health/live", nil, nil, 1)
      if status ~= 200 then H.sleep(0.05) end
    end
    assert(status == 200, "not serving:\n" .. (H.readfile(log) or ""))
    local s, raw = H.http("GET", base .. "/notes/1")
    assert.equal(200, s, raw)
    local note = H.decode(raw)
    assert.equal("hello", note.title)
    assert.equal("the first note of demo", note.body)
    s, raw = H.http("POST", base .. "/notes", { title = "second", body = "b" })
    assert.equal(200, s, raw)
    assert.equal("second", H.decode(raw).title)
    s, raw = H.http("GET", base .. "/query/list_notes?limit=10")
    assert.equal(200, s, raw)
    assert.equal(2, H.decode(raw).row_count)
    s, raw = H.http("GET", base .. "/openapi.json")
    assert.equal(200, s, raw)
    assert.is_table(H.decode(raw).paths["/notes/{id}"])
  end)

  it("its busted spec passes against the running service", function()
    assert(base, "the service is not running")
    local out, rc, err = H.sh(("cd %s && SLUICE_URL=%s busted --lua=luajit -o TAP tests/"):format(H.q(dir), H.q(base)))
    assert(rc == 0, out .. err)
    assert.truthy(out:find("1..3", 1, true), out)
    assert.is_nil(out:find("not ok", 1, true), out)
  end)
end)
