-- drain_spec.lua — SIGTERM behind a load balancer: /health/ready answers 503 at once while every
-- request, new connections included, is still served for shutdown_grace; then the listener closes
-- and in-flight requests drain. Measured with client loops that run in processes of their own
-- (httploop.lua): one polling /health/ready every 20 ms, two hitting queries back to back. A
-- second SIGTERM cuts the grace short; SIGINT stops accepting at once.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["d.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "slow" { readonly = true, single = true, sql = [[ SELECT 1 AS one FROM pg_sleep(0.05) ]] }
]==],
}

-- Starts httploop.lua on url for seconds; returns a handle whose :lines() waits for it and
-- returns { t0, t1, status (number) or err (string) } per request.
local function loop(dir, name, url, seconds, pause_ms)
  local out = dir .. "/" .. name .. ".out"
  H.must(("( luajit %s %s %s %d >%s 2>%s.err; echo $? >%s.done ) >/dev/null 2>&1 </dev/null &"):format(
    H.q(H.root .. "/tests/integration/httploop.lua"), H.q(url), tostring(seconds), pause_ms, H.q(out), H.q(out), H.q(out)))
  return {
    lines = function()
      local deadline = H.now() + seconds + 15
      while not H.readfile(out .. ".done") do
        assert(H.now() < deadline, "the client loop " .. name .. " did not finish")
        H.sleep(0.05)
      end
      local res = {}
      for a, b, s in (H.readfile(out) or ""):gmatch("(%S+) (%S+) (%S+)\n") do
        res[#res + 1] = { t0 = tonumber(a), t1 = tonumber(b), status = tonumber(s), err = s:match("^ERR:(.*)") }
      end
      return res
    end,
  }
end

local function wait_exit(gw, timeout)
  local deadline = H.now() + timeout
  while H.now() < deadline do
    local rc = gw:exit_code()
    if rc then return rc, H.now() end
    H.sleep(0.01)
  end
end

describe("shutdown behind a load balancer", function()
  local db, dir

  setup(function()
    db = H.createdb("drain")
    dir = H.tmpdir("sluice-drain")
  end)

  teardown(function()
    H.cleanup()
    if dir then H.sh("rm -rf " .. H.q(dir)) end
    if db then H.dropdb(db) end
  end)

  it("SIGTERM: /health/ready is 503 at once, queries are served through shutdown_grace, none fails", function()
    local grace = 2
    local gw = H.start { dsn = db, scripts = scripts, pool = { pool_size = 4 },
      config = { shutdown_grace = grace, shutdown_timeout = 5 } }
    H.assert_ok(gw:get_json("/query/one"))
    local run_for = 4.5
    local ready = loop(dir, "ready", gw:url("/health/ready"), run_for, 20)
    local fast = loop(dir, "fast", gw:url("/query/one"), run_for, 0)
    local slow = loop(dir, "slow", gw:url("/query/slow"), run_for, 0)
    H.sleep(0.8)
    local t_term = H.now()
    H.must("kill -TERM " .. gw.pid)
    local rc, t_exit = wait_exit(gw, grace + 8)
    assert(rc, "the gateway did not exit; log:\n" .. gw:log():sub(-2000))
    assert.equal(0, rc)

    -- readiness: 200 before, 503 from the first poll after SIGTERM on, until the listener closed
    local r = ready.lines()
    local first_503
    for _, l in ipairs(r) do
      if l.t1 < t_term then
        assert(l.status == 200, ("/health/ready before SIGTERM: %s"):format(l.status or l.err))
      elseif l.t0 > t_term + 0.2 and not l.err then
        assert(l.status == 503, ("/health/ready %.3f s after SIGTERM: %s"):format(l.t0 - t_term, l.status))
      end
      if l.status == 503 and not first_503 then first_503 = l end
    end
    assert(first_503, "/health/ready never answered 503")
    local ready_ms = (first_503.t1 - t_term) * 1000
    assert(ready_ms <= 200, ("/health/ready answered 503 only %.0f ms after SIGTERM"):format(ready_ms))

    -- queries: every answer is a 200; the only failures are transport ones from the moment the
    -- listener closed (a connection refused, or one that reached the listener as it closed)
    local queries = {}
    for _, l in ipairs(fast.lines()) do queries[#queries + 1] = l end
    for _, l in ipairs(slow.lines()) do queries[#queries + 1] = l end
    local t_closed = math.huge
    for _, l in ipairs(queries) do
      if l.err and l.t1 < t_closed then t_closed = l.t1 end
    end
    assert(t_closed < math.huge, "the listener never closed within the loops' run")
    local served, in_grace, refused, at_close = 0, 0, 0, 0
    for _, l in ipairs(queries) do
      if l.status then
        assert(l.status == 200, ("a query %.3f s after SIGTERM got %d"):format(l.t0 - t_term, l.status))
        served = served + 1
        if l.t0 >= t_term then in_grace = in_grace + 1 end
      else
        assert(l.t0 >= t_closed - 0.05, ("a query begun %.3f s before the listener closed failed: %s")
          :format(t_closed - l.t0, l.err))
        if l.err:match("refused") then refused = refused + 1 else at_close = at_close + 1 end
      end
    end
    local closed_after = t_closed - t_term
    assert(closed_after >= grace - 0.1, ("the listener closed %.2f s after SIGTERM (grace %d s)"):format(closed_after, grace))
    assert(in_grace > 50, "only " .. in_grace .. " queries were served during the grace")
    print(("# /health/ready answered 503 %.0f ms after SIGTERM (polled every 20 ms)"):format(ready_ms))
    print(("# %d queries answered 200 after SIGTERM (%d in all), none failed before the listener closed %.2f s after SIGTERM; exit after %.2f s")
      :format(in_grace, served, closed_after, t_exit - t_term))
    print(("# after the close: %d connections refused, %d closed as they reached the closing listener"):format(refused, at_close))
  end)

  it("a second SIGTERM cuts the grace short; SIGINT skips it", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { shutdown_grace = 30, shutdown_timeout = 5 } }
    H.must("kill -TERM " .. gw.pid)
    H.sleep(0.2)
    H.assert_error(503, "unavailable", gw:get_json("/health/ready"))
    H.assert_ok(gw:get_json("/health/live"))
    local s, b, h, raw = gw:get_json("/query/one")
    H.assert_ok(s, b, h, raw)
    assert.equal("close", (h.connection or ""):lower(), "answers during the grace close their connection")
    local t = H.now()
    H.must("kill -TERM " .. gw.pid)
    local rc, t_exit = wait_exit(gw, 5)
    assert.equal(0, rc)
    local second = t_exit - t
    assert(second < 2, ("exited %.2f s after the second SIGTERM"):format(second))
    assert.truthy(gw:log():find("shutdown_grace cut short", 1, true))

    local gw2 = H.start { dsn = db, scripts = scripts, config = { shutdown_grace = 30 } }
    t = H.now()
    H.must("kill -INT " .. gw2.pid)
    rc, t_exit = wait_exit(gw2, 5)
    assert.equal(0, rc)
    assert(t_exit - t < 2, ("exited %.2f s after SIGINT"):format(t_exit - t))
    print(("# second SIGTERM: exit after %.2f s; SIGINT: exit after %.2f s"):format(second, t_exit - t))
  end)
end)
