-- check_spec.lua — `sluice check` against a real PostgreSQL: every named query is prepared and
-- reported (ok lines, exit 0); a query on an unknown table, column or type is named with
-- PostgreSQL's message (exit 1); a script error gives its file:line (exit 1); an unreachable
-- database exits 1. Checking runs nothing: a DELETE query deletes no row.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

-- Variables that would override the config file (docs/configuration.md).
local override_env = { "DATABASE_URL", "SLUICE_LISTEN", "SLUICE_WORKERS", "SLUICE_ADMIN_TOKEN",
  "SLUICE_POOL_SIZE", "SLUICE_MAX_OVERFLOW", "SLUICE_POOL_TIMEOUT", "SLUICE_POOL_RECYCLE", "SLUICE_ECHO",
  "SLUICE_PREPARED_STATEMENT_CACHE_SIZE" }

local good = [==[
sluice.query "item" { readonly = true, single = true, sql = [[ SELECT id, name FROM items WHERE id = :id ]] }
sluice.query "add_item" { sql = [[ INSERT INTO items (id, name) VALUES (:id, :name) RETURNING id ]] }
sluice.query "wipe" { sql = [[ DELETE FROM items WHERE id > :min ]] }
sluice.query "typed" { readonly = true, sql = [[ SELECT CAST(:ts AS timestamptz) AS ts, :n::numeric + 1 AS n ]] }
]==]

-- Writes a config with the given scripts (name -> source) and pools (name -> url); returns its path.
local function make_config(scripts, pools)
  local dir = H.tmpdir("sluice-check")
  H.must("mkdir -p " .. H.q(dir .. "/scripts"))
  for name, src in pairs(scripts) do H.writefile(dir .. "/scripts/" .. name, src) end
  local p = {}
  for name, url in pairs(pools) do p[name] = { url = url } end
  local path = dir .. "/config.lua"
  H.write_config(path, { listen = "127.0.0.1:1", pools = p, scripts = { dir .. "/scripts/*.lua" } })
  return path, dir
end

