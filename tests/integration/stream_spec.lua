-- stream_spec.lua — Accept: text/csv and application/x-ndjson through the real binary: rows
-- streamed in single-row mode (CSV as PostgreSQL's COPY writes it, NDJSON as the JSON rows),
-- results past max_rows, flat memory for a large result read slowly, JSON errors before the
-- first row, a cut-short body after it, a client that leaves mid-stream, and clients that stop
-- reading: cut at the write deadline, their pool connections discarded.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local scripts = {
  ["s.lua"] = [==[
sluice.query "series" { readonly = true, sql = [[ SELECT g, 'r' || g AS label FROM generate_series(1, :n::int) AS g ]] }
sluice.query "texts" { readonly = true, sql = [[
  SELECT * FROM (VALUES (1, 'plain', 'a,b'), (2, '', 'say "hi"'), (3, NULL, E'two\nlines'))
    AS t(id, "x,y", note) ORDER BY id ]] }
sluice.query "typed" { readonly = true, sql = [[
  SELECT 1::int AS i, true AS b, '{"k":[1,2]}'::jsonb AS j, NULL::text AS n, 2.50::numeric AS m ]] }
sluice.query "fails_at" { readonly = true, sql = [[
  SELECT g, 1 / (g - :at::int) AS x FROM generate_series(1, :n::int) AS g ]] }
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
-- generate_series in a select list yields rows as they are read (in FROM it would store them all first)
sluice.query "wide" { readonly = true, sql = [[
  SELECT g, repeat('x', 200) AS pad FROM (SELECT generate_series(1, :n::int) AS g) AS s ]] }
sluice.query "wide_1s" { readonly = true, timeout_ms = 1000, sql = [[
  SELECT g, repeat('x', 200) AS pad FROM (SELECT generate_series(1, :n::int) AS g) AS s ]] }
sluice.query "activity" { readonly = true, sql = [[
  SELECT count(*)::int AS n FROM pg_stat_activity
  WHERE query LIKE '%generate_series(1, $1::int)%' AND state = 'active' AND pid <> pg_backend_pid() ]] }
]==],
}

-- curl: exit code, HTTP status, content type, body, stderr.
local function curl(gw, path, accept, extra)
  local out, rc, err = H.sh(("curl -sS --max-time 60 %s -H %s -w '\\n%%{http_code} %%{content_type}' %s"):format(
    extra or "", H.q("Accept: " .. accept), H.q(gw:url(path))))
  local body, status, ctype = out:match("^(.*)\n(%d+) (.*)$")
  return rc, tonumber(status), ctype, body, err
end

-- A client that asks for path as CSV and then reads nothing: a raw socket with the smallest
-- receive buffer, so the gateway's writes stall after a few KiB.
local function stalled_client(gw, path)
  local c = assert(socket.tcp4())
  assert(c:setoption("recv-buffer-size", 4096))
  c:settimeout(5)
  assert(c:connect("127.0.0.1", gw.port))
  assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nAccept: text/csv\r\n\r\n"))
  return c
end

-- Everything the server sent on c until it closed (error if it stays open past timeout s): the
-- data and whether it ended with the closing chunk of a complete chunked body.
local function drain(c, timeout)
  c:settimeout(timeout)
  local parts = {}
  while true do
    local data, err, partial = c:receive(65536)
    parts[#parts + 1] = data or partial
    if err == "closed" then break end
    assert(err == nil, "the gateway kept the connection open: " .. tostring(err))
  end
  c:close()
  local all = table.concat(parts)
  return all, all:sub(-5) == "0\r\n\r\n"
end

-- Connections of the test database running the wide query.
local function wide_backends(db)
  return tonumber(H.psql1(H.admin_dsn(), ("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
    .. " AND query LIKE '%%repeat(''x'', 200)%%' AND pid <> pg_backend_pid()"):format(H.dsn_dbname(db))))
end

local function rss_kb(pid)
  return tonumber((H.readfile("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
end

describe("streamed results", function()
  local db, gw

  setup(function()
    db = H.createdb("stream")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1, max_rows = 10, http2 = true } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("Accept: text/csv gives a header row and one line per row", function()
    local rc, status, ctype, body = curl(gw, "/query/series?n=3", "text/csv")
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.equal("text/csv; charset=utf-8", ctype)
    assert.equal("g,label\n1,r1\n2,r2\n3,r3\n", body)
  end)

  it("CSV quotes what COPY quotes; NULL is an empty field, the empty string \"\"", function()
    local _, status, _, body = curl(gw, "/query/texts", "text/csv")
    assert.equal(200, status)
    assert.equal('id,"x,y",note\n1,plain,"a,b"\n2,"","say ""hi"""\n3,,"two\nlines"\n', body)
  end)

  it("Accept: application/x-ndjson gives one JSON row per line, typed as in JSON answers", function()
    local rc, status, ctype, body = curl(gw, "/query/typed", "application/x-ndjson")
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.equal("application/x-ndjson", ctype)
    local line = assert(body:match("^([^\n]+)\n$"), body) -- one line
    local row = H.decode(line)
    assert.equal(1, row.i)
    assert.is_true(row.b)
    assert.same({ k = { 1, 2 } }, row.j) -- embedded JSON, not a string
    assert.equal(H.null, row.n)
    assert.truthy(line:find('"m":2.50', 1, true)) -- numeric as written
  end)

  it("the first supported type in Accept wins; JSON otherwise", function()
    local _, _, ctype = curl(gw, "/query/series?n=1", "application/x-ndjson;q=0.9, text/csv")
    assert.equal("application/x-ndjson", ctype)
    local _, status, ctype2, body = curl(gw, "/query/series?n=2", "application/json, text/csv;q=0.1")
    assert.equal(200, status)
    assert.equal("text/csv; charset=utf-8", ctype2) -- JSON is the default, not a choice
    assert.equal("g,label\n1,r1\n2,r2\n", body)
    local _, s3, c3, b3 = curl(gw, "/query/series?n=2", "text/html")
    assert.equal(200, s3)
    assert.truthy(c3:match("^application/json"))
    assert.equal(2, H.decode(b3).row_count)
  end)

  it("a single-row query answers JSON whatever Accept says", function()
    local _, status, ctype, body = curl(gw, "/query/one", "text/csv")
    assert.equal(200, status)
    assert.truthy(ctype:match("^application/json"))
    assert.same({ one = 1 }, H.decode(body))
  end)

  it("zero rows: the CSV header alone; NDJSON an empty body", function()
    local _, status, _, body = curl(gw, "/query/series?n=0", "text/csv")
    assert.equal(200, status)
    assert.equal("g,label\n", body)
    local _, s2, _, b2 = curl(gw, "/query/series?n=0", "application/x-ndjson")
    assert.equal(200, s2)
    assert.equal("", b2)
  end)

  it("a streamed result is not held to max_rows (JSON is)", function()
    H.assert_error(413, "too_large", gw:get_json("/query/series?n=11"))
    local _, status, _, body = curl(gw, "/query/series?n=1000", "application/x-ndjson")
    assert.equal(200, status)
    local n = 0
    for line in body:gmatch("[^\n]+") do
      n = n + 1
      assert.equal(n, H.decode(line).g)
    end
    assert.equal(1000, n)
  end)

  it("bad parameters and errors before the first row are JSON errors", function()
    local _, status, ctype, body = curl(gw, "/query/series?n=abc", "text/csv")
    assert.equal(400, status)
    assert.truthy(ctype:match("^application/json"))
    assert.equal("bad_request", H.decode(body).error.code)
    _, status, _, body = curl(gw, "/query/fails_at?n=5&at=1", "text/csv")
    assert.equal(400, status) -- division by zero on the first row: class 22
    assert.equal("22012", H.decode(body).error.sqlstate)
  end)

  it("an error after rows went out cuts the body short; the gateway serves on", function()
    local rc, status, _, body = curl(gw, "/query/fails_at?n=200000&at=150000", "text/csv")
    assert.equal(200, status)
    assert.is_true(rc ~= 0, "curl saw a complete body")
    assert.is_nil(body:find("\n149999,", 1, true) and body:find("\n150001,", 1, true))
    assert.truthy(gw:log():find("streamed response cut short", 1, true))
    H.assert_ok(gw:get_json("/query/series?n=2"))
  end)

  it("a large result read slowly keeps the gateway's memory flat", function()
    local rss0 = rss_kb(gw.pid)
    local sanitized = H.wrapper or os.getenv("ASAN_OPTIONS")
    -- about 19 MB of CSV at 4 MB/s: the database is paused while the client lags
    local rc, status, _, body = curl(gw, "/query/series?n=1000000", "text/csv", "--limit-rate 4M")
    assert.equal(0, rc)
    assert.equal(200, status)
    local lines = select(2, body:gsub("\n", ""))
    assert.equal(1000001, lines)
    assert.truthy(body:find("\n1000000,r1000000\n", 1, true))
    local grown = rss_kb(gw.pid) - rss0
    assert(sanitized or grown < 16 * 1024, ("RSS grew by %d kB"):format(grown))
  end)

  it("the connection a stream used serves pipelined queries normally afterwards", function()
    -- one connection: the JSON queries after the streams run where the streams ran
    local g1 = H.start { dsn = db, scripts = scripts, config = { workers = 1 },
      pool = { pool_size = 1, max_overflow = 0 } }
    for _, accept in ipairs { "text/csv", "application/x-ndjson" } do
      local _, status = curl(g1, "/query/series?n=3", accept)
      assert.equal(200, status)
      local s, b, h, raw = g1:get_json("/query/series?n=5")
      H.assert_ok(s, b, h, raw)
      assert.equal(5, b.row_count)
      assert.equal(5, #b.rows)
    end
    g1:stop()
  end)

  it("streams over HTTP/2 as well", function()
    local rc, status, _, body = curl(gw, "/query/series?n=100000", "text/csv", "--http2-prior-knowledge")
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.equal(100001, select(2, body:gsub("\n", "")))
  end)

  it("clients that stop reading are cut at client_timeout; their pool connections are discarded", function()
    -- more stalled clients than connections: until the deadline every connection is pinned
    local g = H.start { dsn = db, scripts = scripts, config = { workers = 1, client_timeout = 2 },
      pool = { pool_size = 3, max_overflow = 0, pool_timeout = 1 } }
    local t0 = H.now()
    local clients = {}
    for i = 1, 5 do clients[i] = stalled_client(g, "/query/wide?n=3000000") end
    H.sleep(0.7)
    local s_during = g:get_json("/query/one")
    assert(s_during ~= 200, "a connection was free while the streams stalled")
    -- after the deadline the pool serves again, quickly
    local ok_at, fast
    repeat
      local t = H.now()
      local s = g:get_json("/query/one", nil, 2)
      if s == 200 and H.now() - t < 0.5 then ok_at, fast = H.now() - t0, H.now() - t end
      if not ok_at then H.sleep(0.1) end
    until ok_at or H.now() - t0 > 8
    assert(ok_at, "no quick answer within 8 s of the stall; log:\n" .. g:log())
    assert(ok_at >= 1.5 and ok_at < 4.5, ("served again after %.2f s"):format(ok_at))
    assert(fast < 0.5)
    -- /health shows the connections back (a discarded one is replaced by a new one)
    local health, hdeadline = nil, H.now() + 3
    repeat
      health = select(2, g:get_json("/health")).pools.primary
      if health.in_use ~= 0 or health.open ~= 3 then H.sleep(0.1) end
    until (health.in_use == 0 and health.open == 3) or H.now() > hdeadline
    assert(health.in_use == 0 and health.open == 3 and health.waiting == 0, H.encode(health))
    -- the log says why; each pinned connection was closed, the queries stopped on the server
    local log = g:log()
    local _, cuts = log:gsub("streamed response cut: the client took no data for 2 s %(client_timeout%); its database "
      .. "connection is closed", "")
    assert.equal(3, cuts)
    local deadline, n = H.now() + 5, nil
    repeat
      n = wide_backends(db)
      if n ~= 0 then H.sleep(0.1) end
    until n == 0 or H.now() > deadline
    assert.equal(0, n)
    -- the cut streams end without the closing chunk; the queued ones got 503 at pool_timeout
    local cut, refused = 0, 0
    for _, c in ipairs(clients) do
      local data, complete = drain(c, 5)
      if data:match("^HTTP/1.1 200") then
        assert.is_false(complete)
        cut = cut + 1
      else
        assert.truthy(data:match("^HTTP/1.1 503"), data:sub(1, 200))
        refused = refused + 1
      end
    end
    assert.equal(3, cut)
    assert.equal(2, refused)
    g:stop()
  end)

  it("a stalled stream is cut at the statement timeout when that is shorter than client_timeout", function()
    local g = H.start { dsn = db, scripts = scripts, config = { workers = 1, client_timeout = 10 },
      pool = { pool_size = 1, max_overflow = 0 } }
    local t0 = H.now()
    local c = stalled_client(g, "/query/wide_1s?n=3000000")
    local deadline = H.now() + 8
    while not g:log():find("streamed response cut", 1, true) and H.now() < deadline do H.sleep(0.05) end
    local took = H.now() - t0
    assert.truthy(g:log():find("query wide_1s: streamed response cut: the client took no data for 1 s (the statement "
      .. "timeout); its database connection is closed", 1, true), g:log())
    assert(took < 4, ("cut after %.2f s"):format(took))
    local _, complete = drain(c, 5)
    assert.is_false(complete)
    H.assert_ok(g:get_json("/query/one"))
    g:stop()
  end)

  it("a client that leaves mid-stream stops the query on the server", function()
    local rc = curl(gw, "/query/series?n=50000000", "text/csv", "--limit-rate 200k --max-time 1")
    assert.equal(28, rc) -- curl's own timeout
    local deadline, n = H.now() + 10, nil
    repeat
      local _, b = gw:get_json("/query/activity?")
      n = b and b.rows and b.rows[1] and b.rows[1].n
      if n ~= 0 then H.sleep(0.2) end
    until n == 0 or H.now() > deadline
    assert.equal(0, n)
    H.assert_ok(gw:get_json("/query/series?n=2"))
  end)
end)
