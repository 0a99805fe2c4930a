-- systemd_spec.lua — Type=notify through the real binary: with NOTIFY_SOCKET pointing at a unix
-- datagram socket this spec owns, READY=1 arrives once every worker serves (/health/live answers
-- at once then), RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 when SIGTERM starts
-- the drain; an abstract socket ("@name") works too, and without NOTIFY_SOCKET nothing changes.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local unix = require "socket.unix"

local scripts = {
  ["one.lua"] = [==[ sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] } ]==],
}

-- The next datagram on s within timeout seconds, or nil.
local function receive(s, timeout)
  s:settimeout(H.scaled(timeout))
  local msg = s:receive()
  return msg
end

-- The VAR=value lines of a notification as a table.
local function fields(msg)
  local t = {}
  for k, v in (msg or ""):gmatch("([%u_]+)=([^\n]*)") do t[k] = v end
  return t
end

describe("systemd notify", function()
  local db, dir

  setup(function()
    db = H.createdb("systemd")
    dir = H.tmpdir("sluice-notify")
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
    if dir then H.sh("rm -rf " .. H.q(dir)) end
  end)

  it("READY=1 once the workers serve, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 at SIGTERM", function()
    local path = dir .. "/notify.sock"
    local s = assert(unix.dgram())
    assert(s:bind(path))
    local gw = H.start { dsn = db, scripts = scripts, wait = false, config = { workers = 3 },
      env = { NOTIFY_SOCKET = path } }
    local msg = receive(s, 10)
    assert.truthy(msg, "no notification; log:\n" .. gw:log())
    local f = fields(msg)
    assert.equal("1", f.READY)
    assert.matches("serving on 127.0.0.1:" .. gw.port .. " with 3 workers", f.STATUS, 1, true)
    -- ready means serving: the very first request after it is answered, by every worker alike
    local status = gw:get_json("/health/live", nil, 2)
    assert.equal(200, status)
    for _ = 1, 6 do assert.equal(200, (gw:get_json("/query/one", nil, 2))) end

    H.sh("kill -HUP " .. gw.pid)
    f = fields(receive(s, 10))
    assert.equal("1", f.RELOADING)
    assert.truthy(tonumber(f.MONOTONIC_USEC), "MONOTONIC_USEC with RELOADING=1")
    f = fields(receive(s, 10))
    assert.equal("1", f.READY)
    assert.equal(200, (gw:get_json("/query/one")))

    H.sh("kill -TERM " .. gw.pid)
    f = fields(receive(s, 10))
    assert.equal("1", f.STOPPING)
    assert.equal(0, gw:stop())
    assert.is_nil(receive(s, 0.2)) -- nothing after
    s:close()
  end)

  it("an abstract socket (@name) works too", function()
    -- luasocket cannot bind an abstract name: python3 receives one datagram into a file
    local name = "sluice-notify-" .. H.pid .. "-" .. math.random(1e9)
    local out = dir .. "/abstract.out"
    H.must(("python3 -c %s %s %s >/dev/null 2>&1 &"):format(H.q([[
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
open(sys.argv[2] + ".bound", "w").close()
s.settimeout(20)
msg = s.recv(4096)
open(sys.argv[2] + ".tmp", "wb").write(msg)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
]]), H.q(name), H.q(out)))
    assert(H.wait_for(function() return H.readfile(out .. ".bound") end, H.scaled(10)), "python3 did not bind")
    local gw = H.start { dsn = db, scripts = scripts, wait = false, env = { NOTIFY_SOCKET = "@" .. name } }
    local msg = H.wait_for(function() return H.readfile(out) end, H.scaled(10))
    assert.equal("1", fields(msg).READY, gw:log())
    assert.equal(200, (gw:get_json("/health/live", nil, 2)))
    assert.equal(0, gw:stop())
  end)

  it("a NOTIFY_SOCKET nobody listens on is logged once and the gateway serves", function()
    local gw = H.start { dsn = db, scripts = scripts, env = { NOTIFY_SOCKET = dir .. "/nobody.sock" } }
    assert.equal(200, (gw:get_json("/query/one")))
    H.sh("kill -HUP " .. gw.pid)
    H.sleep(0.3)
    assert.equal(200, (gw:get_json("/query/one")))
    local _, n = gw:log():gsub("cannot notify the service manager", "")
    assert.equal(1, n)
    assert.equal(0, gw:stop())
  end)
end)