-- Runs `sluice check --config path` (bounded to 30 s); returns stdout, exit code, stderr.
local function check(path)
  local envs = {}
  for _, k in ipairs(override_env) do envs[#envs + 1] = "-u " .. k end
  return H.sh(("timeout -k 5 30 env %s %s check --config %s"):format(table.concat(envs, " "), H.q(H.bin), H.q(path)))
end

local function oks(out)
  local names = {}
  for name in out:gmatch("ok%s+([%w_%.%-]+)\n") do names[#names + 1] = name end
  table.sort(names)
  return names
end

describe("sluice check", function()
  local db, dirs = nil, {}

  setup(function()
    db = H.createdb("check")
    H.psql(db, [[
      CREATE TABLE items (id int4 PRIMARY KEY, name text NOT NULL);
      INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');
    ]])
  end)

  teardown(function()
    for _, d in ipairs(dirs) do H.sh("rm -rf " .. H.q(d)) end
    if db then H.dropdb(db) end
  end)

  local function config(scripts, pools)
    local path, dir = make_config(scripts, pools or { primary = db })
    dirs[#dirs + 1] = dir
    return path
  end

  it("exits 0 and prints an ok line for every good query; nothing is executed", function()
    local out, rc, err = check(config { ["good.lua"] = good })
    assert.equal(0, rc, out .. err)
    assert.same({ "add_item", "item", "typed", "wipe" }, oks(out))
    assert.truthy(out:find("4 queries checked, 0 failed", 1, true), out)
    assert.equal("3", H.psql1(db, "SELECT count(*) FROM items"))
  end)

  it("checks the queries of every pool against that pool's database", function()
    local other = H.createdb("check_other")
    local ok, e = pcall(function()
      H.psql(other, "CREATE TABLE other_only (x int4);")
      local out, rc, err = check(config({
        ["good.lua"] = good,
        ["other.lua"] = [==[
sluice.query "other_x" { readonly = true, pool = "other", sql = [[ SELECT x FROM other_only ]] }
sluice.query "other_items" { readonly = true, pool = "other", sql = [[ SELECT id FROM items ]] }
]==],
      }, { primary = db, other = other }))
      assert.equal(1, rc, out .. err)
      local all = out .. err
      assert.same({ "add_item", "item", "other_x", "typed", "wipe" }, oks(out))
      assert.truthy(all:find("other_items", 1, true), all)
      assert.truthy(all:find('relation "items" does not exist', 1, true), all)
    end)
    H.dropdb(other)
    assert(ok, e)
  end)

  it("exits 1 naming each broken query with PostgreSQL's message", function()
    local out, rc, err = check(config {
      ["good.lua"] = good,
      ["broken.lua"] = [==[
sluice.query "bad_table" { readonly = true, sql = [[ SELECT * FROM no_such_table WHERE id = :id ]] }
sluice.query "bad_column" { readonly = true, sql = [[ SELECT nope FROM items ]] }
sluice.query "bad_type" { readonly = true, sql = [[ SELECT CAST(:v AS no_such_type) AS v ]] }
sluice.query "bad_syntax" { sql = [[ SELEKT 1 ]] }
]==],
    })
    assert.equal(1, rc, out .. err)
    local all = out .. err
    -- the good ones are still reported ok, the broken ones are not
    assert.same({ "add_item", "item", "typed", "wipe" }, oks(out))
    local function line_of(name)
      for line in all:gmatch("[^\n]+") do
        if line:find(name, 1, true) then return line end
      end
    end
    local expect = {
      bad_table = 'relation "no_such_table" does not exist',
      bad_column = 'column "nope" does not exist',
      bad_type = 'type "no_such_type" does not exist',
      bad_syntax = 'syntax error at or near "SELEKT"',
    }
    for name, msg in pairs(expect) do
      local line = line_of(name)
      assert.truthy(line, name .. " is not named in:\n" .. all)
      assert.truthy(line:find(msg, 1, true), ("%s: expected %q in %q"):format(name, msg, line))
    end
    assert.truthy(all:find("8 queries checked, 4 failed", 1, true), all)
  end)

  it("exits 1 with the file and line of a Lua syntax error", function()
    local out, rc, err = check(config {
      ["good.lua"] = good,
      ["syntax.lua"] = [==[
sluice.query "fine" { readonly = true, sql = [[ SELECT 1 AS one ]] }

sluice.query "broken" {
  readonly = true
  sql = [[ SELECT 2 ]]
}
]==],
    })
    assert.equal(1, rc, out .. err)
    local all = out .. err
    assert.truthy(all:find("syntax.lua:5:", 1, true), all)
    assert.same({}, oks(out))
  end)

  it("exits 1 naming the key of a bad definition", function()
    local out, rc, err = check(config {
      ["defs.lua"] = [==[
sluice.query "typo" { readonly = true, sequel = [[ SELECT 1 ]] }
]==],
    })
    assert.equal(1, rc, out .. err)
    local all = out .. err
    assert.truthy(all:find("defs.lua:1:", 1, true), all)
    assert.truthy(all:find("sequel", 1, true), all)
  end)

  it("exits 1 when the database is unreachable", function()
    local port = H.free_port() -- nothing listens there
    local url = ("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5"):format(port)
    local t0 = H.now()
    local out, rc, err = check(config({ ["good.lua"] = good }, { primary = url }))
    assert.equal(1, rc, out .. err)
    assert.truthy(H.now() - t0 < 15, "check gave up in time")
    local all = out .. err
    assert.truthy(all:find("primary", 1, true), all)
    assert.truthy(all:lower():find("connect", 1, true), all)
    assert.same({}, oks(out))
  end)

  it("says what happened when the database is unreachable, with the URL's password hidden", function()
    local port = H.free_port()
    local url = ("postgresql://bob:hunter2@127.0.0.1:%d/app?connect_timeout=5"):format(port)
    local out, rc, err = check(config({ ["good.lua"] = good }, { primary = url }))
    assert.equal(1, rc, out .. err)
    assert.is_nil((out .. err):find("queries checked", 1, true), out .. err) -- no "0 of 4 checked, 1 failed"
    assert.is_nil((out .. err):find("hunter2", 1, true), out .. err)
    assert.matches(("check: cannot connect to postgresql://bob:[^@]*@127.0.0.1:%d/app[^\n]* %%(pool primary%%): [^\n]*refused"):format(port), err)
    assert.matches("nothing checked: the database of pool primary cannot be reached", out, 1, true)
  end)

  it("a script pattern that matches nothing says which directory it looked in", function()
    local tmp = H.tmpdir("sluice-check-cwd")
    dirs[#dirs + 1] = tmp
    H.write_config(tmp .. "/config.lua", { pools = { primary = { url = db } }, scripts = { "lua/endpoints/*.lua" } })
    local envs = {}
    for _, k in ipairs(override_env) do envs[#envs + 1] = "-u " .. k end
    local out, rc, err = H.sh(("cd %s && env %s %s check --config config.lua"):format(H.q(tmp), table.concat(envs, " "), H.q(H.bin)))
    assert.equal(0, rc, out .. err)
    assert.matches('scripts: \\"lua/endpoints/*.lua\\" matches no file (looked in ' .. tmp .. ")", err, 1, true)
    -- a file that is missing says it too, and stops
    H.write_config(tmp .. "/config.lua", { pools = { primary = { url = db } }, scripts = { "lua/policy.lua" } })
    out, rc, err = H.sh(("cd %s && env %s %s check --config config.lua"):format(H.q(tmp), table.concat(envs, " "), H.q(H.bin)))
    assert.equal(1, rc, out .. err)
    assert.matches("lua/policy.lua: cannot open script: No such file or directory (looked in " .. tmp .. ")", err, 1, true)
  end)
end)
