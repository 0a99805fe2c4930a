-- stream_spec.lua — Accept: text/csv and application/x-ndjson through the real binary: rows
-- streamed in single-row mode (CSV as PostgreSQL's COPY writes it, NDJSON as the JSON rows),
-- results past max_rows, flat memory for a large result read slowly, JSON errors before the
-- first row, a cut-short body after it, and a client that leaves mid-stream.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

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

local function rss_kb(pid)
  return tonumber((H.readfile("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
end

describe("streamed results", function()
  local db, gw

  setup(function()
    db = H.createdb("stream")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1, max_rows = 10 } }
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
