-- http2_spec.lua — HTTP/2 through the real binary. Off by default: the h2c preface is refused and
-- Upgrade: h2c ignored. With http2 = true: a client that resets a few streams is served on; one
-- that resets stream after stream (Rapid Reset, CVE-2023-44487) is disconnected with a log line and
-- its later requests never reach the database; a streamed answer whose client grants no flow-control
-- window is cut at client_timeout. The HTTP/2 client is written here on luasocket (h2c).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"
local bit = require "bit"

local scripts = {
  ["h2.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "slow" { readonly = true, single = true, sql = [[
  SELECT nextval('h2_hits') AS n, (SELECT 1 FROM pg_sleep(:s::float8)) AS slept ]] }
-- generate_series in a select list yields rows as they are read (in FROM it would store them all first)
sluice.query "wide" { readonly = true, sql = [[
  SELECT g, repeat('x', 200) AS pad FROM (SELECT generate_series(1, :n::int) AS g) AS s ]] }
]==],
}

---------------------------------------------------------------------------------------------
-- a minimal HTTP/2 client: frames, and HPACK without the dynamic table or Huffman

local DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0, 1, 3, 4, 7
local END_STREAM, END_HEADERS, ACK = 1, 4, 1

local function u32(n)
  return string.char(bit.band(bit.rshift(n, 24), 255), bit.band(bit.rshift(n, 16), 255),
    bit.band(bit.rshift(n, 8), 255), bit.band(n, 255))
end

