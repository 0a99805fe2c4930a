-- migrate_spec.lua — `sluice migrate up|status` against a real PostgreSQL.
-- Needs SLUICE_BIN (the built binary) and SLUICE_TEST_DSN (a key=value conninfo of a throwaway
-- server on which databases may be created). Every test gets a fresh database, dropped after it.
-- Run: busted --lua=luajit tests/integration/migrate_spec.lua

local BIN = os.getenv("SLUICE_BIN")
local DSN = os.getenv("SLUICE_TEST_DSN")

local function q(s) -- shell quoting
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

local function random_suffix()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(6)
  f:close()
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local tmp -- this run's scratch folder
local base = "migrate_test_" .. random_suffix()
local seq = 0

-- Runs a shell command; returns exit code, stdout, stderr.
local function run(cmd)
  local out, err = tmp .. "/stdout", tmp .. "/stderr"
  local rc = capture("(" .. cmd .. ") >" .. q(out) .. " 2>" .. q(err) .. "; echo $?")
  return tonumber(rc), slurp(out), slurp(err)
end

-- Runs SQL on db (default: the DSN's own database); returns psql's unaligned output, trimmed.
local function psql(sql, db)
  local dsn = db and (DSN .. " dbname=" .. db) or DSN
  local rc, out, err = run("psql -X -q -A -t -v ON_ERROR_STOP=1 " .. q(dsn) .. " -c " .. q(sql))
  assert(rc == 0, "psql failed: " .. tostring(err))
  return (out:gsub("%s+$", ""))
end

describe("sluice migrate", function()
  local db, dir, conf

  setup(function()
    assert(BIN and BIN ~= "", "set SLUICE_BIN to the sluice binary")
    assert(DSN and DSN ~= "", "set SLUICE_TEST_DSN to a key=value conninfo")
    tmp = capture("mktemp -d /tmp/sluice_migrate_XXXXXX"):gsub("%s+$", "")
  end)

  teardown(function()
    if tmp and tmp:match("^/tmp/sluice_migrate_") then os.execute("rm -rf " .. q(tmp)) end
  end)

  before_each(function()
    seq = seq + 1
    db = base .. "_" .. seq
    psql("CREATE DATABASE " .. db)
    dir = tmp .. "/migrations" .. seq
    os.execute("mkdir -p " .. q(dir))
    conf = tmp .. "/conf" .. seq .. ".lua"
    spit(conf, string.format("return { pools = { primary = { url = %q } }, migrations = %q }\n",
                             DSN .. " dbname=" .. db, dir))
  end)

  after_each(function()
    psql("DROP DATABASE IF EXISTS " .. db .. " WITH (FORCE)")
  end)

  local function file(name, sql) spit(dir .. "/" .. name, sql) end

  local function migrate(cmd, config)
    return run("env -u DATABASE_URL " .. q(BIN) .. " migrate --config " .. q(config or conf) .. " " .. cmd)
  end

  local function sql(s) return psql(s, db) end

  local function exists(rel) return sql("SELECT to_regclass('" .. rel .. "') IS NOT NULL") == "t" end

  local function sha256(name)
    return capture("sha256sum " .. q(dir .. "/" .. name)):match("^(%x+)")
  end

  local TS = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ"

  it("applies the files in version order and is idempotent", function()
    file("0002_add_ask.sql", "ALTER TABLE quotes ADD COLUMN ask numeric;\n")
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text PRIMARY KEY, bid numeric);\n")
    file("0010_seed.sql", [[
-- several statements, one with a dollar-quoted body containing semicolons
CREATE FUNCTION spread(b numeric, a numeric) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
  RETURN a - b;
END;
$$;
INSERT INTO quotes VALUES ('EURUSD', 1.0841, 1.0843);
]])
    -- not migrations: ignored
    file("README.md", "not sql")
    file("001_short.sql", "SELECT broken")
    file("0003-dash.sql", "SELECT broken")
    file("0004_backup.sql.bak", "SELECT broken")
    file("abcd_name.sql", "SELECT broken")

    local rc, out, err = migrate("up")
    assert.are.equal("", err)
    assert.are.equal(0, rc)
    assert.are.equal("applied 0001_quotes.sql\napplied 0002_add_ask.sql\napplied 0010_seed.sql\n", out)
    assert.are.equal("0.0002", sql("SELECT spread(bid, ask) FROM quotes"))
    assert.are.equal(table.concat({
      "1|0001_quotes.sql|" .. sha256("0001_quotes.sql"),
      "2|0002_add_ask.sql|" .. sha256("0002_add_ask.sql"),
      "10|0010_seed.sql|" .. sha256("0010_seed.sql"),
    }, "\n"), sql("SELECT version, name, checksum FROM sluice_migrations ORDER BY version"))

    rc, out, err = migrate("up")
    assert.are.equal(0, rc)
    assert.are.equal("up to date\n", out)
    assert.are.equal("", err)
    assert.are.equal("3", sql("SELECT count(*) FROM sluice_migrations"))
    assert.are.equal("1", sql("SELECT count(*) FROM quotes"))
  end)

  it("reports status: applied with its time, then pending", function()
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text);\n")
    local rc, out = migrate("status")
    assert.are.equal(0, rc)
    assert.are.equal("pending  0001_quotes.sql\n", out)
    assert.is_false(exists("sluice_migrations")) -- status changes nothing

    assert.are.equal(0, (migrate("up")))
    file("0002_ticks.sql", "CREATE TABLE ticks (pair text);\n")
    rc, out = migrate("status")
    assert.are.equal(0, rc)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(2, #lines)
    assert.truthy(lines[1]:match("^applied  0001_quotes%.sql  " .. TS .. "$"), lines[1])
    assert.are.equal("pending  0002_ticks.sql", lines[2])
  end)

  it("rolls back a failing migration and records nothing for it", function()
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text);\n")
    file("0002_bad.sql", "CREATE TABLE ticks (pair text);\nINSERT INTO ticks SELECT pair FROM no_such_table;\n")
    file("0003_later.sql", "CREATE TABLE later (x int);\n")
    local rc, out, err = migrate("up")
    assert.are.equal(1, rc)
    assert.are.equal("applied 0001_quotes.sql\n", out)
    assert.are.equal('migrate: 0002_bad.sql: relation "no_such_table" does not exist (line 2)\n', err)
    assert.is_true(exists("quotes"))
    assert.is_false(exists("ticks"))
    assert.is_false(exists("later"))
    assert.are.equal("1", sql("SELECT string_agg(version::text, ',') FROM sluice_migrations"))

    -- fixed, it goes through
    file("0002_bad.sql", "CREATE TABLE ticks (pair text);\n")
    rc, out = migrate("up")
    assert.are.equal(0, rc)
    assert.are.equal("applied 0002_bad.sql\napplied 0003_later.sql\n", out)
  end)

  it("refuses to run when an applied file was edited", function()
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text);\n")
    assert.are.equal(0, (migrate("up")))
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text, bid numeric);\n")
    file("0002_ticks.sql", "CREATE TABLE ticks (pair text);\n")

    local rc, out, err = migrate("up")
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.are.equal("migrate: 0001_quotes.sql was edited after it was applied (checksum differs); "
                     .. "add a new migration instead\n", err)
    assert.is_false(exists("ticks"))
    assert.are.equal("1", sql("SELECT count(*) FROM sluice_migrations"))

    rc, out = migrate("status")
    assert.are.equal(1, rc)
    local first, second = out:match("^([^\n]*)\n([^\n]*)\n$")
    assert.truthy(first and first:match("^edited   0001_quotes%.sql  " .. TS .. "$"), out)
    assert.are.equal("pending  0002_ticks.sql", second)
  end)

  it("only warns about an applied migration whose file is gone", function()
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text);\n")
    assert.are.equal(0, (migrate("up")))
    os.remove(dir .. "/0001_quotes.sql")
    file("0002_ticks.sql", "CREATE TABLE ticks (pair text);\n")
    local rc, out, err = migrate("up")
    assert.are.equal(0, rc)
    assert.are.equal("applied 0002_ticks.sql\n", out)
    assert.truthy(err:match("^migrate: warning: 0001_quotes%.sql %(version 1%) was applied on " .. TS
                            .. " but its file is missing\n$"), err)
    rc, out = migrate("status")
    assert.are.equal(0, rc)
    assert.truthy(out:match("^missing  0001_quotes%.sql  " .. TS .. "\napplied  0002_ticks%.sql  " .. TS .. "\n$"),
                  out)
  end)

  it("applies each file exactly once when two migrators run at the same time", function()
    file("0001_counter.sql", "CREATE TABLE counter (file text);\nINSERT INTO counter VALUES ('1');\n"
                             .. "SELECT pg_sleep(1);\n")
    file("0002_more.sql", "INSERT INTO counter VALUES ('2');\n")
    file("0003_more.sql", "INSERT INTO counter VALUES ('3');\n")
    local one = "env -u DATABASE_URL " .. q(BIN) .. " migrate --config " .. q(conf) .. " up"
    local o = tmp .. "/concurrent"
    os.execute(string.format("(%s >%s1 2>&1; echo $? >%s1.rc) & (%s >%s2 2>&1; echo $? >%s2.rc) & wait",
                             one, q(o), q(o), one, q(o), q(o)))
    assert.are.equal("0\n", slurp(o .. "1.rc"))
    assert.are.equal("0\n", slurp(o .. "2.rc"))
    local both = slurp(o .. "1") .. slurp(o .. "2")
    for _, name in ipairs({ "0001_counter.sql", "0002_more.sql", "0003_more.sql" }) do
      local _, n = both:gsub("applied " .. name:gsub("%.", "%%."), "")
      assert.are.equal(1, n, both)
    end
    local _, uptodate = both:gsub("up to date", "")
    assert.are.equal(1, uptodate, both)
    assert.are.equal("1,2,3", sql("SELECT string_agg(file, ',' ORDER BY file) FROM counter"))
    assert.are.equal("3", sql("SELECT count(*) FROM sluice_migrations"))
  end)

  it("refuses two files with the same version number", function()
    file("0001_quotes.sql", "CREATE TABLE quotes (pair text);\n")
    file("00001_ticks.sql", "CREATE TABLE ticks (pair text);\n")
    local rc, out, err = migrate("up")
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.are.equal("migrate: 00001_ticks.sql and 0001_quotes.sql have the same version number 1\n", err)
    assert.is_false(exists("sluice_migrations"))
  end)

  it("says so when there is nothing to apply", function()
    local rc, out = migrate("up")
    assert.are.equal(0, rc)
    assert.are.equal("up to date\n", out)
    rc, out = migrate("status")
    assert.are.equal(0, rc)
    assert.are.equal("no migrations in " .. dir .. "\n", out)
  end)

  it("reports a connection failure on one line", function()
    local bad = tmp .. "/bad_conf.lua"
    spit(bad, string.format("return { pools = { primary = { url = %q } }, migrations = %q }\n",
                            "host=127.0.0.1 port=1 user=postgres dbname=nothing connect_timeout=3", dir))
    local rc, out, err = migrate("up", bad)
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.truthy(err:match("^migrate: cannot connect to host=127.0.0.1 port=1 user=postgres dbname=nothing "
      .. "connect_timeout=3: [^\n]+\n$"), err)
  end)

  it("reports a missing migrations folder", function()
    os.execute("rm -rf " .. q(dir))
    local rc, _, err = migrate("status")
    assert.are.equal(1, rc)
    assert.are.equal("migrate: cannot open migrations folder " .. dir .. ": No such file or directory\n", err)
  end)
end)
