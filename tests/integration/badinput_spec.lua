-- badinput_spec.lua — hostile and broken input through the real binary, often over raw TCP:
-- malformed, mistyped, non-UTF-8, NUL-bearing, huge and deeply nested JSON; oversize bodies, URLs
-- and headers; odd methods and request lines; HTTP/1.0 and pipelining; slow, idle and vanishing
-- clients. Each gets the JSON error of docs/http-api.md (or a clean close), and the gateway keeps serving.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local scripts = {
  ["badinput.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "echo_text" { readonly = true, single = true, sql = [[ SELECT :t::text AS t ]] }
sluice.query "echo_int" { readonly = true, single = true, sql = [[ SELECT :i::int4 AS i ]] }
sluice.query "echo_int8" { readonly = true, single = true, sql = [[ SELECT :i::int8 AS i ]] }
sluice.query "echo_num" { readonly = true, single = true, sql = [[ SELECT :n::numeric AS n ]] }
sluice.query "echo_json" { readonly = true, single = true, sql = [[ SELECT :j::jsonb AS j ]] }
sluice.query "echo_bytea" { readonly = true, single = true, sql = [[ SELECT :b::bytea AS b ]] }
sluice.query "by_path" { readonly = true, single = true, sql = [[ SELECT :t::text AS t ]], route = "GET /echo/{t}" }
sluice.query "add_note" { sql = [[ INSERT INTO notes (t) VALUES (:t) ]] }
sluice.query "nap" { readonly = true, single = true, sql = [[ SELECT 1 AS x FROM pg_sleep(3) ]] }
sluice.query "doze" { readonly = true, single = true, sql = [[ SELECT 1 AS x FROM pg_sleep(0.3) ]] }
sluice.bulk "rows" { table = "rows", columns = { "a", "b" } }
sluice.bulk "nums" { table = "nums", columns = { "n" } }
sluice.endpoint "h" { route = "POST /h", handler = function(req) return 200, { kind = type(req.body) } end }
]==],
}

---------------------------------------------------------------------------------------------
-- raw HTTP/1.x over luasocket

local function connect(g, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or 10)
  local ok, err = c:connect("127.0.0.1", g.port)
  assert(ok, "connect: " .. tostring(err))
  return c
end

local function is_closed(err)
  return err == "closed" or (type(err) == "string" and err:match("reset") ~= nil)
end