local function frame(ftype, flags, sid, payload)
  payload = payload or ""
  return u32(#payload):sub(2) .. string.char(ftype, flags) .. u32(sid) .. payload
end

local function str(s)
  assert(#s < 127)
  return string.char(#s) .. s
end

-- GET path: :method GET, :scheme http (static 2 and 6), :path and :authority as literals with
-- static names (4 and 1), then accept (static 19) when given.
local function request_block(path, accept)
  local b = "\130\134\004" .. str(path) .. "\001" .. str("localhost")
  if accept then b = b .. "\015\004" .. str(accept) end
  return b
end

local function connect(gw, rcvbuf)
  local c = assert(socket.tcp4())
  if rcvbuf then assert(c:setoption("recv-buffer-size", rcvbuf)) end
  c:settimeout(5)
  assert(c:connect("127.0.0.1", gw.port))
  assert(c:send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" .. frame(SETTINGS, 0, 0)))
  return c
end

-- The next frame: type, flags, stream id, payload; or nil and the socket's error.
local function read_frame(c)
  local head, err = c:receive(9)
  if not head then return nil, err end
  local len = head:byte(1) * 65536 + head:byte(2) * 256 + head:byte(3)
  local payload = ""
  if len > 0 then
    payload, err = c:receive(len)
    if not payload then return nil, err end
  end
  local sid = bit.band(head:byte(6), 127) * 16777216 + head:byte(7) * 65536 + head:byte(8) * 256 + head:byte(9)
  return head:byte(4), head:byte(5), sid, payload
end

-- Reads frames until one on stream sid of type want arrives (true), or the connection ends
-- (false, and the error).
local function wait_for(c, sid, want)
  while true do
    local ftype, flags, id, payload = read_frame(c)
    if not ftype then return false, flags end
    if ftype == SETTINGS and bit.band(flags, ACK) == 0 then c:send(frame(SETTINGS, ACK, 0)) end
    if id == sid and ftype == want then return true, payload end
  end
end

-- Reads until the server closes the connection; true when it did within timeout seconds.
local function closed_within(c, timeout)
  local deadline = H.now() + timeout
  c:settimeout(0.2)
  while H.now() < deadline do
    local data, err, partial = c:receive(65536)
    if err == "closed" then return true end
    if err ~= "timeout" and not data and not partial then return true end
  end
  return false
end

local function hits(db)
  return tonumber(H.psql1(db, "SELECT last_value FROM h2_hits"))
end

describe("HTTP/2", function()
  local db

  setup(function()
    db = H.createdb("h2")
    H.psql(db, "CREATE SEQUENCE h2_hits;")
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("is off by default: the h2c preface gets HTTP/1.1 400, Upgrade: h2c is ignored", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 } }
    local c = connect(gw)
    local line = c:receive("*l")
    c:close()
    assert.equal("HTTP/1.1 400 Bad Request", (line or ""):gsub("\r$", ""))
    local out = H.must(("curl -sS --http2 -o /dev/null -w '%%{http_code} %%{http_version}' %s"):format(
      H.q(gw:url("/query/one"))))
    assert.equal("200 1.1", out)
    gw:stop()
  end)

  describe("with http2 = true", function()
    local gw

    setup(function()
      gw = H.start { dsn = db, scripts = scripts, config = { workers = 1, http2 = true, client_timeout = 2 },
        pool = { pool_size = 2, max_overflow = 0 } }
    end)

    it("h2c with prior knowledge answers as HTTP/1.1 does", function()
      local out = H.must(("curl -sS --http2-prior-knowledge -w '\\n%%{http_code} %%{http_version}' %s"):format(
        H.q(gw:url("/query/one"))))
      assert.equal('{"one":1}\n200 2', out)
    end)

    it("a client that resets a few streams is served on", function()
      local c = connect(gw)
      local pairs = {}
      for i = 0, 49 do
        local sid = 1 + 2 * i
        pairs[#pairs + 1] = frame(HEADERS, END_STREAM + END_HEADERS, sid, request_block("/query/slow?s=0.05"))
          .. frame(RST_STREAM, 0, sid, u32(8))
      end
      assert(c:send(table.concat(pairs)))
      assert(c:send(frame(HEADERS, END_STREAM + END_HEADERS, 101, request_block("/query/one"))))
      local ok, err = wait_for(c, 101, DATA)
      c:close()
      assert(ok, "no answer after 50 resets: " .. tostring(err))
      assert.is_nil(gw:log():find("Rapid Reset", 1, true))
    end)

    it("a client that resets stream after stream is disconnected; its later requests do no work", function()
      H.sleep(1) -- the sleeps of the previous test are over
      local before = hits(db)
      local c = connect(gw)
      local pairs = {}
      for i = 0, 1999 do
        local sid = 1 + 2 * i
        pairs[#pairs + 1] = frame(HEADERS, END_STREAM + END_HEADERS, sid, request_block("/query/slow?s=0.05"))
          .. frame(RST_STREAM, 0, sid, u32(8))
      end
      c:send(table.concat(pairs)) -- may fail part-way: the gateway closes the connection
      assert.is_true(closed_within(c, 5))
      c:close()
      local log = gw:log()
      assert.truthy(log:find("HTTP/2 connection from 127.0.0.1:%d+ closed: more than 100 requests ended by the client "
        .. "before their answer"), log)
      -- what reached the database: what the pool's pipelines took before the cut (2 connections,
      -- 16 statements each), not one execution per reset
      H.sleep(2)
      local ran = hits(db) - before
      assert(ran <= 40, ran .. " executions")
      H.assert_ok(gw:get_json("/query/one"))
      local out = H.must(("curl -sS --http2-prior-knowledge -o /dev/null -w '%%{http_code}' %s"):format(
        H.q(gw:url("/query/one"))))
      assert.equal("200", out)
    end)

    it("a streamed answer whose client grants no window is cut at client_timeout", function()
      local c = connect(gw, 4096)
      assert(c:send(frame(HEADERS, END_STREAM + END_HEADERS, 1, request_block("/query/wide?n=1000000", "text/csv"))))
      local t0 = H.now()
      assert.is_true(closed_within(c, 8))
      local took = H.now() - t0
      c:close()
      assert(took > 1.5 and took < 6, ("closed after %.2f s"):format(took))
      assert.truthy(gw:log():find("query wide: streamed response cut: the client took no data for 2 s (client_timeout)",
        1, true), gw:log())
      local _, health = gw:get_json("/health")
      assert.equal(0, health.pools.primary.in_use)
    end)
  end)
end)
