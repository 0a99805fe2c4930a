-- bulk_spec.lua — POST /bulk/{name} against a real PostgreSQL: JSON arrays, NDJSON and CSV into
-- COPY; the reply; chunking; insert, upsert, update and delete; bad rows and constraint errors
-- naming the row; atomic and per-chunk commits; exact round trips of awkward values; a large
-- body that loads completely without stalling the event loop; nothing left behind afterwards.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["bulk.lua"] = [==[
sluice.query "ping" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }

sluice.bulk "ticks" { table = "ticks", columns = { "pair", "bid", "ask", "ts" } }
sluice.bulk "ticks3" { table = "ticks", columns = { "pair", "bid", "ask", "ts" }, chunk_rows = 3 }
sluice.bulk "ticks3_loose" { table = "ticks", columns = { "pair", "bid", "ask", "ts" }, chunk_rows = 3,
  atomic = false }

sluice.bulk "items" { table = "items", columns = { "id", "name", "qty" }, chunk_rows = 2 }
sluice.bulk "items_upsert" { table = "items", columns = { "id", "name", "qty" }, mode = "upsert",
  key = { "id" }, chunk_rows = 2 }
sluice.bulk "items_update" { table = "items", columns = { "id", "name", "qty" }, mode = "update",
  key = "id", chunk_rows = 2 }
sluice.bulk "items_delete" { table = "items", columns = { "id" }, mode = "delete", key = { "id" } }
sluice.bulk "items_upsert_loose" { table = "items", columns = { "id", "name", "qty" }, mode = "upsert",
  key = { "id" }, chunk_rows = 2, atomic = false }

sluice.bulk "texts" { table = "texts", columns = { "id", "s" } }
sluice.bulk "prices" { table = "prices", columns = { "id", "px", "at" } }
sluice.bulk "retyped" { table = "retyped", columns = { "id", "v" } }

sluice.bulk "big" { table = "big", columns = { "id", "pair", "bid", "ask", "ts" } }
sluice.bulk "big_loose" { table = "big", columns = { "id", "pair", "bid", "ask", "ts" }, atomic = false }
]==],
}

local JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"