-- Reads one response off c: { status, headers (lower-case), body, json }, or nil and an error.
local function read_response(c)
  local line, err
  local status
  local hdrs
  repeat -- skip interim 1xx responses
    line, err = c:receive("*l")
    if not line then return nil, err end
    status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
    if not status then return nil, "not a status line: " .. line end
    hdrs = {}
    while true do
      local l, e = c:receive("*l")
      if not l then return nil, e end
      if l == "" then break end
      local k, v = l:match("^([^:]+):%s*(.-)%s*$")
      if k then hdrs[k:lower()] = v end
    end
  until status >= 200
  local body = ""
  if hdrs["content-length"] then
    local n = tonumber(hdrs["content-length"])
    if n > 0 then
      body, err = c:receive(n)
      if not body then return nil, err end
    end
  elseif (hdrs["transfer-encoding"] or ""):lower():match("chunked") then
    local parts = {}
    while true do
      local l, e = c:receive("*l")
      if not l then return nil, e end
      local size = tonumber(l:match("^%x+"), 16)
      if size == 0 then
        repeat l, e = c:receive("*l") until not l or l == ""
        break
      end
      parts[#parts + 1], e = c:receive(size)
      if not parts[#parts] then return nil, e end
      c:receive("*l")
    end
    body = table.concat(parts)
  elseif status ~= 204 and status ~= 304 then
    local s, e, part = c:receive("*a")
    body = s or part or ""
  end
  return { status = status, headers = hdrs, body = body, json = (H.decode(body)) }
end

-- Reads until the peer closes or `timeout` seconds pass: returns the bytes and whether it closed.
local function read_to_close(c, timeout)
  local deadline = H.now() + timeout
  local parts = {}
  while true do
    local left = deadline - H.now()
    if left <= 0 then return table.concat(parts), false end
    c:settimeout(left)
    local s, err, part = c:receive(4096)
    parts[#parts + 1] = s or part
    if not s then
      if is_closed(err) then return table.concat(parts), true end
      if err ~= "timeout" then return table.concat(parts), true end
    end
  end
end

-- Sends data on a new connection and reads one response; returns it and the connection.
local function exchange(g, data)
  local c = connect(g)
  c:send(data) -- the server may answer and close before it has read everything
  local r, err = read_response(c)
  assert(r, "no response: " .. tostring(err))
  return r, c
end

-- Sends `byte` on c once a second until the server closes it or `limit` seconds after t0 pass;
-- returns the seconds from t0 to the close (nil if it stayed open) and what the server sent.
local function drip(c, t0, byte, limit)
  c:settimeout(0)
  local got, next_byte = {}, H.now() + 1
  while H.now() < t0 + limit do
    local readable = socket.select({ c }, nil, math.max(0.01, math.min(0.1, next_byte - H.now())))
    if readable[1] then
      local s, err, part = c:receive(4096)
      got[#got + 1] = s or part
      if err and err ~= "timeout" then return H.now() - t0, table.concat(got) end
    end
    if H.now() >= next_byte then
      c:send(byte)
      next_byte = next_byte + 1
    end
  end
  return nil, table.concat(got)
end

local function get_req(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n" .. (extra or "") .. "\r\n"
end

local function post_req(path, body, extra)
  return "POST " .. path .. " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " ..
      #body .. "\r\n" .. (extra or "") .. "\r\n" .. body
end

local function assert_json_error(status, code, r)
  return H.assert_error(status, code, r.status, r.json, r.headers, r.body)
end

-- True when s is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
        or (c >= 0xF0 and c <= 0xF4) and 4 or nil
    if not len or i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return false end
    end
    local b1 = s:byte(i + 1)
    if (c == 0xE0 and b1 < 0xA0) or (c == 0xED and b1 > 0x9F) or (c == 0xF0 and b1 < 0x90) or
        (c == 0xF4 and b1 > 0x8F) then
      return false
    end
    i = i + len
  end
  return true
end

-- A 400 bad_request whose raw body is valid UTF-8 JSON.
local function assert_bad_request(s, b, h, raw)
  H.assert_error(400, "bad_request", s, b, h, raw)
  assert(valid_utf8(raw), "the error body is not valid UTF-8: " .. raw)
end

local function fd_count(pid)
  return tonumber((H.must("ls /proc/" .. pid .. "/fd | wc -l"):match("%d+")))
end

local function rss_kb(pid)
  local s = H.readfile("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

---------------------------------------------------------------------------------------------

describe("bad input", function()
  local db, gw

  setup(function()
    db = H.createdb("badinput")
    H.psql(db, [[
      CREATE TABLE rows (a int, b text);
      CREATE TABLE notes (t text);
      CREATE TABLE nums (n numeric);
    ]])
    gw = H.start { dsn = db, scripts = scripts, pool = { pool_size = 2, max_overflow = 0 }, config = {
      workers = 1, max_body_bytes = 256 * 1024, max_url_bytes = 4096,
    } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  after_each(function()
    if gw then
      assert(gw:alive(), "the gateway died; log:\n" .. gw:log())
      H.assert_ok(gw:get_json("/query/one"))
    end
  end)

  describe("JSON bodies", function()
    it("malformed or truncated JSON → 400", function()
      for _, body in ipairs { '{"i":', "[1,", '{"i":1', '{"i":1}}', '{"i":1}x', "{i:1}", '{"i":01}', "[", "]", "\"" } do
        assert_bad_request(gw:post_json("/query/echo_int", body))
      end
    end)

    it("values of the wrong type → 400", function()
      for _, body in ipairs { '{"i":{"a":1}}', '{"i":"abc"}', '{"i":true}', '{"i":[1]}', '{"i":1.5}', '[{"i":1}]' } do
        assert_bad_request(gw:post_json("/query/echo_int", body))
      end
      local e = H.assert_error(400, "bad_request", gw:post_json("/query/echo_int", '{"i":"abc"}'))
      assert.equal("22P02", e.sqlstate)
      for _, body in ipairs { '{"t":[1]}', '{"t":{"a":"b"}}', '["x","y"]' } do
        assert_bad_request(gw:post_json("/query/echo_text", body))
      end
      assert_bad_request(gw:post_json("/query/echo_bytea", '{"b":"not base64!"}'))
      assert_bad_request(gw:post_json("/query/echo_bytea", '{"b":17}'))
    end)

    it("invalid UTF-8 inside a JSON string → 400, whatever the byte pattern", function()
      -- a stray byte, a lone continuation, an overlong '/', a UTF-16 surrogate, a truncated
      -- sequence, a code point past U+10FFFF
      for _, bad in ipairs { "\xff\xfe", "\x80", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80" } do
        assert_bad_request(gw:post_json("/query/echo_text", '{"t":"a' .. bad .. 'b"}'))
        assert_bad_request(gw:post_json("/query/echo_text", '{"t' .. bad .. '":"x"}'))
      end
      -- an escaped lone surrogate is no better
      assert_bad_request(gw:post_json("/query/echo_text", '{"t":"\\ud800"}'))
      assert.same({ t = "€" }, H.assert_ok(gw:post_json("/query/echo_text", '{"t":"\xe2\x82\xac"}')))
    end)

    it("NUL bytes: \\u0000 in a text value, a raw NUL in the body → 400", function()
      local e = H.assert_error(400, "bad_request", gw:post_json("/query/echo_text", '{"t":"a\\u0000b"}'))
      assert.truthy(e.message:match("NUL"))
      assert_bad_request(gw:post_json("/query/echo_text", '{"t\\u0000":"x"}'))
      assert_bad_request(gw:post_json("/query/echo_json", '{"j":"a\\u0000b"}'))
      assert_bad_request(gw:post_json("/query/echo_text", '{"t":"a\0b"}'))
      assert_bad_request(gw:post_json("/query/echo_text", '{"t":\0"a"}'))
      assert_bad_request(gw:post_json("/query/echo_text", '{"t":"a"}\0'))
      assert_bad_request(gw:post_json("/query/echo_text", "\0"))
      -- bytea is the type that holds NUL bytes
      assert.same({ b = "AA==" }, H.assert_ok(gw:post_json("/query/echo_bytea", '{"b":"AA=="}')))
    end)

    it("duplicate keys are ambiguous → 400 on every JSON path", function()
      assert_bad_request(gw:post_json("/query/echo_int", '{"i":1,"i":2}'))
      assert_bad_request(gw:post_json("/query/echo_int", '{"i":1,"i":1}'))
      assert_bad_request(gw:post_json("/query/echo_json", '{"j":{"a":1,"a":2}}'))
      assert_bad_request(gw:post_json("/batch", '[{"query":"one","query":"one"}]'))
      assert_bad_request(gw:post_json("/batch", '[{"query":"echo_int","params":{"i":1,"i":2}}]'))
      assert_bad_request(gw:post_json("/h", '{"a":1,"a":2}'))
      assert_bad_request(gw:post_json("/bulk/rows", '[{"a":1,"a":2}]'))
      assert_bad_request(gw:post_json("/bulk/rows", '{"a":1,"a":2}\n', { ["Content-Type"] = "application/x-ndjson" }))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM rows"))
    end)

    it("nesting 100 000 levels deep → 400 on every JSON path", function()
      local open = ("["):rep(100000)
      local bodies = {
        '{"t":' .. open,
        open .. ("]"):rep(100000),
        '{"t":' .. ('{"a":'):rep(30000) .. "1" .. ("}"):rep(30001),
      }
      for _, body in ipairs(bodies) do
        assert(#body <= 256 * 1024)
        assert_bad_request(gw:post_json("/query/echo_text", body))
        assert_bad_request(gw:post_json("/batch", body))
        assert_bad_request(gw:post_json("/h", body))
        assert_bad_request(gw:post_json("/bulk/rows", body))
      end
      assert_bad_request(gw:post_json("/bulk/rows", '[{"a":1,"b":' .. open .. ("]"):rep(100000) .. "}]"))
      assert_bad_request(gw:post_json("/bulk/rows", '{"a":1,"b":' .. open .. "\n",
        { ["Content-Type"] = "application/x-ndjson" }))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM rows"))
    end)
  end)

  describe("query strings", function()
    it("invalid UTF-8 in a value or a key → 400 with a valid UTF-8 JSON reply", function()
      for _, q in ipairs { "t=%FF", "t=%FE%FF", "t=a%C0%AFb", "t=%ED%A0%80", "t=%E2%82" } do
        assert_bad_request(gw:get_json("/query/echo_text?" .. q))
      end
      assert_bad_request(gw:get_json("/query/echo_int?i=%FF"))
      assert_bad_request(gw:get_json("/query/echo_json?j=%22%FF%22"))
      assert_bad_request(gw:get_json("/query/echo_text?%FF=1"))
      assert_bad_request(gw:get_json("/query/echo_text?t=1&%FF%FE=2"))
      assert_bad_request(gw:get_json("/echo/%FF"))
      assert.same({ t = "é" }, H.assert_ok(gw:get_json("/query/echo_text?t=%C3%A9")))
    end)

    it("invalid UTF-8 is never stored, by any way in", function()
      assert_bad_request(gw:post_json("/query/add_note?t=%FF", ""))
      assert_bad_request(gw:post_json("/query/add_note?t=a%C0%AF", ""))
      assert_bad_request(gw:post_json("/query/add_note", '{"t":"\xff"}'))
      assert_bad_request(gw:post_json("/bulk/rows", '[{"a":1,"b":"\xff"}]'))
      assert_bad_request(gw:post_json("/bulk/rows", 'a,b\n1,\xff\n', { ["Content-Type"] = "text/csv" }))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM notes"))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM rows"))
      H.assert_ok(gw:post_json("/query/add_note?t=%C3%A9", ""))
      assert.equal("é", H.psql1(db, "SELECT t FROM notes"))
      H.psql(db, "DELETE FROM notes")
    end)

    it("%00 in a value → 400; malformed percent-encoding → 400", function()
      local e = H.assert_error(400, "bad_request", gw:get_json("/query/echo_text?t=a%00b"))
      assert.truthy(e.message:match("NUL"))
      assert_bad_request(gw:get_json("/query/echo_int?i=1%00"))
      local e2 = H.assert_error(400, "bad_request", gw:get_json("/query/echo_text?t%00=1"))
      assert.equal("parameter names must not contain NUL bytes", e2.message)
      assert_bad_request(gw:get_json("/echo/a%00b"))
      assert_bad_request(gw:post_json("/query/add_note?t=%00", ""))
      assert_bad_request(gw:get_json("/query/echo_text?t=%"))
      assert_bad_request(gw:get_json("/query/echo_text?t=%zz"))
      assert_bad_request(gw:get_json("/query/echo_text?t=%F"))
      assert.equal("0", H.psql1(db, "SELECT count(*) FROM notes"))
    end)

    it("a raw NUL or control byte in the request target → 400 or a clean close", function()
      for _, target in ipairs { "/query/echo_text?t=a\0b", "/query/echo_text?t=a\1b", "/query/one\0" } do
        local c = connect(gw)
        assert(c:send(get_req(target, "Connection: close\r\n")))
        local data, closed = read_to_close(c, 5)
        c:close()
        assert(closed, "the connection stayed open")
        local status = tonumber(data:match("^HTTP/1%.1 (%d%d%d)"))
        assert(data == "" or status == 400, "expected 400 or a close, got: " .. data)
      end
    end)
  end)

  describe("huge numbers", function()
    local function pg_numeric_text(lit)
      return H.psql1(db, ("SELECT '%s'::numeric::text"):format(lit))
    end

    it("int4 and int8 parameters refuse what does not fit → 400", function()
      for _, v in ipairs { "1e400", "-1e400", "123456789012345678901234567890", "9223372036854775808",
        "-9223372036854775809", "1e19" } do
        assert_bad_request(gw:post_json("/query/echo_int8", '{"i":' .. v .. "}"))
        assert_bad_request(gw:post_json("/query/echo_int8", '{"i":"' .. v .. '"}'))
        assert_bad_request(gw:get_json("/query/echo_int8?i=" .. v))
      end
      for _, v in ipairs { "1e400", "1e10", "2147483648", "-2147483649", "123456789012345678901234567890" } do
        assert_bad_request(gw:post_json("/query/echo_int", '{"i":' .. v .. "}"))
      end
    end)

    it("int8 at its limits comes back exactly, as a string past 2^53", function()
      assert.same({ i = "9223372036854775807" }, H.assert_ok(gw:post_json("/query/echo_int8", '{"i":9223372036854775807}')))
      assert.same({ i = "-9223372036854775808" }, H.assert_ok(gw:post_json("/query/echo_int8", '{"i":-9223372036854775808}')))
      assert.same({ i = "9007199254740993" }, H.assert_ok(gw:post_json("/query/echo_int8", '{"i":9007199254740993}')))
      assert.same({ i = 9007199254740992 }, H.assert_ok(gw:post_json("/query/echo_int8", '{"i":9007199254740992}')))
      assert.same({ i = "9223372036854775807" }, H.assert_ok(gw:get_json("/query/echo_int8?i=9223372036854775807")))
    end)

    local digits = { "123456789012345678901234567890", "0.1234567890123456789", "1e400",
      "-98765432109876543210.0123456789",
      "-0.000000000000000000000000000001234567890123456789" }

    it("numeric given as a string or in the query string keeps every digit", function()
      for _, lit in ipairs(digits) do
        local want = pg_numeric_text(lit)
        assert.same({ n = want }, H.assert_ok(gw:post_json("/query/echo_num", '{"n":"' .. lit .. '"}')))
        assert.same({ n = want }, H.assert_ok(gw:get_json("/query/echo_num?n=" .. H.urlencode(lit))))
      end
      -- 15 significant digits or fewer: a JSON number
      assert.same({ n = 123456789012345 }, H.assert_ok(gw:post_json("/query/echo_num", '{"n":123456789012345}')))
      assert.same({ n = 12345.5 }, H.assert_ok(gw:post_json("/query/echo_num", '{"n":12345.5}')))
    end)

    it("numeric given as a JSON number keeps every digit", function()
      local wrong = {}
      for _, lit in ipairs(digits) do
        local want = pg_numeric_text(lit)
        local s, b, _, raw = gw:post_json("/query/echo_num", '{"n":' .. lit .. "}")
        if s ~= 200 or type(b) ~= "table" or b.n ~= want then
          wrong[#wrong + 1] = ("/query %s → %s %s"):format(lit, tostring(s), tostring(raw):sub(1, 160))
        end
        s, b, _, raw = gw:post_json("/batch", '[{"query":"echo_num","params":{"n":' .. lit .. "}}]")
        local item = type(b) == "table" and b[1] or {}
        if s ~= 200 or item.status ~= 200 or type(item.body) ~= "table" or item.body.n ~= want then
          wrong[#wrong + 1] = ("/batch %s → %s %s"):format(lit, tostring(s), tostring(raw):sub(1, 160))
        end
        H.psql(db, "TRUNCATE nums")
        s, _, _, raw = gw:post_json("/bulk/nums", '[{"n":' .. lit .. "}]")
        local stored = s == 200 and H.psql1(db, "SELECT n::text FROM nums") or nil
        if stored ~= want then
          wrong[#wrong + 1] = ("/bulk %s → %s %s"):format(lit, tostring(s), tostring(stored or raw):sub(1, 160))
        end
      end
      assert(#wrong == 0, "JSON numbers not kept digit for digit:\n" .. table.concat(wrong, "\n"))
    end)
  end)

  describe("sizes", function()
    it("a body over max_body_bytes → 413 too_large, however it is framed", function()
      local pad = '{"t":"' .. ("x"):rep(300 * 1024) .. '"}'
      H.assert_error(413, "too_large", gw:post_json("/query/echo_text", pad))
      -- past h2o's own bound: refused on the declared length alone
      local r, c = exchange(gw, "POST /query/echo_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" ..
        "Content-Length: 10000000\r\n\r\n")
      c:close()
      assert_json_error(413, "too_large", r)
      -- chunked, with no length declared
      local chunk = ("%x\r\n%s\r\n"):format(4096, ("x"):rep(4096))
      r, c = exchange(gw, "POST /query/echo_text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n" .. chunk:rep(75) .. "0\r\n\r\n")
      c:close()
      assert_json_error(413, "too_large", r)
    end)

    it("a URL over max_url_bytes → 414 too_large, in the path or the query string", function()
      H.assert_error(414, "too_large", gw:get_json("/query/echo_text?t=" .. ("x"):rep(5000)))
      H.assert_error(414, "too_large", gw:get_json("/query/" .. ("x"):rep(50000)))
      H.assert_error(414, "too_large", gw:post_json("/query/echo_text?t=" .. ("%FF"):rep(2000), ""))
    end)
  end)

  describe("methods and request lines", function()
    it("unknown methods → 405 on a query, 404 on an unknown path (415 first without a Content-Type)", function()
      for _, m in ipairs { "FOO", "PROPFIND", "DELETE", "PUT", "PATCH", "TRACE", "get" } do
        local head = " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
        local json = "Content-Type: application/json\r\n"
        local r = exchange(gw, m .. " /query/one" .. head .. json .. "\r\n")
        assert_json_error(405, "method_not_allowed", r)
        assert.equal("GET, POST", r.headers["allow"])
        r = exchange(gw, m .. " /nope" .. head .. json .. "\r\n")
        assert_json_error(404, "not_found", r)
        -- the Content-Type rule comes before routing
        assert_json_error(415, "unsupported_media_type", exchange(gw, m .. " /query/one" .. head .. "\r\n"))
        assert_json_error(415, "unsupported_media_type", exchange(gw, m .. " /nope" .. head .. "\r\n"))
      end
    end)

    it("garbage request lines → h2o's 400 or a clean close", function()
      local tls_hello = "\22\3\1\0\165\1\0\0\161\3\3" .. ("\42"):rep(32) .. "\0\0\32\192\43\192\47\0\158\0\0\1\0"
      for _, data in ipairs { tls_hello, "GET\r\n\r\n", "\0\0\0\0\r\n\r\n", "GET /query/one HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET /query/one\r\n\r\n", "GET /query/one HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        "GET /query/one HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", "\r\n\r\n\r\n\r\n" } do
        local c = connect(gw)
        assert(c:send(data))
        local got, closed = read_to_close(c, 5)
        c:close()
        assert(closed, ("the connection stayed open after %q"):format(data))
        local status = tonumber(got:match("^HTTP/1%.1 (%d%d%d)"))
        assert(got == "" or status == 400, ("expected 400 or a close after %q, got: %s"):format(data, got))
      end
    end)

    it("broken body framing → 400 bad_request JSON", function()
      for _, framing in ipairs {
        "Content-Length: abc\r\n\r\n",
        "Content-Length: -5\r\n\r\n",
        "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        "Transfer-Encoding: gzip\r\n\r\n",
      } do
        local r, c = exchange(gw, "POST /query/echo_int HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" .. framing)
        c:close()
        assert_json_error(400, "bad_request", r)
      end
    end)
  end)

  describe("connections", function()
    it("HTTP/1.0 without Host: a JSON answer, then the connection closes", function()
      local r, c = exchange(gw, "GET /query/one HTTP/1.0\r\n\r\n")
      assert.equal(200, r.status)
      assert.same({ one = 1 }, r.json)
      local rest, closed = read_to_close(c, 5)
      assert.is_true(closed)
      assert.equal("", rest)
      c:close()
      r, c = exchange(gw, "POST /query/echo_int HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"i\":")
      assert_json_error(400, "bad_request", r)
      assert.is_true(select(2, read_to_close(c, 5)))
      c:close()
    end)

    it("HTTP/1.0 with keep-alive: two requests on one connection", function()
      local r, c = exchange(gw, "GET /query/one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      assert.equal(200, r.status)
      assert.same({ one = 1 }, r.json)
      assert.truthy((r.headers["connection"] or ""):lower():match("keep%-alive"))
      assert(c:send("GET /query/echo_int?i=7 HTTP/1.0\r\n\r\n"))
      r = assert(read_response(c))
      assert.equal(200, r.status)
      assert.same({ i = 7 }, r.json)
      assert.is_true(select(2, read_to_close(c, 5)))
      c:close()
    end)

    it("pipelined requests in one send are answered in order", function()
      local c = connect(gw)
      assert(c:send(get_req("/query/one") .. get_req("/query/echo_int?i=2") .. get_req("/query/echo_int?i=3")))
      local want = { { one = 1 }, { i = 2 }, { i = 3 } }
      for i = 1, 3 do
        local r = assert(read_response(c))
        assert.equal(200, r.status)
        assert.same(want[i], r.json)
      end
      -- an error in the middle does not disturb the order or the connection
      assert(c:send(get_req("/query/echo_int?i=4") .. post_req("/query/echo_int", '{"i":') ..
        get_req("/query/nope") .. get_req("/query/echo_int?i=5", "Connection: close\r\n")))
      local r = assert(read_response(c))
      assert.same({ i = 4 }, r.json)
      assert_json_error(400, "bad_request", assert(read_response(c)))
      assert_json_error(404, "not_found", assert(read_response(c)))
      r = assert(read_response(c))
      assert.same({ i = 5 }, r.json)
      assert.is_true(select(2, read_to_close(c, 5)))
      c:close()
    end)

    -- While a request waits on the database its connection stays polled: what arrives meanwhile
    -- is kept for after the answer.
    it("a request sent while the one before it waits on the database is answered after it", function()
      local c = connect(gw)
      assert(c:send(get_req("/query/doze")))
      H.sleep(0.1)
      assert(c:send(get_req("/query/echo_int?i=2")))
      local r = assert(read_response(c))
      assert.equal(200, r.status)
      assert.same({ x = 1 }, r.json)
      r = assert(read_response(c))
      assert.same({ i = 2 }, r.json)
      assert(c:send(get_req("/query/echo_int?i=3", "Connection: close\r\n")))
      r = assert(read_response(c))
      assert.same({ i = 3 }, r.json)
      assert.is_true(select(2, read_to_close(c, 5)))
      c:close()
    end)

    it("what a client sends while its request waits leaves that request's head intact", function()
      -- h2o's request points into the connection's input buffer; reading the next request into
      -- it meanwhile could move that buffer (a use after free, or headers read from moved bytes)
      local r0, c0 = exchange(gw, get_req("/query/doze", "Connection: close\r\n"))
      c0:close()
      local etag = assert(r0.headers["etag"])
      for _, pad in ipairs { 1000, 6000, 9000, 20000 } do
        local c = connect(gw)
        -- the first request (large: the buffer grows) is answered, the second waits behind it
        assert(c:send(get_req("/query/one", "X-Pad: " .. ("a"):rep(9000) .. "\r\n") ..
          get_req("/query/doze", "If-None-Match: " .. etag .. "\r\n")))
        assert.same({ one = 1 }, assert(read_response(c)).json)
        H.sleep(0.1) -- the second is waiting on the database now
        assert(c:send(get_req("/query/echo_int?i=3", "X-Pad: " .. ("p"):rep(pad) .. "\r\n")))
        local r = assert(read_response(c))
        assert.equal(304, r.status, "pad " .. pad)
        r = assert(read_response(c))
        assert.same({ i = 3 }, r.json)
        c:close()
      end
    end)

    it("a client that half-closes after its request gets an answer that comes within half a second", function()
      local c = connect(gw)
      assert(c:send(get_req("/query/doze")))
      assert(c:shutdown("send"))
      local r = assert(read_response(c))
      assert.equal(200, r.status)
      assert.same({ x = 1 }, r.json)
      assert.is_true(select(2, read_to_close(c, 5)))
      c:close()
    end)

    it("a half-close seen while a request waits longer counts as leaving: the statement is cancelled", function()
      local c = connect(gw)
      local t0 = socket.gettime()
      assert(c:send(get_req("/query/nap")))
      assert(c:shutdown("send"))
      local r = assert(read_response(c))
      assert_json_error(503, "unavailable", r)
      c:close()
      local still = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND state = 'active'" ..
        " AND pid <> pg_backend_pid()"
      assert.truthy(H.wait_for(function() return H.psql1(db, still) == "0" end, 0.6))
      assert.is_true(socket.gettime() - t0 < 2.5, "cancelled before the statement would have ended")
    end)

    it("clients that leave while their requests wait do not disturb the others", function()
      local gone = {}
      for i = 1, 20 do
        gone[i] = connect(gw)
        assert(gone[i]:send(get_req("/query/doze")))
      end
      H.sleep(0.05)
      for i = 1, 20 do
        if i % 2 == 0 then gone[i]:setoption("linger", { on = true, timeout = 0 }) end -- a reset
        gone[i]:close()
      end
      local c = connect(gw)
      for i = 1, 5 do
        assert(c:send(get_req("/query/echo_int?i=" .. i)))
        local r = assert(read_response(c))
        assert.same({ i = i }, r.json)
      end
      c:close()
    end)

    it("10 000 connections opened and dropped: the gateway serves, fds and RSS return", function()
      for _ = 1, 20 do H.assert_ok(gw:get_json("/query/one")) end
      local fds0, rss0 = fd_count(gw.pid), rss_kb(gw.pid)
      local partial = {
        "",                                                               -- connect, close
        "GET /query/one HTTP/1.1\r\nHost: x\r\nUser-Ag",                  -- half a head
        "POST /query/echo_int HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" ..
        "Content-Length: 100\r\n\r\n{\"i\":",                             -- half a body
        "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n",                   -- whole, never read
      }
      local n = 0
      for _ = 1, 20 do -- batches of 500 open at once
        local socks = {}
        for i = 1, 500 do
          local c = connect(gw)
          local data = partial[i % #partial + 1]
          if data ~= "" then c:send(data) end
          socks[#socks + 1] = c
          n = n + 1
        end
        for _, c in ipairs(socks) do c:close() end
      end
      assert.equal(10000, n)
      assert(gw:alive(), "the gateway died; log:\n" .. gw:log())
      H.assert_ok(gw:get_json("/query/one"))
      local deadline, fds = H.now() + 15, nil
      repeat
        fds = fd_count(gw.pid)
        if fds <= fds0 + 2 then break end
        H.sleep(0.2)
      until H.now() > deadline
      assert(fds <= fds0 + 2, ("open fds: %d before, %d after"):format(fds0, fds))
      -- under valgrind (make valgrind) the RSS is memcheck's, shadow memory included, and under
      -- ASan (make asan) freed memory waits in a 256 MB quarantine: their leak checks at exit are
      -- the measure there
      local sanitized = H.wrapper or os.getenv("ASAN_OPTIONS")
      local rss, margin = rss_kb(gw.pid), (sanitized and 320 or 8) * 1024
      assert(rss <= rss0 + margin, ("RSS grew from %d kB to %d kB"):format(rss0, rss))
    end)
  end)

  -- Header limits and client_timeout, on a gateway of their own.
  describe("header limits and slow clients", function()
    local gwt

    setup(function()
      gwt = H.start { dsn = db, scripts = scripts, pool = { pool_size = 2, max_overflow = 0 },
        config = { workers = 1, max_header_bytes = 4096, max_headers = 20, client_timeout = 2, http2 = true } }
    end)

    after_each(function()
      assert(gwt:alive(), "the gateway died; log:\n" .. gwt:log())
      H.assert_ok(gwt:get_json("/query/one"))
    end)

    local function with_headers(n, size)
      local t = {}
      for i = 1, n do t[#t + 1] = ("X-H%d: %s\r\n"):format(i, ("v"):rep(size)) end
      return get_req("/query/one", table.concat(t) .. "Connection: close\r\n")
    end

    it("more headers than max_headers → 431 too_large", function()
      local g = gwt
      local r = exchange(g, with_headers(10, 10))
      assert.equal(200, r.status)
      local e = assert_json_error(431, "too_large", (exchange(g, with_headers(30, 10))))
      assert.truthy(e.message:match("max_headers"), e.message)
      -- past h2o's own count (100) it may answer its plain 400 or close; it must not serve it
      local c = connect(g)
      assert(c:send(with_headers(150, 10)))
      local got, closed = read_to_close(c, 5)
      c:close()
      local status = tonumber(got:match("^HTTP/1%.1 (%d%d%d)"))
      assert(closed and (got == "" or status == 400 or status == 431), "got: " .. got)
    end)

    it("more header bytes than max_header_bytes → 431 too_large", function()
      local g = gwt
      assert.equal(200, (exchange(g, with_headers(1, 3000))).status)
      local e = assert_json_error(431, "too_large", (exchange(g, with_headers(1, 5000))))
      assert.truthy(e.message:match("max_header_bytes"), e.message)
      assert_json_error(431, "too_large", (exchange(g, with_headers(10, 500))))
      assert_json_error(431, "too_large", (exchange(g, with_headers(1, 100000))))
    end)

    it("over HTTP/2 (h2c prior knowledge) the same limits hold", function()
      local g = gwt
      local out = os.tmpname()
      local function curl_h2(args)
        local w = H.must("curl -s --http2-prior-knowledge --max-time 10 -o " .. H.q(out) ..
          " -w '%{http_code} %{http_version} %{content_type}' " .. args .. " " .. H.q(g.base .. "/query/one"))
        local code, version, ct = w:match("(%d+) (%S+) ?(.*)")
        local raw = H.readfile(out) or ""
        return tonumber(code), version, raw, { ["content-type"] = ct }
      end
      local many = {}
      for i = 1, 30 do many[#many + 1] = "-H " .. H.q(("X-H%d: v"):format(i)) end
      for _, args in ipairs { table.concat(many, " "), "-H " .. H.q("X-Big: " .. ("v"):rep(5000)) } do
        local code, version, raw, hdrs = curl_h2(args)
        assert.equal("2", version)
        H.assert_error(431, "too_large", code, H.decode(raw), hdrs, raw)
      end
      local code, version = curl_h2("-H " .. H.q("X-Fine: v"))
      assert.equal("2", version)
      assert.equal(200, code)
      os.remove(out)
    end)

    it("slowloris: slow heads are closed after client_timeout while others are served", function()
      local g = gwt
      local socks, opened, closed_at = {}, {}, {}
      for i = 1, 50 do
        local c = connect(g)
        assert(c:send("GET /query/one HTTP/1.1\r\nHost: x\r\n"))
        c:settimeout(0)
        socks[i], opened[c] = c, H.now()
      end
      local t0 = H.now()
      local open = {}
      for i = 1, 50 do open[i] = socks[i] end
      local next_byte, served, latencies = t0 + 1, 0, {}
      while #open > 0 and H.now() < t0 + 10 do
        local readable = socket.select(open, nil, 0.1)
        for _, c in ipairs(readable) do
          local _, err = c:receive(4096)
          if err and err ~= "timeout" then closed_at[c] = H.now() end
        end
        for i = #open, 1, -1 do
          if closed_at[open[i]] then open[i]:close(); table.remove(open, i) end
        end
        if H.now() >= next_byte then
          for _, c in ipairs(open) do c:send("X") end -- one more header byte each second
          next_byte = next_byte + 1
        end
        if served < 5 and H.now() - t0 < 1.5 then
          local s0 = H.now()
          H.assert_ok(g:get_json("/query/one", nil, 5))
          latencies[#latencies + 1] = H.now() - s0
          served = served + 1
        end
      end
      for _, c in ipairs(open) do c:close() end
      assert.equal(0, #open, ("%d of 50 slow connections still open after 10 s"):format(#open))
      for _, c in ipairs(socks) do
        local took = closed_at[c] - opened[c]
        assert(took >= 1.5 and took <= 6, ("a slow connection was closed after %.2f s (client_timeout = 2)"):format(took))
      end
      assert.equal(5, served)
      for _, l in ipairs(latencies) do assert(l < 1.5, ("a normal request took %.2f s"):format(l)) end
    end)

    it("a body that trickles in is cut off after client_timeout", function()
      local g = gwt
      local c = connect(g)
      local t0 = H.now()
      assert(c:send("POST /query/echo_int HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" ..
        "Content-Length: 50\r\n\r\n{"))
      local took, data = drip(c, t0, " ", 10)
      c:close()
      assert(took, "the slow body was never cut off")
      assert(took >= 1.5 and took <= 6, ("cut off after %.2f s (client_timeout = 2)"):format(took))
      local status = tonumber(data:match("^HTTP/1%.1 (%d%d%d)"))
      assert(data == "" or (status and status >= 400 and status < 500), "unexpected answer: " .. data)
    end)

    it("an idle keep-alive connection is closed after client_timeout", function()
      local g = gwt
      local r, c = exchange(g, get_req("/query/one"))
      local t0 = H.now()
      assert.equal(200, r.status)
      local rest, closed = read_to_close(c, 8)
      local took = H.now() - t0
      c:close()
      assert.is_true(closed, "the idle connection stayed open 8 s")
      assert.equal("", rest)
      assert(took >= 1.5 and took <= 6, ("closed after %.2f s idle (client_timeout = 2)"):format(took))
    end)

    it("a request that waits on the database longer than client_timeout is still answered", function()
      local g = gwt
      local r, c = exchange(g, get_req("/query/nap", "Connection: close\r\n"))
      c:close()
      assert.equal(200, r.status)
      assert.same({ x = 1 }, r.json)
    end)
  end)
end)
