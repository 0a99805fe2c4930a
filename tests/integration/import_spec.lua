-- import_spec.lua — `sluice import` on a fresh database: a workload runs through psql, import
-- reads pg_stat_statements and writes named queries; the file passes `sluice check` and the
-- gateway serves it as is. The test server preloads pg_stat_statements (scripts/testdb.sh).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local schema = [[
CREATE TABLE products (
    id         bigserial PRIMARY KEY,
    sku        text NOT NULL UNIQUE,
    name       text NOT NULL,
    price      numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO products (sku, name, price)
SELECT 'sku-' || n, 'product ' || n, n * 0.5 FROM generate_series(1, 300) AS n;
CREATE SCHEMA shop;
CREATE FUNCTION shop.touch(bigint) RETURNS bigint VOLATILE LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION shop.price_of(bigint) RETURNS numeric STABLE LANGUAGE sql
  AS 'SELECT price FROM products WHERE id = $1';
]]

-- The workload: statements with literals, each run a known number of times.
local function workload()
  local lines = {}
  for i = 1, 40 do lines[#lines + 1] = ("SELECT id, name, price FROM products WHERE sku = 'sku-%d';"):format(i) end
  for i = 1, 15 do
    lines[#lines + 1] = ("SELECT sku, price FROM products WHERE price BETWEEN %d AND %d ORDER BY price LIMIT 10;"):format(i, i + 20)
  end
  for i = 1, 8 do lines[#lines + 1] = ("UPDATE products SET price = price + 1 WHERE id = %d;"):format(i) end
  for i = 1, 4 do
    lines[#lines + 1] = ("INSERT INTO products (sku, name, price) VALUES ('new-%d', 'new %d', 9.99) RETURNING id;"):format(i, i)
  end
  for _ = 1, 3 do lines[#lines + 1] = "SELECT count(*) FROM products a JOIN products b ON a.price < b.price;" end
  lines[#lines + 1] = "SELECT * FROM products WHERE created_at > now() - interval '1 day' AND sku LIKE 'sku-1%';"
  lines[#lines + 1] = "DELETE FROM products WHERE sku = 'new-4';"
  -- SELECTs that are not read-only: a volatile function (built in, or qualified and quoted),
  -- a row lock, SELECT INTO; and ones that are: stable and immutable functions only
  for _ = 1, 2 do lines[#lines + 1] = "SELECT pg_advisory_lock(4242); SELECT pg_advisory_unlock(4242);" end
  lines[#lines + 1] = "SELECT sku FROM products WHERE price > random() * 1000 LIMIT 1;"
  lines[#lines + 1] = [[SELECT "shop"."touch"(id) FROM products WHERE id = 9;]]
  lines[#lines + 1] = "SELECT name FROM products WHERE id = 11 FOR SHARE;"
  lines[#lines + 1] = "SELECT shop.price_of(id), upper(name) FROM products WHERE id = 12;"
  -- left out: utility statements, catalog queries, and one that cannot be a named query
  lines[#lines + 1] = "CREATE INDEX products_name ON products (name);"
  lines[#lines + 1] = "VACUUM ANALYZE products;"
  lines[#lines + 1] = "SET work_mem = '8MB';"
  lines[#lines + 1] = "SELECT relname FROM pg_class WHERE relname = 'products';"
  lines[#lines + 1] = "SELECT 1 + 2 AS three;"
  return table.concat(lines, "\n") .. "\n"
end

-- Runs `sluice <args>` in dir; returns stdout, exit code, stderr.
local function sluice(args, dir)
  return H.sh(("cd %s && %s %s"):format(H.q(dir), H.q(H.bin), args))
end

-- The queries of an imported file: list of { name, sql, readonly, calls, total }.
local function parse(text)
  local list = {}
  for calls, total, name, body in text:gmatch("%-%- (%d+) calls, mean [%d.]+ ms, total ([%d.]+) ms, %d+ rows\nsluice%.query \"([^\"]+)\" {\n(.-)\n}") do
    list[#list + 1] = { name = name, calls = tonumber(calls), total = tonumber(total),
      sql = body:match("sql = %[=*%[(.-)%]=*%]"), readonly = body:find("readonly = true", 1, true) ~= nil }
  end
  return list
end

describe("sluice import", function()
  local db, tmp, cfg, out, sku_query

  setup(function()
    db = H.createdb("import")
    H.psql(db, schema)
    tmp = H.tmpdir("sluice-import")
    cfg = tmp .. "/config.lua"
    H.write_config(cfg, { pools = { primary = { url = db } }, scripts = { tmp .. "/imported.lua" } })
  end)

  teardown(function()
    H.cleanup()
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
  end)

  it("says what to do when the pg_stat_statements extension is missing", function()
    local stdout, rc, err = sluice("import --config " .. H.q(cfg), tmp)
    assert.equal(1, rc)
    assert.equal("", stdout)
    assert.truthy(err:find("CREATE EXTENSION pg_stat_statements", 1, true), err)
    assert.truthy(err:find(H.dsn_dbname(db), 1, true), err)
  end)

  it("refuses a bad --top", function()
    local _, rc, err = sluice("import --config " .. H.q(cfg) .. " --top 0", tmp)
    assert.equal(2, rc)
    assert.truthy(err:find("--top", 1, true), err)
  end)

  it("writes the most expensive statements as named queries", function()
    H.psql(db, "CREATE EXTENSION pg_stat_statements;")
    H.psql(db, workload())
    local stdout, rc, err = sluice("import --config " .. H.q(cfg) .. " --top 20 --output imported.lua", tmp)
    assert(rc == 0, "import failed: " .. stdout .. err)
    assert.truthy(err:find("named queries written to imported.lua", 1, true), err)
    out = assert(H.readfile(tmp .. "/imported.lua"))
    local list = parse(out)
    local by, by_sql = {}, {}
    for i, q in ipairs(list) do
      by[q.name] = q
      by_sql[q.sql] = q
      if i > 1 then assert.is_true(q.total <= list[i - 1].total, "sorted by total time: " .. q.name) end
    end

    local q = by_sql["SELECT id, name, price FROM products WHERE sku = :sku"]
    assert.is_table(q, out)
    assert.equal(40, q.calls)
    assert.truthy(q.name:match("^select_products_by_sku"), q.name)
    assert.is_true(q.readonly)
    sku_query = q.name
    q = by.select_products_by_price
    assert.is_table(q, out)
    assert.equal(15, q.calls)
    assert.equal("SELECT sku, price FROM products WHERE price BETWEEN :price_min AND :price_max ORDER BY price LIMIT :limit", q.sql)
    q = by.update_products_by_id
    assert.is_table(q, out)
    assert.equal("UPDATE products SET price = price + :p1 WHERE id = :id", q.sql)
    assert.is_false(q.readonly)
    q = by.insert_products
    assert.is_table(q, out)
    assert.equal("INSERT INTO products (sku, name, price) VALUES (:sku, :name, :price) RETURNING id", q.sql)
    assert.is_false(q.readonly)
    -- a typed literal (interval '1 day') becomes a cast of a parameter; the name is made unique
    q = by_sql["SELECT * FROM products WHERE created_at > now() - CAST(:p1 AS interval) AND sku LIKE :sku"]
    assert.is_table(q, out)
    assert.truthy(q.name:match("^select_products_by_sku"), q.name)
    assert.are_not.equal(sku_query, q.name)
    assert.is_table(by.delete_products_by_sku, out)
    assert.is_table(by.select_products, out) -- the join: no parameter
    -- readonly only when provably read-only
    for sql, readonly in pairs {
      ["SELECT pg_advisory_lock(:p1)"] = false,
      ["SELECT pg_advisory_unlock(:p1)"] = false,
      ["SELECT sku FROM products WHERE price > random() * :p1 LIMIT :limit"] = false,
      ['SELECT "shop"."touch"(id) FROM products WHERE id = :id'] = false,
      ["SELECT name FROM products WHERE id = :id FOR SHARE"] = false,
      ["SELECT shop.price_of(id), upper(name) FROM products WHERE id = :id"] = true,
    } do
      assert.is_table(by_sql[sql], sql .. "\n" .. out)
      assert.equal(readonly, by_sql[sql].readonly, sql)
    end

    -- utility statements and catalog queries are not there; what cannot prepare is listed apart
    assert.is_nil(out:find("CREATE INDEX", 1, true))
    assert.is_nil(out:find("VACUUM", 1, true))
    assert.is_nil(out:find("work_mem", 1, true))
    assert.is_nil(out:find("pg_class", 1, true))
    assert.is_nil(out:find("FROM pg_stat_statements", 1, true)) -- the import's own query
    local left = out:match("\n%-%- Left out: [^\n]*\n(.*)$")
    assert.truthy(left and left:find("SELECT $1 + $2 AS three", 1, true), out)
  end)

  it("takes only the top N, and writes to stdout without --output", function()
    local all = parse(out)
    local stdout, rc, err = sluice("import --config " .. H.q(cfg) .. " --top 2", tmp)
    assert(rc == 0, err)
    local two = parse(stdout)
    assert.equal(2, #two)
    -- the workload is done: the first two are the same as in the full list (totals may move a little)
    local names = { [all[1].name] = true, [all[2].name] = true, [all[3].name] = true }
    assert.truthy(names[two[1].name], stdout)
    assert.truthy(names[two[2].name], stdout)
  end)

  it("the written file passes sluice check", function()
    local stdout, rc, err = sluice("check --config " .. H.q(cfg), tmp)
    assert(rc == 0, "check failed:\n" .. stdout .. err .. "\n" .. out)
    assert.truthy(stdout:find(" 0 failed", 1, true), stdout)
  end)

  it("the written file is served as is", function()
    local gw = H.start { dsn = db, config = { scripts = { tmp .. "/imported.lua" } } }
    local s, b, h, raw = gw:get_json("/query/" .. sku_query .. "?sku=sku-7")
    H.assert_ok(s, b, h, raw)
    assert.equal(1, b.row_count)
    assert.equal("product 7", b.rows[1].name)
    assert.equal(H.psql1(db, "SELECT id FROM products WHERE sku = 'sku-7'"), tostring(b.rows[1].id))
    s, b, h, raw = gw:post_json("/query/update_products_by_id", { id = 300, p1 = 2 })
    H.assert_ok(s, b, h, raw)
    assert.equal(1, b.row_count)
    assert.equal("152.00", H.psql1(db, "SELECT price FROM products WHERE id = 300"))
    s, b, h, raw = gw:get_json("/query/select_products_by_price?price_min=10&price_max=11&limit=5")
    H.assert_ok(s, b, h, raw)
    assert.equal(3, b.row_count) -- 10.00, 10.50, 11.00
    gw:stop()
  end)

  it("leaves out sluice's own statements: the migration lock, the replication probe, WAL positions", function()
    -- last: it resets the statistics
    H.psql(db, "SELECT pg_stat_statements_reset();")
    H.must("mkdir -p " .. H.q(tmp .. "/own/migrations"))
    H.writefile(tmp .. "/own/migrations/0001_t.sql", "CREATE TABLE own_t (id int PRIMARY KEY);\n")
    local own = tmp .. "/own/config.lua"
    H.write_config(own, { pools = { primary = { url = db } }, migrations = tmp .. "/own/migrations", scripts = {} })
    local _, rc, err = sluice("migrate --config " .. H.q(own), tmp)
    assert(rc == 0, err)
    local gw = H.start { dsn = db, scripts = { ["w.lua"] = [==[
      sluice.query "put" { sql = [[ INSERT INTO own_t (id) VALUES (:id) ON CONFLICT DO NOTHING ]] } ]==] } }
    H.assert_ok(gw:post_json("/query/put", { id = 1 }))
    H.assert_ok(gw:get_json("/health"))
    gw:stop()
    -- they are in pg_stat_statements, marked
    local marked = tonumber(H.psql1(db, "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%sluice:internal%'"))
    assert.truthy(marked >= 3, "marked statements: " .. marked)
    local stdout, rc2, err2 = sluice("import --config " .. H.q(cfg) .. " --top 50", tmp)
    assert(rc2 == 0, err2)
    assert.is_nil(stdout:find("sluice:internal", 1, true), stdout)
    assert.is_nil(stdout:find("pg_advisory", 1, true), stdout)
    assert.is_nil(stdout:find("pg_current_wal_insert_lsn", 1, true), stdout)
    assert.is_nil(stdout:find("pg_is_in_recovery", 1, true), stdout)
    -- the service's own write is there
    assert.truthy(stdout:find("INSERT INTO own_t (id) VALUES (:id) ON CONFLICT DO NOTHING", 1, true), stdout)
  end)
end)

-- Runs the file's text with nothing in reach but a sluice.query stub (no os, io, require):
-- returns its definitions as { name, sql, readonly }; errors when it does anything else.
local function load_sandboxed(text)
  local list = {}
  local env = { sluice = { query = function(name)
    return function(def) list[#list + 1] = { name = name, sql = def.sql, readonly = def.readonly == true } end
  end } }
  local fn = assert(loadstring(text, "=imported"))
  setfenv(fn, env)
  fn()
  return list
end

-- Identifiers reach the file through pg_stat_statements and PostgreSQL's error messages, which
-- copy them unchanged. A role with nothing but CONNECT and TEMP plants one that holds Lua code
-- after a line break; what import writes must keep every text inside its string or comment.
describe("sluice import of hostile statement texts", function()
  local db, tmp, cfg, role
  local evil = 'x\nos.execute([=[touch pwned]=])\n--'
  local odd = 'odd]=]name'

  -- Imports into tmp/imported.lua, runs `sluice check` on it (which loads it with every
  -- library open): n queries prepare and the planted code did not run. Returns the file's
  -- text and its definitions, read again with nothing in reach.
  local function import(n)
    local stdout, rc, err = sluice("import --config " .. H.q(cfg) .. " --output imported.lua", tmp)
    assert(rc == 0, "import failed: " .. stdout .. err)
    local out = assert(H.readfile(tmp .. "/imported.lua"))
    stdout, rc, err = sluice("check --config " .. H.q(cfg), tmp)
    assert.is_nil(H.readfile(tmp .. "/pwned"), "the planted os.execute ran:\n" .. out)
    assert(rc == 0, "check failed:\n" .. stdout .. err .. "\n" .. out)
    assert.truthy(stdout:find(n .. " queries checked, 0 failed", 1, true), stdout)
    local ok, list = pcall(load_sandboxed, out)
    assert(ok, tostring(list) .. "\n" .. out)
    assert.equal(n, #list, out)
    return out, list
  end

  setup(function()
    db = H.createdb("import_hostile")
    tmp = H.tmpdir("sluice-import-hostile")
    cfg = tmp .. "/config.lua"
    role = ("sluice_tempuser_%d"):format(H.pid)
    H.write_config(cfg, { pools = { primary = { url = db } }, scripts = { tmp .. "/imported.lua" } })
    H.psql(db, ("CREATE EXTENSION pg_stat_statements; CREATE ROLE %s;"):format(role))
  end)

  teardown(function()
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
    if role then H.psql(H.admin_dsn(), "DROP ROLE IF EXISTS " .. role .. ";") end
  end)

  it("keeps an identifier with a line break and Lua code on one comment line", function()
    -- as the unprivileged role: a temp table named evil, and a SELECT from it, which does
    -- not prepare in import's session: "relation ... does not exist" quotes evil
    H.psql(db, ('SET ROLE %s; CREATE TEMP TABLE "%s" (a int); SELECT a FROM "%s";'):format(role, evil, evil))
    local out = import(0)
    local line = out:match("\n(%-%-   relation [^\n]*)\n")
    assert.truthy(line, out)
    assert.truthy(line:find('relation "x\\nos.execute([=[touch pwned]=])\\n--" does not exist', 1, true), line)
    assert.is_nil(out:find("\nos.execute", 1, true), out)
  end)

  it("writes SQL holding ]] and ]=] or ending in ] so that it loads as it was", function()
    H.psql(db, ([==[
CREATE TABLE "%s" (id int PRIMARY KEY, tags text[], ids int[]);
SELECT tags[ids[1]] FROM "%s" WHERE id = 1;
SELECT id FROM "%s" WHERE tags[1] = tags[2];
SELECT id,
       tags
  FROM "%s"
 WHERE id = 1;
]==]):format(odd, odd, odd, odd))
    local out, list = import(3)
    local by_sql = {}
    for _, q in ipairs(list) do by_sql[q.sql] = q end
    local q = ('"%s"'):format(odd)
    assert.is_table(by_sql["SELECT tags[ids[:p1]] FROM " .. q .. " WHERE id = :id"], out)
    assert.is_table(by_sql["SELECT id FROM " .. q .. " WHERE tags[:p1] = tags[:p2]"], out)
    assert.is_table(by_sql["SELECT id,\n       tags\n  FROM " .. q .. "\n WHERE id = :id"], out)
  end)
end)
