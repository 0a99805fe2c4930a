-- cpus_spec.lua — `auto` workers and pool_size count the CPUs the process may use: started under
-- `taskset -c 0` (an affinity mask of one CPU) the gateway runs 1 worker and a pool of 2 * 1 + 1.
-- The cgroup quota part is covered by tests/unit/test_cpus.c on fake cgroup trees.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

describe("auto CPU count", function()
  local db

  setup(function() db = H.createdb("cpus") end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("follows the affinity mask", function()
    local _, rc = H.sh("taskset -c 0 true")
    if rc ~= 0 then
      pending("taskset is not available")
      return
    end
    local saved = H.wrapper
    H.wrapper = "taskset -c 0" .. (saved and " " .. saved or "")
    local ok, gw = pcall(H.start, { dsn = db, config = { workers = "auto" }, pool = { pool_size = "auto" } })
    H.wrapper = saved
    assert(ok, gw)
    assert.truthy(gw:log():find("with 1 workers", 1, true), gw:log())
    local status, body = gw:get_json("/health")
    assert.equal(200, status)
    assert.equal(3, body.pools.primary.size)
    assert.equal(0, gw:stop())
  end)
end)