describe("bulk", function()
  local db, gw

  setup(function()
    db = H.createdb("bulk")
    H.psql(db, [[
      CREATE TABLE ticks (id bigserial PRIMARY KEY, pair text NOT NULL, bid numeric, ask numeric,
                          ts timestamptz NOT NULL);
      CREATE TABLE items (id int4 PRIMARY KEY, name text, qty int4 NOT NULL DEFAULT 0);
      CREATE TABLE texts (id int4 PRIMARY KEY, s text);
      CREATE TABLE prices (id int4 PRIMARY KEY, px numeric(8,3), at timestamptz NOT NULL);
      CREATE TABLE retyped (id int4, v numeric);
      CREATE TABLE big (id int4 NOT NULL, pair text NOT NULL, bid float8, ask float8, ts timestamptz);
    ]])
    gw = H.start { dsn = db, scripts = scripts,
      config = { workers = 1, max_body_bytes = 32 * 1024 * 1024 },
      pool = { pool_size = 4, pool_timeout = 10 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  ---------------------------------------------------------------------------------------------
  -- local helpers

  local function post(name, body, ctype, timeout)
    return gw:json("POST", "/bulk/" .. name, body, { ["Content-Type"] = ctype }, timeout)
  end

  local function count(tbl, where)
    return tonumber(H.psql1(db, "SELECT count(*) FROM " .. tbl .. (where and (" WHERE " .. where) or "")))
  end

  local function reset(...)
    H.psql(db, "TRUNCATE " .. table.concat({ ... }, ", ") .. " RESTART IDENTITY")
  end

  -- A JSON array of rows (each a table; H.null for JSON null).
  local function json_body(rows) return H.encode(H.array(rows)) end

  local function ndjson_body(rows)
    local lines = {}
    for i, r in ipairs(rows) do lines[i] = H.encode(r) end
    return table.concat(lines, "\n") .. "\n"
  end

  local function tick(i)
    return { pair = "P" .. i, bid = i + 0.5, ask = i + 0.75, ts = ("2024-01-02T03:04:%02dZ"):format(i % 60) }
  end

  local function ticks(n)
    local t = {}
    for i = 1, n do t[i] = tick(i) end
    return t
  end

  -- The ticks table as "pair|bid|ask|epoch" lines, in load order; then_reset empties it after.
  local function tick_lines(then_reset)
    return H.psql(db, "SELECT pair, bid, ask, extract(epoch FROM ts)::bigint FROM ticks ORDER BY id;" ..
      (then_reset and " TRUNCATE ticks RESTART IDENTITY;" or ""))
  end

  local function expected_tick_lines(n)
    local out = {}
    for i = 1, n do
      local t = tick(i)
      local epoch = 1704164640 + (i % 60) -- 2024-01-02T03:04:00Z
      out[i] = ("%s|%s|%s|%d\n"):format(t.pair, tostring(t.bid), tostring(t.ask), epoch)
    end
    return table.concat(out)
  end

  -- Asserts a successful reply {"rows","chunks","committed_chunks","took_ms"[,"affected"]}.
  local function assert_loaded(want, s, b, h, raw)
    H.assert_ok(s, b, h, raw)
    assert.equal(want.rows, b.rows, raw)
    assert.equal(want.chunks, b.chunks, raw)
    assert.equal(want.chunks, b.committed_chunks, raw)
    assert(type(b.took_ms) == "number" and b.took_ms >= 0, "took_ms: " .. raw)
    if want.affected then assert.equal(want.affected, b.affected, raw) end
    return b
  end

  local function hex(s)
    return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
  end

  -- Connections of the gateway that are not idle (e.g. idle in transaction), and temp staging
  -- tables that still exist.
  local function leftovers()
    local busy, stage = H.psql1(db, [[
      SELECT (SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND application_name = 'sluice' AND state <> 'idle'),
             (SELECT count(*) FROM pg_class WHERE relname = 'sluice_bulk_stage')]]):match("^(%d+)|(%d+)$")
    return tonumber(busy), tonumber(stage)
  end

  -- Waits (3 s at most) until the gateway's connections are idle and no staging table is left.
  local function assert_clean()
    local deadline = H.now() + 3
    local busy, stage = leftovers()
    while (busy > 0 or stage > 0) and H.now() < deadline do
      H.sleep(0.05)
      busy, stage = leftovers()
    end
    if busy > 0 then
      error("gateway connections not idle: " .. H.psql(db,
        "SELECT state, query FROM pg_stat_activity WHERE application_name = 'sluice' AND state <> 'idle'"), 2)
    end
    assert(stage == 0, "a staging table was left behind")
  end

  ---------------------------------------------------------------------------------------------

  describe("insert", function()
    it("a JSON array of N rows: the reply and the rows", function()
      reset("ticks")
      local b = assert_loaded({ rows = 7, chunks = 1 }, post("ticks", json_body(ticks(7)), JSON))
      assert.is_nil(b.affected, "insert replies have no affected count")
      assert.equal(7, count("ticks"))
      assert.equal(expected_tick_lines(7), tick_lines())
    end)

    it("NDJSON", function()
      reset("ticks")
      assert_loaded({ rows = 9, chunks = 1 }, post("ticks", ndjson_body(ticks(9)), NDJSON))
      assert.equal(expected_tick_lines(9), tick_lines())
    end)

    it("NDJSON without a final newline, with blank lines and CRLF", function()
      reset("ticks")
      local lines = {}
      for i, t in ipairs(ticks(4)) do lines[i] = H.encode(t) end
      local body = lines[1] .. "\r\n" .. lines[2] .. "\n\n" .. lines[3] .. "\r\n" .. lines[4]
      assert_loaded({ rows = 4, chunks = 1 }, post("ticks", body, NDJSON))
      assert.equal(expected_tick_lines(4), tick_lines())
    end)

    it("CSV with a header row in any column order, RFC 4180 quoting, CRLF", function()
      reset("ticks")
      local body = table.concat({
        'ts,ask,"pair",bid',
        '2024-01-02T03:04:01Z,1.75,P1,1.5',
        '"2024-01-02T03:04:02Z",2.75,"P2",2.5',
        '2024-01-02T03:04:03Z,3.75,"P3",3.5',
      }, "\r\n") .. "\r\n"
      assert_loaded({ rows = 3, chunks = 1 }, post("ticks", body, CSV))
      assert.equal(expected_tick_lines(3), tick_lines())
    end)

    it("CSV with a charset parameter and no final line break", function()
      reset("ticks")
      local body = "pair,bid,ask,ts\nP1,1.5,1.75,2024-01-02T03:04:01Z\nP2,2.5,2.75,2024-01-02T03:04:02Z"
      assert_loaded({ rows = 2, chunks = 1 }, post("ticks", body, "text/csv; charset=utf-8"))
      assert.equal(expected_tick_lines(2), tick_lines())
    end)

    it("chunk_rows smaller than N: ceil(N / chunk_rows) chunks", function()
      reset("ticks")
      for _, n in ipairs { 1, 3, 4, 9, 10 } do
        local want = math.ceil(n / 3)
        assert_loaded({ rows = n, chunks = want }, post("ticks3", json_body(ticks(n)), JSON))
        assert.equal(expected_tick_lines(n), tick_lines(true))
      end
      assert_loaded({ rows = 10, chunks = 4 }, post("ticks3", ndjson_body(ticks(10)), NDJSON))
      assert.equal(10, count("ticks"))
      assert_loaded({ rows = 10, chunks = 4 }, post("ticks3_loose", json_body(ticks(10)), JSON))
      assert.equal(20, count("ticks"))
    end)

    it("an empty array loads nothing", function()
      reset("ticks")
      local s, b, h, raw = post("ticks", "[]", JSON)
      H.assert_ok(s, b, h, raw)
      assert.equal(0, b.rows, raw)
      assert.equal(b.chunks, b.committed_chunks, raw)
      s, b, h, raw = post("ticks", "  [ ]  ", JSON)
      H.assert_ok(s, b, h, raw)
      assert.equal(0, b.rows, raw)
      s, b, h, raw = post("ticks", "pair,bid,ask,ts\r\n", CSV)
      H.assert_ok(s, b, h, raw)
      assert.equal(0, b.rows, raw)
      s, b, h, raw = post("ticks", "", NDJSON)
      H.assert_ok(s, b, h, raw)
      assert.equal(0, b.rows, raw)
      assert.equal(0, count("ticks"))
    end)
  end)

  describe("modes", function()
    before_each(function()
      H.psql(db, [[TRUNCATE items;
        INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3), (4, 'four', 4)]])
    end)

    local function items()
      return H.psql(db, "SELECT id, coalesce(name, '<null>'), qty FROM items ORDER BY id")
    end

    it("upsert: existing keys get the other columns, new keys are inserted (several chunks)", function()
      local rows = {
        { id = 2, name = "TWO", qty = 20 },
        { id = 5, name = "five", qty = 5 },
        { id = 4, name = H.null, qty = 40 },
        { id = 6, name = "six", qty = 6 },
        { id = 7, name = "seven", qty = 7 },
      }
      assert_loaded({ rows = 5, chunks = 3, affected = 5 }, post("items_upsert", json_body(rows), JSON))
      assert.equal("1|one|1\n2|TWO|20\n3|three|3\n4|<null>|40\n5|five|5\n6|six|6\n7|seven|7\n", items())
      assert_clean()
    end)

    it("upsert from CSV, committed per chunk", function()
      local body = "id,name,qty\n1,uno,10\n8,ocho,8\n3,tres,30\n"
      assert_loaded({ rows = 3, chunks = 2, affected = 3 }, post("items_upsert_loose", body, CSV))
      assert.equal("1|uno|10\n2|two|2\n3|tres|30\n4|four|4\n8|ocho|8\n", items())
      assert_clean()
    end)

    it("update: rows with a matching key change, others are ignored", function()
      local rows = {
        { id = 1, name = "ONE", qty = 100 },
        { id = 99, name = "nobody", qty = 0 },
        { id = 3, name = "THREE", qty = 300 },
      }
      assert_loaded({ rows = 3, chunks = 2, affected = 2 }, post("items_update", ndjson_body(rows), NDJSON))
      assert.equal("1|ONE|100\n2|two|2\n3|THREE|300\n4|four|4\n", items())
      assert_clean()
    end)

    it("delete: rows with a matching key go", function()
      local body = "id\n2\n4\n42\n"
      assert_loaded({ rows = 3, chunks = 1, affected = 2 }, post("items_delete", body, CSV))
      assert.equal("1|one|1\n3|three|3\n", items())
      assert_loaded({ rows = 1, chunks = 1, affected = 1 }, post("items_delete", '[{"id":1}]', JSON))
      assert.equal("3|three|3\n", items())
      assert_clean()
    end)

    it("a bad row in a later chunk of an upsert applies nothing", function()
      local rows = {
        { id = 1, name = "x", qty = 1 }, { id = 9, name = "y", qty = 9 }, { id = 10, name = "z", qty = true },
      }
      local e = H.assert_error(400, "bad_request", post("items_upsert", json_body(rows), JSON))
      assert.equal(3, e.row)
      assert.truthy(e.message:find("row 3", 1, true), e.message)
      assert.truthy(e.message:find("qty", 1, true), e.message)
      assert.equal("1|one|1\n2|two|2\n3|three|3\n4|four|4\n", items())
      assert_clean()
    end)
  end)

  describe("bad rows", function()
    before_each(function() reset("ticks", "items") end)

    it("wrong type, missing column, unknown column: 400 naming the row and the column; nothing applied", function()
      local cases = {
        { patch = function(r) r.bid = true end, col = "bid" },
        { patch = function(r) r.bid = { 1 } end, col = "bid" },
        { patch = function(r) r.ts = nil end, col = "ts", word = "missing" },
        { patch = function(r) r.bidd = 1 end, col = "bidd", word = "unknown" },
      }
      for _, c in ipairs(cases) do
        for _, fmt in ipairs { JSON, NDJSON } do
          local rows = ticks(10)
          c.patch(rows[8]) -- row 8 is in the third chunk of ticks3: chunks 1 and 2 were sent
          local body = fmt == JSON and json_body(rows) or ndjson_body(rows)
          local e = H.assert_error(400, "bad_request", post("ticks3", body, fmt))
          assert.equal(8, e.row, H.encode(e))
          assert.truthy(e.message:find("row 8", 1, true), e.message)
          assert.truthy(e.message:find('"' .. c.col .. '"', 1, true), "the column is not named: " .. e.message)
          if c.word then assert.truthy(e.message:find(c.word, 1, true), e.message) end
          assert.equal(0, e.committed_chunks, H.encode(e))
          assert.equal(0, e.rows_committed, H.encode(e))
          assert.equal("ticks3", e.bulk)
        end
      end
      assert.equal(0, count("ticks"), "atomic: nothing may be applied")
      assert_clean()
    end)

    it("an integer column given a fraction or a string that is no integer", function()
      local rows = { { id = 1, name = "a", qty = 1 }, { id = 2, name = "b", qty = 1.5 } }
      local e = H.assert_error(400, "bad_request", post("items", json_body(rows), JSON))
      assert.equal(2, e.row)
      assert.truthy(e.message:find('"qty"', 1, true), e.message)
      rows = { { id = 1, name = "a", qty = 1 }, { id = 2, name = "b", qty = 2 }, { id = 3, name = "c", qty = "abc" } }
      e = H.assert_error(400, "bad_request", post("items", json_body(rows), JSON))
      assert.equal(3, e.row, H.encode(e))
      assert.equal(0, count("items"))
      assert_clean()
    end)

    it("malformed JSON and rows that are not objects", function()
      local e = H.assert_error(400, "bad_request", post("ticks", '[{"pair":"P1","bid":1,"ask":2,"ts":"2024-01-02T00:00:00Z"},{"pair":', JSON))
      assert.equal(2, e.row)
      e = H.assert_error(400, "bad_request", post("ticks", '[{"pair":"P1","bid":1,"ask":2,"ts":"2024-01-02T00:00:00Z"}, 42]', JSON))
      assert.equal(2, e.row)
      H.assert_error(400, "bad_request", post("ticks", '{"pair":"P1"}', JSON))
      e = H.assert_error(400, "bad_request", post("ticks", '{"pair":"P1","bid":1,"ask":2,"ts":"2024-01-02T00:00:00Z"}\n{oops}\n', NDJSON))
      assert.equal(2, e.row)
      assert.equal(0, count("ticks"))
    end)

    it("CSV: a header without a declared column, with an unknown one, a short row", function()
      local e = H.assert_error(400, "bad_request", post("ticks", "pair,bid,ask\nP1,1,2\n", CSV))
      assert.truthy(e.message:find('"ts"', 1, true), e.message)
      e = H.assert_error(400, "bad_request", post("ticks", "pair,bid,ask,ts,extra\nP1,1,2,2024-01-02T00:00:00Z,9\n", CSV))
      assert.truthy(e.message:find('"extra"', 1, true), e.message)
      e = H.assert_error(400, "bad_request",
        post("ticks", "pair,bid,ask,ts\nP1,1,2,2024-01-02T00:00:00Z\nP2,1,2\n", CSV))
      assert.equal(2, e.row)
      e = H.assert_error(400, "bad_request",
        post("ticks", 'pair,bid,ask,ts\nP1,1,2,2024-01-02T00:00:00Z\n"P2,1,2,2024-01-02T00:00:00Z\n', CSV))
      assert.equal(2, e.row)
      assert.equal(0, count("ticks"))
    end)

    it("a server-side type error (CSV ts 'not a time'): 400 with the row number, nothing applied", function()
      local lines = { "pair,bid,ask,ts" }
      for i = 1, 10 do
        lines[#lines + 1] = ("P%d,%d.5,%d.75,%s"):format(i, i, i, i == 7 and "not a time" or "2024-01-02T03:04:05Z")
      end
      local body = table.concat(lines, "\n") .. "\n"
      for _, name in ipairs { "ticks", "ticks3" } do
        local e = H.assert_error(400, "bad_request", post(name, body, CSV))
        assert.equal(7, e.row, H.encode(e))
        assert.equal("22007", e.sqlstate, H.encode(e))
      end
      assert.equal(0, count("ticks"))
      assert_clean()
    end)

    -- An atomic insert streams in PostgreSQL's binary COPY format; from the first value in
    -- another spelling (here a time without an offset, or in words) the rest goes as text.
    it("times in other spellings mid-body: every row stored as the server reads it; errors name their row", function()
      local function at(i, odd) return odd[i] or ("2024-03-0%dT10:%02d:00.25+02:00"):format(1 + i % 9, i % 60) end
      local function body(n, odd)
        local rows = {}
        for i = 1, n do rows[i] = { id = i, px = ("%d.%03d"):format(i, i % 1000), at = at(i, odd) } end
        return json_body(rows)
      end
      local odd = { [400] = "2024-03-01 10:00:00", [401] = "2024-03-02 10:00 UTC", [900] = "epoch" }
      local _, b = post("prices", body(1000, odd), JSON)
      assert.equal(1000, b.rows, H.encode(b))
      -- the same rows through psql's text COPY, compared value by value
      H.psql(db, "CREATE TABLE prices_text (LIKE prices)")
      local lines = {}
      for i = 1, 1000 do
        lines[i] = ("%d\t%d.%03d\t%s"):format(i, i, i % 1000, at(i, odd))
      end
      local f = os.tmpname()
      H.writefile(f, table.concat(lines, "\n") .. "\n")
      H.psql(db, ("\\copy prices_text FROM '%s'"):format(f))
      os.remove(f)
      assert.equal("0", H.psql1(db, [[SELECT count(*) FROM prices p FULL JOIN prices_text t USING (id)
        WHERE p.px IS DISTINCT FROM t.px OR p.at IS DISTINCT FROM t.at]]))
      H.psql(db, "DROP TABLE prices_text")
      reset("prices")
      -- an error in the binary part, and one after the switch to text
      for _, case in ipairs { { 300, 300 }, { 700, 700 } } do
        local bad = { [400] = "2024-03-01 10:00:00" }
        local rows = H.decode(body(1000, bad))
        rows[case[1]].px = 123456.5 -- over numeric(8,3): the server refuses it
        local e = H.assert_error(400, "bad_request", post("prices", json_body(rows), JSON))
        assert.equal(case[2], e.row, H.encode(e))
        assert.equal("px", e.column, H.encode(e))
        assert.equal("22003", e.sqlstate, H.encode(e))
      end
      assert.equal(0, count("prices"))
      assert_clean()
    end)

    it("a column whose type changes under a running gateway: the next load follows it", function()
      local body = json_body { { id = 1, v = 1.5 }, { id = 258, v = 2.25 } }
      local _, b = post("retyped", body, JSON)
      assert.equal(2, b.rows, H.encode(b))
      -- binary values carry no type: sent as the old int4 they would be stored as raw bytes
      H.psql(db, "ALTER TABLE retyped ALTER COLUMN id TYPE text; ALTER TABLE retyped ALTER COLUMN v TYPE float8")
      _, b = post("retyped", body, JSON)
      assert.equal(2, b.rows, H.encode(b))
      assert.equal("1|1.5\n258|2.25\n1|1.5\n258|2.25\n", H.psql(db, "SELECT id, v FROM retyped ORDER BY ctid"))
      H.psql(db, "ALTER TABLE retyped ALTER COLUMN id TYPE int8 USING id::int8")
      _, b = post("retyped", body, JSON)
      assert.equal(2, b.rows, H.encode(b))
      assert.equal("6", H.psql1(db, "SELECT count(*) FROM retyped WHERE id IN (1, 258)"))
    end)

    it("atomic = false: the chunks before the bad one stay committed and the reply says so", function()
      local rows = ticks(10)
      rows[8].bid = "not a number at all" -- a server-side error inside the third chunk
      local e = H.assert_error(400, "bad_request", post("ticks3_loose", json_body(rows), JSON))
      assert.equal(8, e.row, H.encode(e))
      assert.equal(2, e.committed_chunks, H.encode(e))
      assert.equal(6, e.rows_committed, H.encode(e))
      assert.equal(expected_tick_lines(6), tick_lines(true))

      rows = ticks(10)
      rows[8].extra = 1 -- a client-side error inside the third chunk
      e = H.assert_error(400, "bad_request", post("ticks3_loose", json_body(rows), JSON))
      assert.equal(8, e.row, H.encode(e))
      assert.equal(2, e.committed_chunks, H.encode(e))
      assert.equal(6, e.rows_committed, H.encode(e))
      assert.equal(expected_tick_lines(6), tick_lines())
      assert_clean()
    end)

    it("a unique violation: 409 conflict with sqlstate 23505 and the row; nothing applied", function()
      H.psql(db, "INSERT INTO items VALUES (50, 'existing', 0)")
      -- items has chunk_rows = 2: row 5 is the first row of the third chunk
      local rows = {}
      for i = 1, 6 do rows[i] = { id = i, name = "n" .. i, qty = i } end
      rows[5].id = 50
      local e = H.assert_error(409, "conflict", post("items", json_body(rows), JSON))
      assert.equal("23505", e.sqlstate)
      assert.equal(5, e.row, H.encode(e))
      assert.equal(1, count("items"))
      -- the duplicate inside the body, second row of a chunk
      local body = "id,name,qty\n1,a,1\n2,b,2\n3,c,3\n1,d,4\n"
      e = H.assert_error(409, "conflict", post("items", body, CSV))
      assert.equal("23505", e.sqlstate)
      assert.equal(4, e.row, H.encode(e))
      assert.equal(1, count("items"))
      assert_clean()
    end)

    it("a unique violation deep in a large chunk names the right row", function()
      local parts = {}
      for i = 1, 3000 do parts[i] = ('{"id":%d,"name":"n","qty":1}'):format(i == 2345 and 17 or i) end
      -- texts loads in one chunk of several batches; items in chunks of 2 rows
      local tparts = {}
      for i = 1, 3000 do tparts[i] = ('{"id":%d,"s":"v%d"}'):format(i == 2345 and 17 or i, i) end
      local e = H.assert_error(409, "conflict", post("texts", "[" .. table.concat(tparts, ",") .. "]", JSON))
      assert.equal("23505", e.sqlstate)
      assert.equal(2345, e.row, H.encode(e))
      assert.equal(0, count("texts"))
      e = H.assert_error(409, "conflict", post("items", "[" .. table.concat(parts, ",") .. "]", JSON))
      assert.equal(2345, e.row, H.encode(e))
      assert.equal(0, count("items"))
      assert_clean()
    end)

    it("a bad value deep in a large atomic body loads nothing; per chunk, the chunks before it stay", function()
      reset("big")
      local function body(n, bad_at)
        local parts = {}
        for i = 1, n do
          parts[i] = ('{"id":%d,"pair":"EURUSD","bid":%s,"ask":1.25,"ts":"2024-01-02T03:04:05Z"}')
            :format(i, i == bad_at and '"oops"' or "1.125")
        end
        return "[" .. table.concat(parts, ",") .. "]"
      end
      local b = body(25000, 23456)
      local e = H.assert_error(400, "bad_request", post("big", b, JSON, 60))
      assert.equal(23456, e.row, H.encode(e))
      assert.equal(0, count("big"))
      e = H.assert_error(400, "bad_request", post("big_loose", b, JSON, 60))
      assert.equal(23456, e.row, H.encode(e))
      assert.equal(2, e.committed_chunks, H.encode(e))
      assert.equal(20000, e.rows_committed, H.encode(e))
      assert.equal("20000|" .. (20000 * 20001 / 2), H.psql1(db, "SELECT count(*), sum(id) FROM big; TRUNCATE big"))
      assert_clean()
    end)
  end)

  describe("HTTP", function()
    it("a content type bulk does not take: 415", function()
      H.assert_error(415, "unsupported_media_type", post("ticks", json_body(ticks(1)), "text/plain"))
      H.assert_error(415, "unsupported_media_type", post("ticks", "<a/>", "application/xml"))
      H.assert_error(415, "unsupported_media_type",
        gw:json("POST", "/bulk/ticks", "[]", { ["Content-Type"] = false }))
    end)

    it("GET and other methods: 405", function()
      local s, b, h, raw = gw:get_json("/bulk/ticks")
      H.assert_error(405, "method_not_allowed", s, b, h, raw)
      assert.truthy((h.allow or ""):find("POST", 1, true), "405 without Allow: POST")
      H.assert_error(405, "method_not_allowed", gw:json("PUT", "/bulk/ticks", "[]"))
      H.assert_error(405, "method_not_allowed", gw:json("DELETE", "/bulk/ticks"))
    end)

    it("an unknown bulk endpoint: 404", function()
      H.assert_error(404, "not_found", post("nope", "[]", JSON))
      H.assert_error(404, "not_found", post("ticks/extra", "[]", JSON))
    end)

    it("bulk loads show in the metrics", function()
      local s, raw = gw:get("/metrics")
      assert.equal(200, s)
      assert.truthy(raw:find('bulk_operation_rows_total{[^}]*operation="ticks"'), "no bulk_operation_rows_total for ticks")
      assert.truthy(raw:find('bulk_operation_executions_total{[^}]*operation="ticks3"'),
        "no bulk_operation_executions_total for ticks3")
    end)
  end)

  describe("values", function()
    -- id -> the exact string stored (nil: SQL NULL)
    local values = {
      [1] = "a\tb",
      [2] = "line1\nline2",
      [3] = "back\\slash and \\\\ two",
      [4] = 'quote"d "twice"',
      [5] = "unicode é ✓ 😀 日本",
      [6] = "\\N",
      [7] = "",
      [8] = nil,
      [9] = "crlf\r\nin the middle\r",
      [10] = "comma, here; and 'single'",
      [11] = " leading and trailing spaces ",
      [12] = "NULL",
    }
    local N = 12

    local function stored()
      local out = {}
      for line in H.psql(db, "SELECT id, s IS NULL, coalesce(encode(convert_to(s, 'UTF8'), 'hex'), '') FROM texts ORDER BY id"):gmatch("[^\n]+") do
        local id, isnull, hx = line:match("^(%d+)|([tf])|(%x*)$")
        out[#out + 1] = { tonumber(id), isnull == "t", hx }
      end
      return out
    end

    local function want()
      local out = {}
      for id = 1, N do out[#out + 1] = { id, values[id] == nil, values[id] and hex(values[id]) or "" } end
      return out
    end

    local function csv_field(s)
      if s == nil then return "" end
      if s == "" then return '""' end
      if s:find('[,"\r\n]') or s:match("^%s") or s:match("%s$") then return '"' .. s:gsub('"', '""') .. '"' end
      return s
    end

    before_each(function() reset("texts") end)

    it("round-trip exactly through a JSON array (null is NULL, \"\" the empty string)", function()
      local rows = {}
      for id = 1, N do rows[id] = { id = id, s = values[id] == nil and H.null or values[id] } end
      assert_loaded({ rows = N, chunks = 1 }, post("texts", json_body(rows), JSON))
      assert.same(want(), stored())
    end)

    it("round-trip exactly through NDJSON", function()
      local rows = {}
      for id = 1, N do rows[id] = { id = id, s = values[id] == nil and H.null or values[id] } end
      assert_loaded({ rows = N, chunks = 1 }, post("texts", ndjson_body(rows), NDJSON))
      assert.same(want(), stored())
    end)

    it("round-trip exactly through CSV (empty unquoted field is NULL, \"\" the empty string)", function()
      local lines = { "id,s" }
      for id = 1, N do lines[#lines + 1] = id .. "," .. csv_field(values[id]) end
      assert_loaded({ rows = N, chunks = 1 }, post("texts", table.concat(lines, "\r\n") .. "\r\n", CSV))
      assert.same(want(), stored())
    end)

    it("JSON escapes: \\u sequences and surrogate pairs decode to UTF-8", function()
      local body = [[[{"id":1,"s":"\u00e9\ud83d\ude00\/\b\f"},{"s":"tab\there","id":2}]
]]
      assert_loaded({ rows = 2, chunks = 1 }, post("texts", body, JSON))
      assert.same({ { 1, false, hex("é😀/\b\f") }, { 2, false, hex("tab\there") } }, stored())
    end)
  end)

  describe("a large body", function()
    it("100 000 rows (~8 MB) load completely while the loop keeps answering", function()
      local n = 100000
      local parts = {}
      for i = 1, n do
        parts[i] = ('{"id":%d,"pair":"EURUSD","bid":1.%05d,"ask":1.%05d,"ts":"2024-01-02T03:04:05.%03dZ"}')
          :format(i, i % 100000, (i + 7) % 100000, i % 1000)
      end
      local body = "[" .. table.concat(parts, ",\n") .. "]"
      assert(#body > 8e6, "the body is only " .. #body .. " bytes")

      -- Loads body while GETting a readonly query on the same (single) worker until the load is
      -- over; returns the load's result, the pings made meanwhile and the slowest of them.
      local function load_and_ping()
        reset("big")
        local batch = gw:start_parallel({ { method = "POST", path = "/bulk/big", body = body,
          headers = { ["Content-Type"] = JSON } } }, { timeout = 60 })
        local during, worst = 0, 0
        local deadline = H.now() + 60
        while H.now() < deadline do
          local finished = H.readfile(batch.dir .. "/done") ~= nil
          local t0 = H.now()
          local s, b, h, raw = gw:get_json("/query/ping", nil, 5)
          local took = H.now() - t0
          H.assert_ok(s, b, h, raw)
          assert.same({ one = 1 }, b)
          if finished then break end
          during = during + 1
          if took > worst then worst = took end
          H.sleep(0.01)
        end
        local r = batch:wait()[1]
        assert.equal(200, r.status, "the load failed: " .. tostring(r.body))
        print(("# %d rows in %.2f s; %d GETs meanwhile, the slowest %.0f ms"):format(n, r.time or -1, during,
          worst * 1000))
        return r, during, worst
      end

      -- a busy machine can stall any process once: a slow GET counts if it happens twice
      local r, during, worst = load_and_ping()
      if worst >= 0.3 then r, during, worst = load_and_ping() end
      assert.equal(n, r.json.rows, r.body)
      assert.equal(10, r.json.chunks, r.body)
      assert.equal(10, r.json.committed_chunks, r.body)
      assert(during >= 3, ("only %d GETs ran during the load (%.2f s)"):format(during, r.time or -1))
      assert(worst < 0.3, ("a GET during the load took %.0f ms"):format(worst * 1000))
      assert.equal(("%d|%d|1\n1.0013|2024-01-02 03:04:05.123"):format(n, n * (n + 1) / 2), H.psql1(db, [[
        SELECT count(*), sum(id), count(DISTINCT pair) FROM big;
        SELECT ask, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') FROM big WHERE id = 123]]))
      assert_clean()
    end)

    it("a client that leaves while the load waits on a lock: nothing committed, no open transaction", function()
      reset("big")
      -- hold a lock on big for 2 s so that the COPY waits; the client gives up after 0.5 s
      local locker = H.tmpdir("sluice-bulk-lock")
      -- rc appears whole (written aside, then renamed): the wait below must not read it half-written
      H.must(("( psql -X -q -d %s -c %s >%s 2>&1; echo $? >%s.tmp && mv %s.tmp %s ) >/dev/null 2>&1 </dev/null &"):format(
        H.q(db), H.q("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;"),
        H.q(locker .. "/out"), H.q(locker .. "/rc"), H.q(locker .. "/rc"), H.q(locker .. "/rc")))
      local deadline = H.now() + 5
      while H.psql1(db, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'big' AND l.mode = 'AccessExclusiveLock' AND l.granted") ~= "1" do
        assert(H.now() < deadline, "the lock was not taken")
        H.sleep(0.05)
      end
      local parts = {}
      for i = 1, 1000 do parts[i] = ('{"id":%d,"pair":"X","bid":1,"ask":2,"ts":null}'):format(i) end
      local r = gw:async("POST", "/bulk/big", "[" .. table.concat(parts, ",") .. "]",
        { ["Content-Type"] = JSON }, 0.5).wait()
      assert.is_nil(r.status, "the client should have given up, got " .. tostring(r.status))
      deadline = H.now() + 6
      while not H.readfile(locker .. "/rc") and H.now() < deadline do H.sleep(0.05) end
      local rc = (H.readfile(locker .. "/rc") or ""):gsub("%s", "")
      assert.equal("0", rc, "the lock holder failed: " .. tostring(H.readfile(locker .. "/out")))
      H.sh("rm -rf " .. H.q(locker))
      assert_clean()
      assert.equal(0, count("big"))
      -- the gateway still loads
      assert_loaded({ rows = 1, chunks = 1 },
        post("big", '[{"id":1,"pair":"X","bid":1,"ask":2,"ts":null}]', JSON))
      assert.equal(1, count("big"))
    end)
  end)

  describe("max_body_bytes", function()
    it("a body over the limit: 413", function()
      local gw2 = H.start { dsn = db, scripts = scripts, config = { workers = 1, max_body_bytes = 4096 } }
      local body = json_body(ticks(200))
      assert(#body > 4096)
      local s, b, h, raw = gw2:json("POST", "/bulk/ticks", body, { ["Content-Type"] = JSON })
      H.assert_error(413, "too_large", s, b, h, raw)
      gw2:stop()
    end)
  end)

  it("leaves no staging table and no open transaction behind", function()
    assert_clean()
    assert.equal("0", H.psql1(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND state LIKE 'idle in transaction%'"))
  end)
end)
