-- metrics_spec.lua — GET /metrics against a real gateway: every family of docs/metrics.md with its
-- labels and counts, statuses by error code, slow queries (count, log line, sluice.on_slow_query),
-- bulk counters, /admin/queries quantiles and errors, and `promtool check metrics` when found.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  -- loaded first: these queries are defined before sluice.policy sets slow_query_ms
  ["a_queries.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "add_item" { sql = [[ INSERT INTO items (id, name) VALUES (:id, :name) ]] }
sluice.query "nap" { readonly = true, log_params = true, sql = [[ SELECT pg_sleep(:s::float8) IS NULL AS slept ]] }
sluice.query "nap_quiet" { readonly = true, sql = [[ SELECT pg_sleep(:secret::float8) IS NULL AS slept ]] }
sluice.query "nap_own" { readonly = true, slow_query_ms = 5000, sql = [[ SELECT pg_sleep(:s::float8) IS NULL AS slept ]] }
sluice.bulk "items_bulk" { table = "items", columns = { "id", "name" } }
sluice.endpoint "hello" { route = "GET /hello", handler = function(req) return 200, { hi = true } end }
]==],
  ["z_policy.lua"] = [==[
sluice.policy { slow_query_ms = 150 }
-- defined after the policy: takes its threshold too
sluice.query "nap_late" { readonly = true, sql = [[ SELECT pg_sleep(:s::float8) IS NULL AS slept ]] }
function sluice.on_slow_query(ev)
  sluice.log.warn("hook saw a slow query", { query = ev.query, pool = ev.pool, duration_ms = ev.duration_ms })
end
]==],
}

