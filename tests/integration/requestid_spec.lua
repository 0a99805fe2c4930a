-- requestid_spec.lua — X-Request-Id and W3C traceparent through the real binary: a valid id is
-- kept, an invalid or missing one replaced by a generated one; every answer (success, errors of
-- the gateway and of h2o itself, health, metrics, streams, handlers, preflight) echoes it; every
-- error object carries it as "request_id"; log lines about the request carry it, and a valid
-- traceparent's trace id, which the answer's traceparent keeps with a new span id.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local scripts = {
  ["r.lua"] = [==[
sluice.query "one" { readonly = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "series" { readonly = true, sql = [[ SELECT g FROM generate_series(1, :n::int) AS g ]] }
sluice.query "boom" { sql = [[ SELECT (SELECT 1 UNION ALL SELECT 2) AS x ]] }
sluice.endpoint "h" { route = "GET /h", handler = function(req)
  sluice.log.info("handler-marker", { request_id = "forged" })
  local r = sluice.db.query("one", {})
  sluice.log.info("after-wait-marker")
  return 200, r
end }
]==],
}

local TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
local TP = "00-" .. TRACE .. "-00f067aa0ba902b7-01"

describe("request ids", function()
  local db, gw

  setup(function()
    db = H.createdb("reqid")
    gw = H.start { dsn = db, scripts = scripts, config = { log = { access = true } } }
  end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function lines_with(marker)
    local out = {}
    for line in gw:log():gmatch("[^\n]+") do
      if line:find(marker, 1, true) then out[#out + 1] = H.decode(line) or line end
    end
    return out
  end

  it("a valid X-Request-Id is kept and echoed", function()
    local id = "abc-123_X.y:z"
    local s, _, h = gw:get_json("/query/one", { ["X-Request-Id"] = id })
    assert.equal(200, s)
    assert.equal(id, h["x-request-id"])
    local long = string.rep("a", 128)
    s, _, h = gw:get_json("/query/one", { ["X-Request-Id"] = long })
    assert.equal(long, h["x-request-id"])
  end)

  it("a missing or invalid one is replaced by a generated one, different each time", function()
    local seen = {}
    for _, bad in ipairs { false, "", "has space", "semi;colon", string.rep("a", 129), "quote\"d", "ümlaut" } do
      local s, _, h = gw:get_json("/query/one", bad and { ["X-Request-Id"] = bad } or nil)
      assert.equal(200, s)
      local id = h["x-request-id"]
      assert.truthy(id and id:match("^[%w._:-]+$") and #id <= 128, tostring(id))
      assert.not_equal(bad, id)
      assert.is_nil(seen[id], "ids repeat: " .. id)
      seen[id] = true
    end
  end)

  it("every kind of answer carries it", function()
    local paths = { "/query/one", "/query/nope", "/health", "/health/live", "/health/ready", "/metrics",
      "/openapi.json", "/h", "/no/such/path", "/query/boom" }
    for _, p in ipairs(paths) do
      local s, _, h = gw:get(p, { ["X-Request-Id"] = "id-" .. #p })
      assert.truthy(s, p)
      assert.equal("id-" .. #p, h["x-request-id"], p)
    end
    -- a stream
    local out = H.sh(("curl -sS -D - -o /dev/null -H 'Accept: application/x-ndjson' -H 'X-Request-Id: st-1' %s")
      :format(H.q(gw:url("/query/series?n=3"))))
    assert.truthy(out:lower():find("x-request-id: st-1", 1, true), out)
    -- an error h2o answers itself before routing (a Content-Length that is not a number)
    local c = assert(socket.tcp4())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", gw.port))
    c:send("GET /query/one HTTP/1.1\r\nHost: x\r\nX-Request-Id: raw-1\r\nContent-Length: abc\r\n\r\n")
    local data, _, partial = c:receive("*a")
    c:close()
    data = data or partial
    assert.truthy(data:find("^HTTP/1.1 400"), data)
    assert.truthy(data:find("X-Request-Id: raw-1", 1, true), data)
    assert.truthy(data:find('"request_id":"raw-1"', 1, true), data)
  end)

  it("every error object carries request_id", function()
    local s, b, h = gw:get_json("/query/nope", { ["X-Request-Id"] = "err-1" })
    local e = H.assert_error(404, "not_found", s, b, h)
    assert.equal("err-1", e.request_id)
    s, b, h = gw:get_json("/query/boom")
    e = H.assert_error(405, "method_not_allowed", s, b, h)
    assert.equal(h["x-request-id"], e.request_id)
    s, b, h = gw:post_json("/query/boom", {})
    e = H.assert_error(500, "internal", s, b, h)
    assert.equal(h["x-request-id"], e.request_id)
    s, b, h = gw:post_json("/query/one", "{not json", { ["X-Request-Id"] = "err-2" })
    e = H.assert_error(400, "bad_request", s, b, h)
    assert.equal("err-2", e.request_id)
  end)

  it("log lines about the request carry its id and trace id; a script cannot forge them", function()
    local s, _, h = gw:get_json("/h", { ["X-Request-Id"] = "log-1", traceparent = TP })
    assert.equal(200, s)
    H.wait_for(function() return #lines_with("after-wait-marker") > 0 end, 5)
    for _, marker in ipairs { "handler-marker", "after-wait-marker" } do
      local all = lines_with(marker)
      local l = all[#all]
      assert.equal("table", type(l), marker)
      assert.equal("log-1", l.request_id, marker)
      assert.equal(TRACE, l.trace_id, marker)
    end
    local all = lines_with("handler-marker")
    assert.equal("forged", all[#all].field_request_id)
    -- the failed query's error line names the request too
    gw:post_json("/query/boom", {}, { ["X-Request-Id"] = "log-2" })
    H.wait_for(function()
      local l = lines_with("query boom failed")
      return #l > 0 and l[#l].request_id == "log-2"
    end, 5)
    -- and in a batch, pipelined or in a transaction
    for i, path in ipairs { "/batch", "/batch?transaction=true" } do
      gw:post_json(path, { { query = "boom" } }, { ["X-Request-Id"] = "log-batch-" .. i })
      H.wait_for(function()
        local l = lines_with("query boom failed")
        return #l > 0 and l[#l].request_id == "log-batch-" .. i
      end, 5)
    end
  end)

  it("a valid traceparent is answered with the same trace id and a new span id", function()
    local s, _, h = gw:get_json("/query/one", { traceparent = TP })
    assert.equal(200, s)
    local v, trace, span, flags = (h.traceparent or ""):match("^(%x%x)%-(%x+)%-(%x+)%-(%x%x)$")
    assert.equal("00", v)
    assert.equal(TRACE, trace)
    assert.equal(16, #span)
    assert.not_equal("00f067aa0ba902b7", span)
    assert.equal("01", flags)
    -- a later version with more fields is read by its first four
    s, _, h = gw:get_json("/query/one", { traceparent = "01-" .. TRACE .. "-00f067aa0ba902b7-00-extra" })
    assert.truthy((h.traceparent or ""):find(TRACE, 1, true))
  end)

  it("an invalid traceparent is ignored: no traceparent in the answer, the request is served", function()
    local bad = {
      "garbage",
      "00-" .. TRACE .. "-00f067aa0ba902b7",                              -- no flags
      "00-" .. TRACE:upper() .. "-00f067aa0ba902b7-01",                   -- upper-case hex
      "00-" .. string.rep("0", 32) .. "-00f067aa0ba902b7-01",             -- zero trace id
      "00-" .. TRACE .. "-0000000000000000-01",                           -- zero span id
      "ff-" .. TRACE .. "-00f067aa0ba902b7-01",                           -- version ff
      "00-" .. TRACE .. "-00f067aa0ba902b7-01-extra",                     -- version 00 with more
      "0g-" .. TRACE .. "-00f067aa0ba902b7-01",
    }
    for _, tp in ipairs(bad) do
      local s, _, h = gw:get_json("/query/one", { traceparent = tp, ["X-Request-Id"] = "bad-tp" })
      assert.equal(200, s, tp)
      assert.is_nil(h.traceparent, tp)
    end
  end)
end)
