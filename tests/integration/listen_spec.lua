-- listen_spec.lua — `sluice serve` on a TCP address another process already serves exits 1 with
-- one line saying so, whether that process is another sluice (which sets SO_REUSEPORT too) or a
-- plain listener; the running one keeps all the traffic. A port just freed (connections left in
-- TIME_WAIT) is taken again at once. Unix sockets: unixsocket_spec.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local scripts = {
  ["one.lua"] = [==[ sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] } ]==],
}

describe("listen address in use", function()
  local db

  setup(function() db = H.createdb("listen") end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function wait_exit(gw)
    H.wait_for(function() return gw:exit_code() end, H.scaled(10))
    return gw:exit_code()
  end

  local function nonempty_lines(s)
    local n = 0
    for line in s:gmatch("[^\n]+") do if line:match("%S") then n = n + 1 end end
    return n
  end

  it("a second gateway on the address of a running one exits 1 with one line; the first keeps serving", function()
    local first = H.start { dsn = db, scripts = scripts }
    local second = H.start { dsn = db, scripts = scripts, port = first.port, wait = false }
    assert.equal(1, wait_exit(second))
    local log = second:log()
    assert.equal(("sluice: listen 127.0.0.1:%d: the address is already in use by another process\n"):format(first.port),
      log)
    assert.equal(1, nonempty_lines(log))
    -- every request reaches the first one (with SO_REUSEPORT shared, about half would have been lost)
    for _ = 1, 20 do
      local c = assert(socket.connect("127.0.0.1", first.port))
      c:close()
    end
    for _ = 1, 10 do assert.equal(200, (first:get_json("/query/one"))) end
    assert.equal(0, first:stop())
  end)

  it("a plain listener of another program is detected too", function()
    local port = H.free_port()
    local s = assert(socket.bind("127.0.0.1", port))
    local gw = H.start { dsn = db, scripts = scripts, port = port, wait = false }
    assert.equal(1, wait_exit(gw))
    assert.matches("the address is already in use by another process", gw:log(), 1, true)
    s:close()
  end)

  it("the port of a gateway just stopped, with connections in TIME_WAIT, is taken again", function()
    local first = H.start { dsn = db, scripts = scripts }
    for _ = 1, 5 do assert.equal(200, (first:get_json("/query/one"))) end
    assert.equal(0, first:stop())
    local again = H.start { dsn = db, scripts = scripts, port = first.port }
    assert.equal(200, (again:get_json("/query/one")))
    assert.equal(0, again:stop())
  end)
end)