-- Parses an exposition: samples[canonical series] = value, types[family] = type, helps[family].
-- The canonical series is name{k="v",...} with the labels sorted by name.
local function parse(text)
  local samples, types, helps = {}, {}, {}
  for line in text:gmatch("[^\n]+") do
    local fam, typ = line:match("^# TYPE (%S+) (%S+)$")
    if fam then
      types[fam] = typ
    else
      local hfam = line:match("^# HELP (%S+) .+$")
      if hfam then
        helps[hfam] = true
      else
        local name, lbl, value = line:match("^([%w_:]+)(%b{}) (%S+)$")
        if not name then
          name, value = line:match("^([%w_:]+) (%S+)$")
          lbl = "{}"
        end
        assert(name, "malformed exposition line: " .. line)
        local pairs_ = {}
        for k, v in lbl:gmatch('([%w_]+)="(.-)"[,}]') do pairs_[#pairs_ + 1] = k .. '="' .. v .. '"' end
        table.sort(pairs_)
        samples[name .. "{" .. table.concat(pairs_, ",") .. "}"] = tonumber(value)
      end
    end
  end
  return samples, types, helps
end

-- The canonical series key of name with labels (a table).
local function series(name, labels)
  local parts = {}
  for k, v in pairs(labels or {}) do parts[#parts + 1] = k .. '="' .. v .. '"' end
  table.sort(parts)
  return name .. "{" .. table.concat(parts, ",") .. "}"
end

describe("metrics", function()
  local db, gw

  local function scrape()
    local s, body, h = gw:get("/metrics")
    assert.equal(200, s, body)
    return body, h
  end

  -- The value of one series in a fresh scrape (nil when absent).
  local function value(name, labels)
    local samples = parse(scrape())
    return samples[series(name, labels)]
  end

  setup(function()
    db = H.createdb("metrics")
    H.psql(db, [[ CREATE TABLE items (id int4 PRIMARY KEY, name text NOT NULL); ]])
    gw = H.start { dsn = db, scripts = scripts, pool = { pool_size = 4 }, config = { admin_token = "s3cret" } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("serves text format 0.0.4 with HELP and TYPE for every family of docs/metrics.md", function()
    local body, h = scrape()
    assert.equal("text/plain; version=0.0.4; charset=utf-8", h["content-type"])
    local _, types, helps = parse(body)
    local want = {
      db_pool_size = "gauge", db_pool_usage = "gauge", db_connection_time_seconds = "histogram",
      prepared_stmt_cache_size = "gauge", prepared_stmt_execution_time_seconds = "histogram",
      prepared_stmt_executions_total = "counter", bulk_operation_time_seconds = "histogram",
      bulk_operation_rows_total = "counter", bulk_operation_executions_total = "counter",
      db_query_time_seconds = "histogram", db_query_count = "counter", db_slow_query_count = "counter",
      db_deadlock_count = "counter", db_connection_errors = "counter",
      sluice_http_requests_total = "counter", sluice_pool_connections = "gauge", sluice_pool_waiting = "gauge",
      sluice_workers = "gauge", process_resident_memory_bytes = "gauge", process_open_fds = "gauge",
      sluice_pool_role_changes_total = "counter", sluice_failover_wait_seconds = "histogram",
      sluice_read_your_writes_total = "counter", sluice_http_request_duration_seconds = "histogram",
      sluice_build_info = "gauge", sluice_lua_memory_bytes = "gauge", sluice_pool_breaker_state = "gauge",
      sluice_pool_breaker_transitions_total = "counter",
    }
    for fam, typ in pairs(want) do
      assert.equal(typ, types[fam], "TYPE of " .. fam)
      assert.is_true(helps[fam], "HELP of " .. fam)
    end
    local samples = parse(body)
    assert.equal(4, samples[series("db_pool_size", { pool = "primary" })])
    assert.equal(2, samples[series("sluice_workers")])
    assert.is_true(samples[series("process_resident_memory_bytes")] > 1e6)
    assert.is_true(samples[series("process_open_fds")] > 2)
    assert.equal(0, samples[series("db_deadlock_count", { pool = "primary" })])
    assert.equal(0, samples[series("db_connection_errors", { pool = "primary" })])
    assert.equal(0, samples[series("sluice_pool_waiting", { pool = "primary" })])
    assert.equal(0, samples[series("sluice_pool_role_changes_total", { pool = "primary" })])
    assert.equal(0, samples[series("sluice_failover_wait_seconds_count", { pool = "primary" })])
    for _, o in ipairs { "standby", "waited", "fallback" } do
      assert.equal(0, samples[series("sluice_read_your_writes_total", { pool = "primary", outcome = o })])
    end
    -- every defined query has its series before any call; nothing else does
    assert.equal(0, samples[series("db_query_count", { pool = "primary", query = "one", status = "ok" })])
    assert.equal(0, samples[series("db_slow_query_count", { pool = "primary", query = "nap_late" })])
    assert.equal(0, samples[series("bulk_operation_rows_total", { pool = "primary", operation = "items_bulk" })])
    for key in pairs(samples) do
      local q = key:match('query="([^"]*)"')
      if q then
        assert.truthy(({ one = 1, add_item = 1, nap = 1, nap_quiet = 1, nap_own = 1, nap_late = 1 })[q], key)
      end
    end
  end)

  it("counts requests, executions and connection waits of a named query", function()
    for _ = 1, 3 do H.assert_ok(gw:get_json("/query/one")) end
    local samples = parse(scrape())
    local l = { pool = "primary", query = "one" }
    assert.equal(3, samples[series("db_query_count", { pool = "primary", query = "one", status = "ok" })])
    assert.equal(3, samples[series("db_query_time_seconds_count", l)])
    assert.equal(3, samples[series("db_query_time_seconds_bucket", { pool = "primary", query = "one", le = "+Inf" })])
    assert.is_true(samples[series("db_query_time_seconds_sum", l)] > 0)
    assert.equal(3, samples[series("prepared_stmt_executions_total", l)])
    assert.equal(3, samples[series("prepared_stmt_execution_time_seconds_count", l)])
    assert.is_true(samples[series("db_connection_time_seconds_count", { pool = "primary" })] >= 3)
    assert.is_true(samples[series("prepared_stmt_cache_size", { pool = "primary" })] >= 1)
    assert.is_true(samples[series("sluice_pool_connections", { pool = "primary", state = "open" })] >= 1)
    assert.equal(3, samples[series("sluice_http_requests_total", { endpoint = "query/one", method = "GET", code = "200" })])
    assert.equal(3, samples[series("sluice_http_request_duration_seconds_count", { endpoint = "query/one", method = "GET" })])
    local usage = samples[series("db_pool_usage", { pool = "primary" })]
    assert.is_true(usage >= 0 and usage <= 4)
  end)

  it("counts errors by the code the client got", function()
    H.assert_ok(gw:post_json("/query/add_item", { id = 1, name = "a" }))
    H.assert_error(409, "conflict", gw:post_json("/query/add_item", { id = 1, name = "b" }))
    H.assert_error(400, "bad_request", gw:post_json("/query/add_item", { id = 2 }))
    H.assert_error(405, "method_not_allowed", gw:get_json("/query/add_item?id=3&name=c"))
    local samples = parse(scrape())
    local function count(status)
      return samples[series("db_query_count", { pool = "primary", query = "add_item", status = status })]
    end
    assert.equal(1, count("ok"))
    assert.equal(1, count("conflict"))
    assert.equal(1, count("bad_request"))
    assert.equal(1, count("method_not_allowed"))
    assert.is_nil(count("internal"))
    assert.equal(4, samples[series("db_query_time_seconds_count", { pool = "primary", query = "add_item" })])
    -- only the successful execution is an execution
    assert.equal(1, samples[series("prepared_stmt_executions_total", { pool = "primary", query = "add_item" })])
    local function http(method, code)
      return samples[series("sluice_http_requests_total", { endpoint = "query/add_item", method = method, code = code })]
    end
    assert.equal(1, http("POST", "409"))
    assert.equal(1, http("POST", "400"))
    assert.equal(1, http("GET", "405"))
  end)

  it("labels HTTP requests by endpoint and method, never by a raw path or name", function()
    H.assert_error(404, "not_found", gw:get_json("/nowhere/x7q"))
    H.assert_error(404, "not_found", gw:get_json("/query/no_such_q9"))
    H.assert_error(415, "unsupported_media_type", gw:json("BREW", "/query/nap_quiet", nil, { ["content-type"] = false }))
    H.assert_error(405, "method_not_allowed", gw:json("BREW", "/query/nap_quiet"))
    H.assert_ok(gw:get_json("/hello"))
    H.assert_error(415, "unsupported_media_type", gw:json("POST", "/bulk/items_bulk", "<x/>", { ["content-type"] = "application/xml" }))
    H.assert_ok(gw:get_json("/health/live"))
    local s, csv = gw:get("/query/one", { accept = "text/csv" }) -- a streamed answer counts too
    assert.equal(200, s, csv)
    local text = scrape()
    local samples = parse(text)
    local function http(endpoint, method, code)
      return samples[series("sluice_http_requests_total", { endpoint = endpoint, method = method, code = code })]
    end
    assert.is_true(http("unknown", "GET", "404") >= 2)
    assert.equal(1, http("unknown", "other", "415")) -- refused before routing
    assert.equal(1, http("query/nap_quiet", "other", "405"))
    assert.equal(1, http("handler/hello", "GET", "200"))
    assert.equal(1, http("bulk/items_bulk", "POST", "415"))
    assert.is_true(http("health/live", "GET", "200") >= 1)
    assert.is_true(http("metrics", "GET", "200") >= 1)
    assert.is_true(http("query/one", "GET", "200") >= 4)
    assert.is_nil(text:find("x7q", 1, true))
    assert.is_nil(text:find("no_such_q9", 1, true))
    assert.is_nil(text:find("BREW", 1, true))
    -- a request's time to the first byte, by endpoint and method
    local l = { endpoint = "handler/hello", method = "GET" }
    assert.equal(1, samples[series("sluice_http_request_duration_seconds_count", l)])
    l.le = "+Inf"
    assert.equal(1, samples[series("sluice_http_request_duration_seconds_bucket", l)])
  end)

  it("shows each pool's circuit breaker state, and its opening", function()
    local samples = parse(scrape())
    for state, want in pairs { closed = 1, open = 0, half_open = 0 } do
      assert.equal(want, samples[series("sluice_pool_breaker_state", { pool = "primary", state = state })], state)
    end
    assert.equal(0, samples[series("sluice_pool_breaker_transitions_total", { pool = "primary" })])
    -- a server that answers with a connection-class error (08006) opens a breaker of failures = 1
    H.psql(db, [[CREATE OR REPLACE FUNCTION broken_link() RETURNS int LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'link down' USING ERRCODE = '08006'; END $$;]])
    local gw2 = H.start { dsn = db, scripts = { ["q.lua"] = [[
sluice.policy { breaker = { failures = 1, open_ms = 60000 } }
sluice.query "broken" { sql = "SELECT broken_link() AS x" }]] } }
    local s = gw2:post_json("/query/broken", {})
    assert.is_true(s >= 500, tostring(s))
    local _, text = gw2:get("/metrics")
    samples = parse(text)
    assert.equal(1, samples[series("sluice_pool_breaker_state", { pool = "primary", state = "open" })], text)
    assert.equal(0, samples[series("sluice_pool_breaker_state", { pool = "primary", state = "closed" })])
    assert.equal(1, samples[series("sluice_pool_breaker_transitions_total", { pool = "primary" })])
    gw2:stop()
  end)

  it("has sluice_build_info with the versions", function()
    local version = H.must(H.q(H.bin) .. " --version"):match("^sluice (%S+)")
    local samples = parse(scrape())
    local found
    for key, v in pairs(samples) do
      if key:match("^sluice_build_info{") then
        found = key
        assert.equal(1, v)
      end
    end
    assert.truthy(found, "no sluice_build_info")
    assert.truthy(found:find('version="' .. version .. '"', 1, true), found)
    assert.truthy(found:find('h2o="2.2.5"', 1, true), found)
    assert.truthy(found:match('libpq="1%d%.%d+"'), found)
    assert.truthy(found:find('luajit="LuaJIT 2.1', 1, true), found)
  end)

  it("counts and logs slow queries and calls sluice.on_slow_query", function()
    H.assert_ok(gw:get_json("/query/nap?s=0.3"))
    H.assert_ok(gw:get_json("/query/nap_quiet?secret=0.3"))
    H.assert_ok(gw:get_json("/query/nap_own?s=0.3"))  -- its own threshold is 5 s
    H.assert_ok(gw:get_json("/query/nap_late?s=0.3"))
    H.assert_ok(gw:get_json("/query/nap?s=0"))         -- fast
    local samples = parse(scrape())
    local function slow(q) return samples[series("db_slow_query_count", { pool = "primary", query = q })] end
    assert.equal(1, slow("nap"))
    assert.equal(1, slow("nap_quiet"))
    assert.equal(0, slow("nap_own"))
    assert.equal(1, slow("nap_late"))
    assert.equal(0, slow("one"))
    -- 0.3 s lands in the le="0.5" bucket, not in le="0.25"
    local l = { pool = "primary", query = "nap_late" }
    l.le = "0.25"
    assert.equal(0, samples[series("db_query_time_seconds_bucket", l)])
    l.le = "0.5"
    assert.equal(1, samples[series("db_query_time_seconds_bucket", l)])

    -- the log lines come from the worker after the answer: give them a moment
    local log
    local deadline = H.now() + 5
    repeat
      log = gw:log()
      if select(2, log:gsub("hook saw a slow query", "")) >= 3 then break end
      H.sleep(0.05)
    until H.now() > deadline
    local lines, raw = {}, {}
    for line in log:gmatch("[^\n]+") do
      if line:find('"msg":"slow query"', 1, true) then
        local ev = assert(H.decode(line), line)
        lines[ev.query] = ev
        raw[ev.query] = line
      end
    end
    assert.is_table(lines.nap, log)
    assert.equal("primary", lines.nap.pool)
    assert.equal("warn", lines.nap.level)
    assert.is_true(lines.nap.duration_ms >= 300 and lines.nap.duration_ms < 5000, tostring(lines.nap.duration_ms))
    assert.equal(150, lines.nap.threshold_ms)
    assert.same({ s = "0.3" }, lines.nap.params) -- log_params = true
    assert.is_table(lines.nap_quiet, log)
    assert.same({ "secret" }, lines.nap_quiet.params) -- names only
    assert.is_nil(raw.nap_quiet:find('"secret":', 1, true), raw.nap_quiet) -- the value is not logged
    assert.is_nil(lines.nap_own)
    assert.is_table(lines.nap_late, log)
    -- the hook ran with {query, pool, duration_ms}
    local hooked = {}
    for line in log:gmatch("[^\n]+") do
      if line:find("hook saw a slow query", 1, true) then
        local ev = assert(H.decode(line), line)
        hooked[ev.query] = ev
      end
    end
    assert.is_table(hooked.nap, log)
    assert.equal("primary", hooked.nap.pool)
    assert.is_true(hooked.nap.duration_ms >= 300)
    assert.is_table(hooked.nap_quiet, log)
    assert.is_table(hooked.nap_late, log)
    assert.is_nil(hooked.nap_own)
  end)

  it("counts bulk loads, their rows and their failures", function()
    local rows = H.array { { id = 100, name = "x" }, { id = 101, name = "y" }, { id = 102, name = "z" } }
    local s, b, h, raw = gw:post_json("/bulk/items_bulk", rows)
    H.assert_ok(s, b, h, raw)
    assert.equal(3, b.rows)
    -- the same keys again: a unique violation, nothing committed
    s, b, h, raw = gw:post_json("/bulk/items_bulk", rows)
    assert.equal(409, s, raw)
    local samples = parse(scrape())
    local l = { pool = "primary", operation = "items_bulk" }
    assert.equal(3, samples[series("bulk_operation_rows_total", l)])
    assert.equal(1, samples[series("bulk_operation_executions_total", l)])
    assert.equal(1, samples[series("bulk_operation_time_seconds_count", l)])
    assert.equal(1, samples[series("sluice_bulk_operation_errors_total", l)])
  end)

  it("/admin/queries shows quantiles, slow counts and the newest error", function()
    local s, b, h, raw = gw:get_json("/admin/queries", { Authorization = "Bearer s3cret" })
    H.assert_ok(s, b, h, raw)
    local by = {}
    for _, q in ipairs(b.queries) do by[q.name] = q end
    local nap = by.nap_late
    assert.equal(1, nap.calls)
    assert.equal(0, nap.errors)
    assert.equal(1, nap.slow)
    assert.equal(150, nap.slow_query_ms)
    -- one 0.3 s call: every quantile is its bucket's upper bound, 500 ms
    assert.equal(500, nap.p50_ms)
    assert.equal(500, nap.p99_ms)
    assert.equal(5000, by.nap_own.slow_query_ms)
    local add = by.add_item
    assert.equal(4, add.calls)
    assert.equal(3, add.errors)
    assert.is_string(add.last_error)
    assert.is_true(add.p50_ms > 0 and add.p95_ms >= add.p50_ms and add.p99_ms >= add.p95_ms, raw)
    assert.equal(H.null, by.one.last_error)
    assert.equal(0, by.one.slow)
  end)

  it("keeps the newest error per query for /admin/queries", function()
    H.assert_error(409, "conflict", gw:post_json("/query/add_item", { id = 1, name = "again" }))
    local s, b = gw:get_json("/admin/queries", { Authorization = "Bearer s3cret" })
    assert.equal(200, s)
    for _, q in ipairs(b.queries) do
      if q.name == "add_item" then
        assert.truthy(q.last_error:find("duplicate key", 1, true), q.last_error)
        assert.truthy(q.last_error:find("23505", 1, true), q.last_error)
      end
    end
  end)

  it("keeps counting across a reload of the scripts", function()
    local before = value("db_query_count", { pool = "primary", query = "one", status = "ok" })
    assert.is_true(before >= 3)
    local s, _, _, raw = gw:post_json("/admin/reload", "", { Authorization = "Bearer s3cret" })
    assert.equal(200, s, raw)
    -- every worker swaps to the new generation on its own loop: wait for both to say so
    local deadline = H.now() + 5
    while select(2, gw:log():gsub('"msg":"reloaded', "")) < 1 and H.now() < deadline do H.sleep(0.05) end
    assert.truthy(gw:log():find('"msg":"reloaded', 1, true), "no reload in the log")
    H.sleep(0.2)
    for _ = 1, 4 do H.assert_ok(gw:get_json("/query/one")) end
    assert.equal(before + 4, value("db_query_count", { pool = "primary", query = "one", status = "ok" }))
  end)

  it("lists every family it shows in docs/metrics.md", function()
    local doc = assert(H.readfile(H.root .. "/docs/metrics.md"))
    local _, types = parse(scrape())
    local n = 0
    for fam in pairs(types) do
      n = n + 1
      assert.truthy(doc:find("`" .. fam .. "`", 1, true), fam .. " is not in docs/metrics.md")
    end
    assert.is_true(n >= 30)
  end)

  it("passes promtool check metrics (seed names exempt from its naming lint)", function()
    local promtool = os.getenv("PROMTOOL")
    if not promtool or promtool == "" then
      local out, rc = H.sh("command -v promtool")
      if rc == 0 then promtool = out:gsub("%s+$", "") end
    end
    if not promtool or promtool == "" then
      pending("promtool not found (set PROMTOOL or put it on PATH)")
      return
    end
    local f = os.tmpname()
    H.writefile(f, scrape())
    local out, rc, err = H.sh(H.q(promtool) .. " check metrics < " .. H.q(f))
    os.remove(f)
    local exempt = { db_query_count = true, db_deadlock_count = true, db_connection_errors = true,
      db_slow_query_count = true }
    local problems = {}
    for line in (out .. "\n" .. err):gmatch("[^\n]+") do
      local name = line:match("^(%S+)")
      if not exempt[name] then problems[#problems + 1] = line end
    end
    assert.is_true(rc == 0 or rc == 3, ("promtool exit %s: %s%s"):format(tostring(rc), out, err))
    assert.same({}, problems)
  end)

  describe("with sluice.route sending a query to another pool", function()
    local gw2

    setup(function()
      gw2 = H.start {
        dsn = db,
        scripts = {
          ["r.lua"] = [==[
sluice.query "routed" { readonly = true, sql = [[ SELECT 1 AS x ]] }
sluice.query "stays" { readonly = true, sql = [[ SELECT 2 AS x ]] }
function sluice.route(query, req)
  if query.name == "routed" then return "replica" end
  return "primary"
end
]==],
        },
        config = { pools = { primary = { url = db }, replica = { url = db } } },
      }
    end)

    teardown(function()
      if gw2 then pcall(gw2.stop, gw2) end
    end)

    it("counts each request under the pool that ran it", function()
      for _ = 1, 2 do H.assert_ok(gw2:get_json("/query/routed")) end
      H.assert_ok(gw2:get_json("/query/stays"))
      local s, body = gw2:get("/metrics")
      assert.equal(200, s)
      local samples = parse(body)
      local function count(pool, q)
        return samples[series("db_query_count", { pool = pool, query = q, status = "ok" })]
      end
      assert.equal(2, count("replica", "routed"))
      assert.equal(2, samples[series("prepared_stmt_executions_total", { pool = "replica", query = "routed" })])
      assert.equal(0, count("primary", "routed")) -- its own pool keeps its (empty) series
      assert.equal(1, count("primary", "stays"))
      assert.is_nil(count("replica", "stays")) -- never ran there
    end)
  end)
end)
