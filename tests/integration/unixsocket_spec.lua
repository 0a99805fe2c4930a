-- unixsocket_spec.lua — listen = "unix:/path" through the real binary: the gateway serves on the
-- socket and removes it at stop; a stale socket (nobody accepts on it) is replaced; a regular file
-- or a socket another process serves is left alone and start-up fails with one line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local unix = require "socket.unix"

local scripts = {
  ["u.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
]==],
}

-- GET path over the unix socket with curl: exit code, status, body.
local function curl(path, url)
  local out, rc = H.sh(("curl -sS --max-time 5 --unix-socket %s -w '\\n%%{http_code}' %s"):format(
    H.q(path), H.q("http://localhost" .. url)))
  local body, status = out:match("^(.*)\n(%d+)$")
  return rc, tonumber(status), body
end

-- What is at path: "socket", "file", or nil when nothing is.
local function kind(path)
  local out = H.sh("stat -c %F " .. H.q(path) .. " 2>/dev/null")
  if out:match("socket") then return "socket" end
  if out ~= "" then return "file" end
  return nil
end

describe("listening on a unix socket", function()
  local db, dir

  setup(function()
    db = H.createdb("unixsock")
    dir = H.tmpdir("sluice-unix")
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
    if dir then H.sh("rm -rf " .. H.q(dir)) end
  end)

  local function start(path)
    return H.start { dsn = db, scripts = scripts, wait = false, config = { workers = 2, listen = "unix:" .. path } }
  end

  local function wait_serving(gw, path)
    local deadline = H.now() + H.scaled(10)
    while H.now() < deadline do
      local rc, status = curl(path, "/health/live")
      if rc == 0 and status == 200 then return end
      assert(gw:alive(), "the gateway exited:\n" .. gw:log())
      H.sleep(0.05)
    end
    error("the gateway did not answer on " .. path .. "; log:\n" .. gw:log())
  end

  local function wait_exit(gw)
    local deadline = H.now() + H.scaled(10)
    while not gw:exit_code() and H.now() < deadline do H.sleep(0.05) end
    return gw:exit_code()
  end

  it("a regular file at the path is kept and start-up fails with one line", function()
    local path = dir .. "/file.sock"
    H.writefile(path, "precious\n")
    local gw = start(path)
    assert.equal(1, wait_exit(gw))
    assert.equal("precious\n", H.readfile(path))
    local log = gw:log()
    assert.truthy(log:find("sluice: listen unix:" .. path .. ": the path exists and is not a socket", 1, true), log)
  end)

  it("a stale socket (its server gone) is replaced; the socket is removed at stop", function()
    local path = dir .. "/stale.sock"
    local s = assert(unix())
    assert(s:bind(path))
    assert(s:listen(1))
    s:close() -- closed without unlink: what a crashed server leaves
    assert.equal("socket", kind(path))
    local gw = start(path)
    wait_serving(gw, path)
    local rc, status, body = curl(path, "/query/one")
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.same({ one = 1 }, H.decode(body))
    assert.truthy(gw:log():find("removed a stale socket", 1, true))
    assert.equal(0, gw:stop())
    assert.is_nil(kind(path))
  end)

  it("a socket another process accepts on is left alone and start-up fails", function()
    local path = dir .. "/live.sock"
    local s = assert(unix())
    assert(s:bind(path))
    assert(s:listen(8))
    local gw = start(path)
    assert.equal(1, wait_exit(gw))
    local log = gw:log()
    assert.truthy(log:find("sluice: listen unix:" .. path .. ": another process is accepting connections", 1, true),
      log)
    -- still the other process's socket
    local c = assert(unix())
    assert(c:connect(path))
    c:close()
    s:close()
    os.remove(path)
  end)

  it("a second gateway on the socket of a running one fails; the first serves on", function()
    local path = dir .. "/busy.sock"
    local first = start(path)
    wait_serving(first, path)
    local second = start(path)
    assert.equal(1, wait_exit(second))
    assert.truthy(second:log():find("another process is accepting connections", 1, true), second:log())
    local rc, status = curl(path, "/query/one")
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.equal(0, first:stop())
  end)
end)
