-- compress_spec.lua — gzip through the real binary: answers of compress_min_bytes or more are
-- gzip-encoded for a client that sends Accept-Encoding: gzip (Vary: Accept-Encoding), and decode
-- to the same bytes; smaller answers, and clients that do not ask, get the body as it is;
-- streamed CSV and NDJSON are encoded too; a client that stops reading an encoded stream is
-- still cut at the write deadline.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local scripts = {
  ["z.lua"] = [==[
sluice.query "series" { readonly = true, sql = [[ SELECT g, 'row ' || g AS label FROM generate_series(1, :n::int) AS g ]] }
-- md5 text compresses only about by half: a large answer stays large once encoded
sluice.query "noise" { readonly = true, timeout_ms = 1000, sql = [[
  SELECT md5(g::text) || md5((g * 7)::text) AS h FROM (SELECT generate_series(1, :n::int) AS g) AS s ]] }
]==],
}

-- curl with -D: status line and headers (lower-case names), body written to a file; returns
-- headers table, raw body, plain (decoded by gzip -d when encoded).
local function fetch(gw, path, headers)
  local dir = H.tmpdir("sluice-gz")
  local args = {}
  for _, h in ipairs(headers or {}) do args[#args + 1] = "-H " .. H.q(h) end
  H.must(("curl -sS --max-time 30 -D %s -o %s %s %s"):format(H.q(dir .. "/h"), H.q(dir .. "/b"),
    table.concat(args, " "), H.q(gw:url(path))))
  local h = {}
  for name, value in (H.readfile(dir .. "/h") or ""):gmatch("([%w%-]+):%s*([^\r\n]*)") do h[name:lower()] = value end
  local raw = H.readfile(dir .. "/b") or ""
  local plain = raw
  if h["content-encoding"] == "gzip" then plain = H.must("gzip -dc " .. H.q(dir .. "/b")) end
  H.sh("rm -rf " .. H.q(dir))
  return h, raw, plain
end

describe("compression", function()
  local db, gw

  setup(function()
    db = H.createdb("gz")
    gw = H.start { dsn = db, scripts = scripts }
  end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("an answer of 1024 bytes or more is gzip-encoded when the client takes it", function()
    local _, plain_body = fetch(gw, "/query/series?n=200")
    assert.truthy(#plain_body >= 1024)
    local h, raw, plain = fetch(gw, "/query/series?n=200", { "Accept-Encoding: gzip, deflate" })
    assert.equal("gzip", h["content-encoding"])
    assert.truthy(h.vary and h.vary:lower():find("accept-encoding", 1, true), h.vary)
    assert.truthy(#raw < #plain_body / 2, ("%d encoded bytes of %d"):format(#raw, #plain_body))
    assert.equal(plain_body, plain)
    assert.truthy(h["x-request-id"])
  end)

  it("smaller answers and clients that do not ask get the body as it is", function()
    local h, raw = fetch(gw, "/query/series?n=2", { "Accept-Encoding: gzip" })
    assert.truthy(#raw < 1024)
    assert.is_nil(h["content-encoding"])
    h = fetch(gw, "/query/series?n=200")
    assert.is_nil(h["content-encoding"])
    h = fetch(gw, "/query/series?n=200", { "Accept-Encoding: br, identity" })
    assert.is_nil(h["content-encoding"])
    -- errors are never encoded
    h = fetch(gw, "/query/series?n=abc", { "Accept-Encoding: gzip" })
    assert.is_nil(h["content-encoding"])
  end)

  it("streamed CSV and NDJSON are encoded too, and decode to the same rows", function()
    for _, accept in ipairs { "text/csv", "application/x-ndjson" } do
      local _, plain_body = fetch(gw, "/query/series?n=5000", { "Accept: " .. accept })
      local h, raw, plain = fetch(gw, "/query/series?n=5000", { "Accept: " .. accept, "Accept-Encoding: gzip" })
      assert.equal("gzip", h["content-encoding"], accept)
      assert.truthy(#raw < #plain_body / 2, accept)
      assert.equal(plain_body, plain, accept)
    end
  end)

  it("compress_min_bytes sets the threshold", function()
    local g = H.start { dsn = db, scripts = scripts, config = { compress_min_bytes = 40 } }
    local h = fetch(g, "/query/series?n=2", { "Accept-Encoding: gzip" })
    assert.equal("gzip", h["content-encoding"])
    g:stop()
  end)

  it("a bad compress_min_bytes stops start-up naming the key", function()
    for _, bad in ipairs { -1, 1.5, "big" } do
      local g = H.start { dsn = db, wait = false, scripts = scripts, config = { compress_min_bytes = bad } }
      local deadline = H.now() + 10
      while g:exit_code() == nil and H.now() < deadline do H.sleep(0.05) end
      assert.equal(1, g:exit_code())
      assert.truthy(g:log():find("compress_min_bytes: expected", 1, true), g:log())
    end
  end)

  it("a client that stops reading an encoded stream is cut at the write deadline", function()
    local g = H.start { dsn = db, scripts = scripts, config = { client_timeout = 1 } }
    local c = assert(socket.tcp4())
    assert(c:setoption("recv-buffer-size", 4096))
    c:settimeout(5)
    assert(c:connect("127.0.0.1", g.port))
    assert(c:send("GET /query/noise?n=3000000 HTTP/1.1\r\nHost: x\r\nAccept: text/csv\r\nAccept-Encoding: gzip\r\n\r\n"))
    local t0 = H.now()
    local deadline = t0 + 8
    while not g:log():find("streamed response cut", 1, true) and H.now() < deadline do H.sleep(0.05) end
    assert.truthy(g:log():find("query noise: streamed response cut: the client took no data for 1 s", 1, true), g:log())
    assert(H.now() - t0 < 4, ("cut after %.2f s"):format(H.now() - t0))
    c:close()
    H.assert_ok(g:get_json("/query/series?n=1"))
    g:stop()
  end)
end)
