-- bulk_scale_spec.lua — POST /bulk/{name} at scale against a real PostgreSQL: a bad value at row
-- 150 000 of a 200 000-row body (atomic: nothing applied; per chunk: the 14 chunks before it
-- stay and the reply says so), CSV with quoted line breaks and header errors, and exact row
-- counts and contents for 50 000-row JSON, NDJSON and CSV bodies. Bodies are built into temp
-- files and sent with curl --data-binary.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["bulk.lua"] = [==[
sluice.bulk "big" { table = "big", columns = { "id", "pair", "bid", "ask", "ts" } }
sluice.bulk "big_loose" { table = "big", columns = { "id", "pair", "bid", "ask", "ts" },
  atomic = false, chunk_rows = 10000 }
sluice.bulk "texts" { table = "texts", columns = { "id", "s" } }
]==],
}

local JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"
local EPOCH = 1704164640 -- 2024-01-02T03:04:00Z

describe("bulk at scale", function()
  local db, gw, tmp

  setup(function()
    db = H.createdb("bulkscale")
    H.psql(db, [[
      CREATE TABLE big (id int4 NOT NULL, pair text NOT NULL, bid float8, ask float8, ts timestamptz);
      CREATE TABLE texts (id int4 PRIMARY KEY, s text);
    ]])
    gw = H.start { dsn = db, scripts = scripts,
      config = { workers = 1, max_body_bytes = 64 * 1024 * 1024 },
      pool = { pool_size = 2, pool_timeout = 10 } }
    tmp = H.tmpdir("sluice-bulkscale")
  end)

  teardown(function()
    H.cleanup()
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
  end)

  ---------------------------------------------------------------------------------------------
  -- local helpers

  local function count(tbl)
    return tonumber(H.psql1(db, "SELECT count(*) FROM " .. tbl))
  end

  -- Writes a body of n rows to a temp file, built piecewise: head, row(i) for i = 1..n joined
  -- by sep, tail. Returns the path and the size in bytes.
  local seq = 0
  local function body_file(n, head, row, sep, tail)
    seq = seq + 1
    local path = ("%s/body%d"):format(tmp, seq)
    local f = assert(io.open(path, "wb"))
    f:write(head)
    local buf, k = {}, 0
    for i = 1, n do
      k = k + 1
      buf[k] = row(i)
      if k == 10000 or i == n then
        f:write(table.concat(buf, sep, 1, k))
        if i < n then f:write(sep) end
        k = 0
      end
    end
    f:write(tail)
    local size = f:seek("end")
    f:close()
    return path, size
  end

  -- Row i of the big table: exact in float8 (quarters) and in time (whole seconds).
  local function ts(i)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", EPOCH + i)
  end
  local function json_row(i, bad_at)
    return ('{"id":%d,"pair":"P%d","bid":%s,"ask":%.2f,"ts":"%s"}')
      :format(i, i % 8, i == bad_at and '"oops"' or ("%.2f"):format(i * 0.25), i * 0.25 + 0.5, ts(i))
  end
  local function csv_row(i)
    return ("%d,P%d,%.2f,%.2f,%s"):format(i, i % 8, i * 0.25, i * 0.25 + 0.5, ts(i))
  end

  local function json_file(n, bad_at)
    return body_file(n, "[", function(i) return json_row(i, bad_at) end, ",\n", "]")
  end
  local function ndjson_file(n)
    return body_file(n, "", json_row, "\n", "\n")
  end
  local function csv_file(n)
    return body_file(n, "id,pair,bid,ask,ts\r\n", csv_row, "\r\n", "\r\n")
  end

  -- POSTs the file at path to /bulk/name with curl; returns status, decoded body, headers
  -- (lower-case names), raw body — the shape H.assert_ok / H.assert_error take.
  local function post_file(name, path, ctype, timeout)
    local out, hdr = path .. ".out", path .. ".hdr"
    local code = H.must(("curl -sS --max-time %d -o %s -D %s -w '%%{http_code}' -H %s -H 'Expect:' --data-binary @%s %s")
      :format(timeout or 60, H.q(out), H.q(hdr), H.q("Content-Type: " .. ctype), H.q(path),
        H.q(gw:url("/bulk/" .. name))))
    local raw = H.readfile(out) or ""
    local headers = {}
    for k, v in (H.readfile(hdr) or ""):gmatch("([%w%-]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
    os.remove(out)
    os.remove(hdr)
    return tonumber(code), (H.decode(raw)), headers, raw
  end

  local function post_string(name, body, ctype)
    seq = seq + 1
    local path = ("%s/s%d"):format(tmp, seq)
    H.writefile(path, body)
    return post_file(name, path, ctype)
  end

  -- Waits (3 s at most) until the gateway's connections are idle and no staging table is left.
  local function assert_clean()
    local q = [[SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                          AND application_name = 'sluice' AND state <> 'idle'),
                       (SELECT count(*) FROM pg_class WHERE relname = 'sluice_bulk_stage')]]
    local deadline = H.now() + 3
    local got = H.psql1(db, q)
    while got ~= "0|0" and H.now() < deadline do
      H.sleep(0.05)
      got = H.psql1(db, q)
    end
    assert.equal("0|0", got, "busy gateway connections | staging tables left")
  end

  -- Asserts that big holds exactly rows 1..n as json_row / csv_row wrote them.
  local function assert_big_rows(n)
    local want = ("%d|%d|%d|%d"):format(n, n, n * (n + 1) / 2, n)
    assert.equal(want, H.psql1(db, ([[
      SELECT count(*), count(DISTINCT id), sum(id),
             count(*) FILTER (WHERE id BETWEEN 1 AND %d AND pair = 'P' || (id %% 8)
                                AND bid = id * 0.25::float8 AND ask = id * 0.25::float8 + 0.5
                                AND ts = to_timestamp(%d + id))
      FROM big]]):format(n, EPOCH)))
  end

  ---------------------------------------------------------------------------------------------

  describe("a bad value at row 150 000 of 200 000", function()
    local path

    setup(function()
      H.psql(db, "TRUNCATE big")
      local size
      path, size = json_file(200000, 150000)
      assert(size > 15e6, "the body is only " .. size .. " bytes")
    end)

    it("atomic: 400 naming row 150000 and the column; 0 rows added", function()
      local e = H.assert_error(400, "bad_request", post_file("big", path, JSON, 120))
      assert.equal(150000, e.row, H.encode(e))
      assert(e.column == "bid" or e.message:find('"bid"', 1, true) or e.message:find("bid", 1, true),
        "the column is not named: " .. H.encode(e))
      assert.equal("big", e.bulk)
      assert.equal(0, e.committed_chunks, H.encode(e))
      assert.equal(0, e.rows_committed, H.encode(e))
      assert.equal(0, count("big"))
      assert_clean()
    end)

    it("atomic = false, chunk_rows = 10000: 140 000 rows committed, the reply says 14 chunks", function()
      local e = H.assert_error(400, "bad_request", post_file("big_loose", path, JSON, 120))
      assert.equal(150000, e.row, H.encode(e))
      assert(e.column == "bid" or e.message:find("bid", 1, true), "the column is not named: " .. H.encode(e))
      assert.equal(14, e.committed_chunks, H.encode(e))
      assert.equal(140000, e.rows_committed, H.encode(e))
      assert_big_rows(140000)
      H.psql(db, "TRUNCATE big")
      assert_clean()
    end)
  end)

  describe("CSV", function()
    before_each(function() H.psql(db, "TRUNCATE big, texts") end)

    it("quoted fields spanning lines (LF and CRLF), quotes and commas inside, 50 000 rows", function()
      -- row i: s = 'a<i>' LF 'b,"<i>"' (CRLF inside the value on even rows); every 1000th is NULL
      local function value(i)
        return "a" .. i .. (i % 2 == 0 and "\r\n" or "\n") .. 'b,"' .. i .. '"'
      end
      local path = body_file(50000, "id,s\n", function(i)
        if i % 1000 == 0 then return i .. "," end
        return i .. ',"' .. value(i):gsub('"', '""') .. '"'
      end, "\n", "\n")
      local s, b, h, raw = post_file("texts", path, CSV)
      H.assert_ok(s, b, h, raw)
      assert.equal(50000, b.rows, raw)
      assert.equal(5, b.chunks, raw)
      assert.equal(5, b.committed_chunks, raw)
      assert.equal("50000|49950|50|1250025000", H.psql1(db, [[
        SELECT count(*),
               count(*) FILTER (WHERE s = 'a' || id || CASE WHEN id % 2 = 0 THEN E'\r\n' ELSE E'\n' END
                                          || 'b,"' || id || '"'),
               count(*) FILTER (WHERE s IS NULL AND id % 1000 = 0),
               sum(id)
        FROM texts]]))
      assert_clean()
    end)

    it("a missing column: 400 naming it; an extra column: 400 naming it; nothing added", function()
      local rows = {}
      for i = 1, 1000 do rows[i] = ("%d,P%d,%.2f,%s"):format(i, i % 8, i * 0.25, ts(i)) end
      local e = H.assert_error(400, "bad_request",
        post_string("big", "id,pair,bid,ts\n" .. table.concat(rows, "\n") .. "\n", CSV))
      assert.truthy(e.message:find('"ask"', 1, true), "the missing column is not named: " .. e.message)
      for i = 1, 1000 do rows[i] = csv_row(i) .. ",x" .. i end
      e = H.assert_error(400, "bad_request",
        post_string("big", "id,pair,bid,ask,ts,extra\n" .. table.concat(rows, "\n") .. "\n", CSV))
      assert.truthy(e.message:find('"extra"', 1, true), "the extra column is not named: " .. e.message)
      -- an extra field in one record only (header right): 400 naming that record
      for i = 1, 1000 do rows[i] = csv_row(i) end
      rows[777] = rows[777] .. ",surplus"
      e = H.assert_error(400, "bad_request",
        post_string("big", "id,pair,bid,ask,ts\n" .. table.concat(rows, "\n") .. "\n", CSV))
      assert.equal(777, e.row, H.encode(e))
      assert.equal(0, count("big"))
      assert_clean()
    end)
  end)

  describe("exact counts, 50 000 rows", function()
    before_each(function() H.psql(db, "TRUNCATE big") end)

    for _, c in ipairs {
      { JSON, json_file }, { NDJSON, ndjson_file }, { CSV, csv_file },
    } do
      local ctype, gen = c[1], c[2]
      it(ctype, function()
        local path = gen(50000)
        local s, b, h, raw = post_file("big", path, ctype)
        H.assert_ok(s, b, h, raw)
        assert.equal(50000, b.rows, raw)
        assert.equal(5, b.chunks, raw)
        assert.equal(5, b.committed_chunks, raw)
        assert_big_rows(50000)
        assert_clean()
      end)
    end
  end)
end)
