-- restart_spec.lua — PostgreSQL restarts (and stays down a while) under a serving gateway:
-- every answer meanwhile is a prompt JSON error (503/504/500), never a hang or a crash; within
-- seconds of the server being back, every request succeeds again.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local POOL_TIMEOUT = 2
local RECOVERY = 15 -- seconds allowed between the server being back and full service

local scripts = {
  ["restart.lua"] = [==[
sluice.query "get" { readonly = true, single = true, sql = [[ SELECT id, v FROM kv WHERE id = :id ]] }
sluice.query "put" { single = true, sql = [[ INSERT INTO kv (id, v) VALUES (:id, :v) RETURNING id, v ]] }
]==],
}

describe("restart", function()
  local db, gw
  local next_id = 1000

  setup(function()
    db = H.createdb("restart")
    H.psql(db, "CREATE TABLE kv (id int4 PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one');")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 2 },
      pool = { pool_size = 4, pool_timeout = POOL_TIMEOUT } }
  end)

  teardown(function()
    H.cleanup()
    if db then
      -- the server may still be down or starting after a failed test
      H.sh(H.testdb_cmd("up"))
      local deadline = H.now() + 15
      while not pcall(H.psql, H.admin_dsn(), "SELECT 1") and H.now() < deadline do H.sleep(0.2) end
      H.dropdb(db)
    end
  end)

  -- A result (see Gateway:start_parallel) is a success or a prompt JSON error.
  local function check_answer(r, what)
    assert(r.status, what .. ": no HTTP answer (" .. tostring(r.body) .. ")")
    assert(r.time < POOL_TIMEOUT + 3, ("%s: took %.1f s (pool_timeout %d)"):format(what, r.time, POOL_TIMEOUT))
    if r.status == 200 then return end
    assert(r.status == 503 or r.status == 504 or r.status == 500,
      what .. ": unexpected status " .. r.status .. " " .. tostring(r.body))
    assert(type(r.json) == "table" and type(r.json.error) == "table" and type(r.json.error.code) == "string",
      what .. ": not a JSON error: " .. tostring(r.body))
    assert((r.headers["content-type"] or ""):match("^application/json"), what .. ": not application/json")
    if r.status == 503 then
      assert(r.headers["retry-after"], what .. ": 503 without Retry-After")
    end
  end

  -- A mixed batch of reads and writes, run concurrently; returns the results.
  local function batch(n)
    local reqs = {}
    for i = 1, n do
      if i % 2 == 0 then
        next_id = next_id + 1
        reqs[i] = { path = "/query/put", body = { id = next_id, v = "v" .. next_id } }
      else
        reqs[i] = { path = "/query/get?id=1" }
      end
    end
    return gw:parallel(reqs, { timeout = POOL_TIMEOUT + 8 })
  end

  local function tally(results, into)
    into = into or {}
    for _, r in ipairs(results) do
      local k = tostring(r.status)
      into[k] = (into[k] or 0) + 1
    end
    return into
  end

  local function describe_tally(t)
    local parts = {}
    for k, c in pairs(t) do parts[#parts + 1] = k .. " x" .. c end
    table.sort(parts)
    return table.concat(parts, ", ")
  end

  -- After the server is back: polls with batches until one batch is all 200 (RECOVERY s at
  -- most), then requires 40 more concurrent requests and a write to succeed. Returns the time
  -- to the first all-200 batch.
  local function wait_recovered(back_at, what)
    local ok_after
    while H.now() - back_at < RECOVERY do
      local res = batch(10)
      local all_ok = true
      for i, r in ipairs(res) do
        check_answer(r, what .. " after the server is back, request " .. i)
        if r.status ~= 200 then all_ok = false end
      end
      if all_ok then ok_after = H.now() - back_at; break end
      assert.is_true(gw:alive(), "the gateway died: " .. gw:log():sub(-2000))
      H.sleep(0.2)
    end
    assert(ok_after, ("%s: not every request succeeds %d s after the server is back"):format(what, RECOVERY))
    local bad = {}
    for i, r in ipairs(batch(40)) do
      if r.status ~= 200 then bad[#bad + 1] = i .. ": " .. tostring(r.status) .. " " .. r.body end
    end
    assert(#bad == 0, what .. ": after recovery:\n" .. table.concat(bad, "\n"))
    local s, b, h, raw = gw:post_json("/query/put", { id = 999999 - next_id, v = "after" })
    H.assert_ok(s, b, h, raw)
    assert.equal("after", H.psql1(db, ("SELECT v FROM kv WHERE id = %d"):format(999999 - next_id)))
    assert.is_true(gw:alive())
    return ok_after
  end

  it("recovers after PostgreSQL restarts, answering promptly throughout", function()
    for i, r in ipairs(batch(16)) do assert(r.status == 200, "warm-up " .. i .. ": " .. r.body) end

    local outdir = H.tmpdir("sluice-restart")
    H.must(("( %s >%s 2>&1; echo $? >%s ) </dev/null >/dev/null 2>&1 &")
      :format(H.testdb_cmd("restart"), H.q(outdir .. "/out"), H.q(outdir .. "/rc")))
    local seen = {}
    local deadline = H.now() + 40
    local rc
    repeat
      local res = batch(4)
      for i, r in ipairs(res) do check_answer(r, "during the restart, request " .. i) end
      tally(res, seen)
      assert.is_true(gw:alive(), "the gateway died: " .. gw:log():sub(-2000))
      rc = tonumber(H.readfile(outdir .. "/rc") or "")
      H.sleep(0.05)
    until rc or H.now() > deadline
    local out = H.readfile(outdir .. "/out") or ""
    H.sh("rm -rf " .. H.q(outdir))
    assert(rc == 0, "the restart command failed or hung: " .. out)

    local took = wait_recovered(H.now(), "restart")
    print(("# answers during the restart: %s; full service %.1f s after it"):format(describe_tally(seen), took))
  end)

  it("answers a longer outage (server down) with prompt JSON errors, then recovers", function()
    H.must(H.testdb_cmd("down"))
    local up = false
    local ok, err = pcall(function()
      local seen = {}
      local t_end = H.now() + 2.5
      while H.now() < t_end do
        local res = batch(4)
        for i, r in ipairs(res) do
          assert(r.status ~= 200, "request " .. i .. " succeeded while PostgreSQL is down: " .. r.body)
          check_answer(r, "while down, request " .. i)
        end
        tally(res, seen)
        H.sleep(0.1)
      end
      local s = gw:get("/health/live")
      assert.equal(200, s)
      assert.is_true(gw:alive(), "the gateway died: " .. gw:log():sub(-2000))
      H.must(H.testdb_cmd("up"))
      up = true
      local took = wait_recovered(H.now(), "down/up")
      print(("# answers while down: %s; full service %.1f s after up"):format(describe_tally(seen), took))
    end)
    if not up then H.sh(H.testdb_cmd("up")) end
    assert(ok, err)
  end)

  it("exits cleanly on SIGTERM afterwards", function()
    local rc = gw:stop()
    assert(rc == 0, "exit code " .. tostring(rc) .. " after SIGTERM; log tail:\n" .. gw:log():sub(-3000))
  end)
end)
