-- handler_answer_spec.lua — what a Lua handler's answer may carry, through the real binary:
-- response headers are checked (a reflected CR LF cannot add a header or split the response; names
-- must be tokens; headers the gateway sets are refused), and the JSON built from the answer's
-- tables, from sluice.db parameters and from log fields is bounded by max_response_bytes, a depth
-- limit and cycle detection: the attacks finish fast with a 500 and the worker keeps serving.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local scripts = {
  ["handlers.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT CAST(:id AS int4) AS id ]] }

sluice.endpoint "ping" { route = "GET /ping", handler = function() return 200, { pong = true } end }

-- reflects a query value into a header, as careless code does
sluice.endpoint "reflect" {
  route = "GET /reflect",
  handler = function(req) return 200, { ok = true }, { ["x-echo"] = req.query.v } end,
}

sluice.endpoint "named" {
  route = "GET /named",
  handler = function(req) return 200, { ok = true }, { [req.query.n] = "1" } end,
}

sluice.endpoint "fine_headers" {
  route = "GET /fine",
  handler = function()
    return 201, { ok = true }, { ["X-Tab"] = "a\tb", ["set-cookie"] = "a=1; Path=/", ["Cache-Control"] = "no-store",
      ["x-number"] = 5 }
  end,
}

-- one 64 KiB string referred to n times
sluice.endpoint "big" {
  route = "GET /big/{n}",
  handler = function(req)
    local s, t = string.rep("x", 65536), {}
    for i = 1, tonumber(req.path.n) do t[i] = s end
    return 200, t
  end,
}

-- one string referred to 2^n times through shared tables
sluice.endpoint "shared" {
  route = "GET /shared/{n}",
  handler = function(req)
    local t = { "leaf" }
    for _ = 1, tonumber(req.path.n) do t = { t, t } end
    return 200, t
  end,
}

sluice.endpoint "deep" {
  route = "GET /deep/{n}",
  handler = function(req)
    local t = "bottom"
    for _ = 1, tonumber(req.path.n) do t = { t } end
    return 200, t
  end,
}

sluice.endpoint "cycle" {
  route = "GET /cycle",
  handler = function()
    local t = { name = "loop" }
    t.self = t
    return 200, t
  end,
}

sluice.endpoint "params_cycle" {
  route = "GET /params/cycle",
  handler = function()
    local p = {}
    p.id = p
    return 200, sluice.db.query("one", p)
  end,
}

sluice.endpoint "params_shared" {
  route = "GET /params/shared",
  handler = function()
    local t = { 1 }
    for _ = 1, 30 do t = { t, t } end
    return 200, sluice.db.query("one", { id = t })
  end,
}

sluice.endpoint "params_fine" {
  route = "GET /params/fine",
  handler = function() return 200, sluice.db.query("one", { id = 7 }) end,
}

sluice.endpoint "log_fields" {
  route = "GET /log",
  handler = function()
    local s, wide = string.rep("y", 1024), {}
    for i = 1, 100 do wide[i] = s end
    sluice.log.info("big fields", { wide = wide })
    local c = {}
    c.c = c
    sluice.log.info("cyclic fields", { c = c })
    return 200, { logged = true }
  end,
}
]==],
}

-- The log lines of gw that contain s (plain text).
local function log_has(gw, s)
  return gw:log():find(s, 1, true) ~= nil
end

