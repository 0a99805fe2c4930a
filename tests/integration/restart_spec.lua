-- restart_spec.lua — PostgreSQL restarts under a serving gateway: during the outage every answer
-- is a prompt JSON error (503/504/500), never a hang or a crash; afterwards queries succeed again.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local POOL_TIMEOUT = 2

local scripts = {
  ["restart.lua"] = [==[
sluice.query "get" { readonly = true, single = true, sql = [[ SELECT id, v FROM kv WHERE id = :id ]] }
sluice.query "put" { single = true, sql = [[ INSERT INTO kv (id, v) VALUES (:id, :v) RETURNING id, v ]] }
]==],
}

describe("restart", function()
  local db, gw

  setup(function()
    db = H.createdb("restart")
    H.psql(db, "CREATE TABLE kv (id int4 PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one');")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 2 },
      pool = { pool_size = 4, pool_timeout = POOL_TIMEOUT } }
  end)

  teardown(function()
    H.cleanup()
    if db then
      -- the database may still be starting up after a failed test
      local deadline = H.now() + 15
      while not pcall(H.psql, H.admin_dsn(), "SELECT 1") and H.now() < deadline do H.sleep(0.2) end
      H.dropdb(db)
    end
  end)

  local function check_answer(r, what)
    if r.status == 200 then return end
    assert(r.status, what .. ": no HTTP answer (" .. tostring(r.body) .. ")")
    assert(r.status == 503 or r.status == 504 or r.status == 500,
      what .. ": unexpected status " .. r.status .. " " .. tostring(r.body))
    assert(type(r.json) == "table" and type(r.json.error) == "table" and type(r.json.error.code) == "string",
      what .. ": not a JSON error: " .. tostring(r.body))
    if r.status == 503 then
      assert(r.headers["retry-after"], what .. ": 503 without Retry-After")
    end
  end

  local function one(path, body)
    local t0 = H.now()
    local s, b, h, raw
    if body then s, b, h, raw = gw:post_json(path, body, nil, POOL_TIMEOUT + 8)
    else s, b, h, raw = gw:get_json(path, nil, POOL_TIMEOUT + 8) end
    return { status = s, json = b, headers = h or {}, body = raw, time = H.now() - t0 }
  end

  it("recovers after PostgreSQL restarts, answering promptly throughout", function()
    -- warm every pooled connection
    local warm = {}
    for i = 1, 16 do warm[i] = { path = "/query/get?id=1" } end
    for _, r in ipairs(gw:parallel(warm)) do assert.equal(200, r.status, r.body) end

    local outdir = H.tmpdir("sluice-restart")
    H.must(("( %s >%s 2>&1; echo $? >%s ) </dev/null >/dev/null 2>&1 &")
      :format(H.testdb_cmd("restart"), H.q(outdir .. "/out"), H.q(outdir .. "/rc")))

    local answers = {}
    local restarted_at, first_ok_after
    local deadline = H.now() + 40
    local n = 0
    while H.now() < deadline do
      n = n + 1
      local r = (n % 2 == 0) and one("/query/put", { id = 1000 + n, v = "v" .. n }) or one("/query/get?id=1")
      answers[#answers + 1] = r
      check_answer(r, "request " .. n)
      assert(r.time < POOL_TIMEOUT + 3, ("request %d took %.1f s (pool_timeout %d)"):format(n, r.time, POOL_TIMEOUT))
      if not restarted_at and H.readfile(outdir .. "/rc") then
        local rc = tonumber(H.readfile(outdir .. "/rc"))
        assert(rc == 0, "restart command failed: " .. (H.readfile(outdir .. "/out") or ""))
        restarted_at = H.now()
      end
      if restarted_at and r.status == 200 and n % 2 == 1 then
        first_ok_after = H.now() - restarted_at
        break
      end
      assert.is_true(gw:alive(), "the gateway died: " .. gw:log():sub(-2000))
      H.sleep(0.1)
    end
    H.sh("rm -rf " .. H.q(outdir))
    local seen = {}
    for _, r in ipairs(answers) do seen[r.status] = (seen[r.status] or 0) + 1 end
    local parts = {}
    for st, c in pairs(seen) do parts[#parts + 1] = st .. " x" .. c end
    table.sort(parts)
    print(("# %d answers around the restart: %s; first success %.1f s after it"):format(#answers,
      table.concat(parts, ", "), first_ok_after or -1))
    assert(restarted_at, "the restart command did not finish")
    assert(first_ok_after and first_ok_after < 15, "no successful query within 15 s of the restart")

    -- every pooled connection is healthy again: readonly queries are retried on connection loss
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = "/query/get?id=1" } end
    local bad = {}
    for i, r in ipairs(gw:parallel(reqs, { timeout = 10 })) do
      if r.status ~= 200 then bad[#bad + 1] = i .. ": " .. tostring(r.status) .. " " .. r.body end
    end
    assert(#bad == 0, "after recovery:\n" .. table.concat(bad, "\n"))
    local s, b, h, raw = gw:post_json("/query/put", { id = 999999, v = "after" })
    H.assert_ok(s, b, h, raw)
    assert.equal("after", H.psql1(db, "SELECT v FROM kv WHERE id = 999999"))
    assert.is_true(gw:alive())
  end)

  it("answers a longer outage (server down) with prompt JSON errors, then recovers", function()
    H.must(H.testdb_cmd("down"))
    local up = false
    local ok, err = pcall(function()
      local t_end = H.now() + 2.5
      local n = 0
      while H.now() < t_end do
        n = n + 1
        local r = (n % 2 == 0) and one("/query/put", { id = 5000 + n, v = "down" }) or one("/query/get?id=1")
        assert(r.status ~= 200, "request " .. n .. " succeeded while PostgreSQL is down: " .. tostring(r.body))
        check_answer(r, "request " .. n .. " while down")
        assert(r.time < POOL_TIMEOUT + 3, ("request %d took %.1f s while down"):format(n, r.time))
      end
      local s = gw:get("/health/live")
      assert.equal(200, s)
      assert.is_true(gw:alive(), "the gateway died: " .. gw:log():sub(-2000))
      H.must(H.testdb_cmd("up"))
      up = true
      local deadline, s2 = H.now() + 15
      repeat
        s2 = one("/query/get?id=1")
        check_answer(s2, "after up")
        if s2.status == 200 then break end
        H.sleep(0.2)
      until H.now() > deadline
      assert(s2.status == 200, "no successful query within 15 s of PostgreSQL coming back")
    end)
    if not up then H.sh(H.testdb_cmd("up")) end
    assert(ok, err)
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = "/query/get?id=1" } end
    for i, r in ipairs(gw:parallel(reqs, { timeout = 10 })) do
      assert(r.status == 200, "after recovery, request " .. i .. ": " .. tostring(r.status) .. " " .. r.body)
    end
  end)

  it("exits cleanly on SIGTERM afterwards", function()
    assert.equal(0, gw:stop())
  end)
end)