-- The values of header name (lower-case) in a list from H.raw_request.
local function header_values(lines, name)
  local out = {}
  for _, l in ipairs(lines) do
    if l[1] == name then out[#out + 1] = l[2] end
  end
  return out
end

local function assert_internal(gw, path, max_secs)
  local t0 = H.now()
  local s, b, h, raw = gw:get_json(path)
  local e = H.assert_error(500, "internal", s, b, h, raw)
  local took = H.now() - t0
  assert(took < H.scaled(max_secs or 3), ("%s took %.2f s"):format(path, took))
  return e
end

local function assert_serving(gw)
  local s, b, h, raw = gw:get_json("/ping")
  H.assert_ok(s, b, h, raw)
  assert.same({ pong = true }, b)
end

describe("a handler's answer", function()
  local db, gw

  setup(function()
    db = H.createdb("answer")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 1, max_response_bytes = 1024 * 1024 } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  describe("headers", function()
    it("a reflected CR LF adds no header and does not split the response: 500, logged", function()
      local s, lines, body, head = H.raw_request(gw.port, "GET", "/reflect?v=a%0d%0aSet-Cookie:%20evil=1")
      assert.equal(500, s, head)
      assert.same({}, header_values(lines, "set-cookie"), head)
      assert.same({}, header_values(lines, "x-echo"), head)
      assert.is_nil(head:find("evil", 1, true), head)
      local e = H.decode(body).error
      assert.equal("internal", e.code)
      assert.is_nil(e.message:find("evil", 1, true))
      assert.truthy(log_has(gw, 'handler reflect: response header \\"x-echo\\" has a control character'), gw:log())
      assert_serving(gw)
    end)

    it("refuses CR, LF, NUL, other controls and DEL in a value; allows HTAB", function()
      for _, v in ipairs { "a%0ab", "a%0db", "a%00b", "a%01b", "a%1bb", "a%7fb" } do
        local s, lines, _, head = H.raw_request(gw.port, "GET", "/reflect?v=" .. v)
        assert.equal(500, s, v .. ": " .. head)
        assert.same({}, header_values(lines, "x-echo"), head)
      end
      local s, lines, _, head = H.raw_request(gw.port, "GET", "/reflect?v=a%09b%20c%C3%A9")
      assert.equal(200, s, head)
      assert.same({ "a\tb c\xC3\xA9" }, header_values(lines, "x-echo"), head)
    end)

    it("refuses names that are not tokens, and logs them escaped", function()
      for _, n in ipairs { "x%20y", "x:y", "x%0d%0aSet-Cookie", "%3astatus", "x%28" } do
        local s, lines, _, head = H.raw_request(gw.port, "GET", "/named?n=" .. n)
        assert.equal(500, s, n .. ": " .. head)
        assert.same({}, header_values(lines, "set-cookie"), head)
      end
      assert.truthy(log_has(gw, 'response header \\"x\\\\x0d\\\\x0aSet-Cookie\\" is not a valid header name'), gw:log())
    end)

    it("refuses the headers the gateway sets itself, whatever their case", function()
      for _, n in ipairs { "content-length", "Content-Length", "transfer-encoding", "connection", "content-type",
        "date", "server", "keep-alive", "upgrade" } do
        local s, lines, _, head = H.raw_request(gw.port, "GET", "/named?n=" .. n)
        assert.equal(500, s, n .. ": " .. head)
        assert.equal(1, #header_values(lines, "content-length"), head)
        assert.equal(1, #header_values(lines, "content-type"), head)
      end
      assert.truthy(log_has(gw, 'response header \\"Content-Length\\" is set by the gateway itself'), gw:log())
      assert_serving(gw)
    end)

    it("sends valid ones with lower-case names; a non-string value is skipped as before", function()
      local s, lines, body, head = H.raw_request(gw.port, "GET", "/fine")
      assert.equal(201, s, head)
      assert.same({ ok = true }, H.decode(body))
      assert.same({ "a\tb" }, header_values(lines, "x-tab"))
      assert.same({ "a=1; Path=/" }, header_values(lines, "set-cookie"))
      assert.same({ "no-store" }, header_values(lines, "cache-control"))
      assert.same({}, header_values(lines, "x-number"))
      assert.truthy(head:find("\r\nx-tab: ", 1, true), head)
    end)
  end)

  describe("size and depth", function()
    it("a big string referred to many times: 500 at max_response_bytes, fast", function()
      local e = assert_internal(gw, "/big/300")
      assert.truthy(e.message:find("max_response_bytes", 1, true), e.message)
      assert.truthy(log_has(gw, "handler big: the answer is larger than max_response_bytes (1048576)"), gw:log())
      assert_serving(gw)
      local s, b, h, raw = gw:get_json("/big/15") -- 15 x 64 KiB: under 1 MiB
      H.assert_ok(s, b, h, raw)
      assert.equal(15, #b)
      assert.equal(65536, #b[15])
    end)

    it("shared references nested 22 deep: 500, fast; 10 deep is answered", function()
      assert_internal(gw, "/shared/22")
      assert_internal(gw, "/shared/40")
      assert_serving(gw)
      local s, b, h, raw = gw:get_json("/shared/10")
      H.assert_ok(s, b, h, raw)
      assert.equal(2, #b)
    end)

    it("64 levels of tables are answered, 65 are not; a table inside itself is a 500", function()
      local s, b, h, raw = gw:get_json("/deep/64")
      H.assert_ok(s, b, h, raw)
      local e = assert_internal(gw, "/deep/65")
      assert.truthy(e.message:find("deeper than 64", 1, true), e.message)
      e = assert_internal(gw, "/cycle")
      assert.truthy(e.message:find("inside itself", 1, true), e.message)
      assert.truthy(log_has(gw, "handler cycle: the answer holds a table inside itself"), gw:log())
      assert_serving(gw)
    end)

    it("sluice.db parameters are bounded the same way (max_body_bytes for their size)", function()
      local e = assert_internal(gw, "/params/cycle")
      assert.truthy(e.message:find("inside itself", 1, true), e.message)
      e = assert_internal(gw, "/params/shared")
      assert.truthy(e.message:find("max_body_bytes", 1, true), e.message)
      local s, b, h, raw = gw:get_json("/params/fine")
      H.assert_ok(s, b, h, raw)
      assert.same({ id = 7 }, b)
    end)

    it("log fields past 64 KiB are left out of the line, a cycle is cut", function()
      local s, b, h, raw = gw:get_json("/log", nil, H.scaled(5))
      H.assert_ok(s, b, h, raw)
      local log = gw:log()
      assert.truthy(log:find('"msg":"big fields","fields_dropped":"larger than 65536 bytes"', 1, true), log)
      assert.truthy(log:find('"msg":"cyclic fields","c":{"c":{"c":', 1, true), log)
      assert.truthy(log:find('"..."', 1, true), log)
    end)

    it("the process stays small", function()
      if H.wrapper then return end -- the wrapper's own memory is not ours
      local status = H.readfile("/proc/" .. gw.pid .. "/status") or ""
      local hwm = tonumber(status:match("VmHWM:%s*(%d+)"))
      assert(hwm and hwm < 400 * 1024, "peak RSS " .. tostring(hwm) .. " kB")
      assert_serving(gw)
    end)
  end)
end)

describe("max_response_bytes", function()
  local db

  setup(function() db = H.createdb("answer_limit") end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("defaults to 64 MiB: the reported attacks at their sizes are refused, fast", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 } }
    -- a 1 MiB string 300 times (314 MB of JSON) and shared references (470 MB of JSON)
    assert_internal(gw, "/big/4800", 10) -- 4800 x 64 KiB = 300 MiB
    assert_internal(gw, "/shared/26", 10)
    assert_serving(gw)
    gw:stop()
  end)

  it("SLUICE_MAX_RESPONSE_BYTES overrides it", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { workers = 1 },
      env = { SLUICE_MAX_RESPONSE_BYTES = "2048" } }
    assert_internal(gw, "/big/1")
    local s, b, h, raw = gw:get_json("/ping")
    H.assert_ok(s, b, h, raw)
    gw:stop()
  end)
end)
