-- accesslog_spec.lua — the access log through the real binary: one JSON line per request, on by
-- default, with time, request and trace id, method, path (no query string), status, bytes,
-- duration, endpoint, pool, remote address and subject; h2o's own errors and preflights too;
-- whole lines under concurrency from two workers; the last lines written when the gateway stops;
-- log.access = false (or SLUICE_LOG_ACCESS=false) turns it off.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local TOKEN = "access-log-token-1"
local TOKENS = { "other", TOKEN }

local scripts = {
  ["a.lua"] = [==[
sluice.query "one" { readonly = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "echo" { readonly = true, sql = [[ SELECT :v::text AS v ]] }
sluice.query "secret_one" { readonly = true, auth = "bearer", sql = [[ SELECT 1 AS one ]] }
sluice.endpoint "hello" { route = "GET /hello", handler = function(req) return 200, { hi = true } end }
sluice.bulk "kv" { table = "kv", columns = { "k", "v" } }
]==],
}

local function access_lines(gw)
  local out = {}
  for line in gw:log():gmatch("[^\n]+") do
    if line:find('"msg":"access"', 1, true) then
      local v = H.decode(line)
      assert(v, "not JSON: " .. line)
      out[#out + 1] = v
    end
  end
  return out
end

local function line_for(gw, id)
  local found
  H.wait_for(function()
    for _, l in ipairs(access_lines(gw)) do if l.request_id == id then found = l end end
    return found ~= nil
  end, 5)
  return found
end

describe("access log", function()
  local db

  setup(function()
    db = H.createdb("alog")
    H.psql(db, "CREATE TABLE kv (k text PRIMARY KEY, v text)")
  end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("one JSON line per request with every field", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { tokens = TOKENS } }
    local tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert.equal(200, (gw:get("/query/echo?v=secret-value", { ["X-Request-Id"] = "al-1", traceparent = tp })))
    local l = line_for(gw, "al-1")
    assert.equal("info", l.level)
    assert.truthy(l.ts:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), l.ts)
    assert.equal("0af7651916cd43dd8448eb211c80319c", l.trace_id)
    assert.equal("GET", l.method)
    assert.equal("/query/echo", l.path) -- the query string stays out
    assert.equal(200, l.status)
    assert.equal(#'{"rows":[{"v":"secret-value"}],"row_count":1}', l.bytes)
    assert.truthy(l.duration_us >= 0 and l.duration_us < 5e6, l.duration_us)
    assert.equal("query/echo", l.endpoint)
    assert.equal("primary", l.pool)
    assert.truthy(l.remote:match("^127%.0%.0%.1:%d+$"), l.remote)
    assert.is_nil(l.subject)
    assert.falsy(gw:log():find("secret-value", 1, true))

    -- the subject: a bearer token by its place in the list, never its value
    assert.equal(200, (gw:get("/query/secret_one", { Authorization = "Bearer " .. TOKEN, ["X-Request-Id"] = "al-2" })))
    l = line_for(gw, "al-2")
    assert.equal("token:2", l.subject)
    assert.falsy(gw:log():find(TOKEN, 1, true))
    -- a handler, an error, a 404, health
    gw:get("/hello", { ["X-Request-Id"] = "al-3" })
    assert.equal("handler/hello", line_for(gw, "al-3").endpoint)
    gw:get("/query/secret_one", { ["X-Request-Id"] = "al-4" })
    assert.equal(401, line_for(gw, "al-4").status)
    gw:get("/nope", { ["X-Request-Id"] = "al-5" })
    assert.equal(404, line_for(gw, "al-5").status)
    gw:get("/health", { ["X-Request-Id"] = "al-6" })
    assert.equal("/health", line_for(gw, "al-6").path)
    -- a bulk load, a batch and a stream name their endpoint and pool
    gw:post("/bulk/kv", "k,v\na,b\n", { ["Content-Type"] = "text/csv", ["X-Request-Id"] = "al-7" })
    l = line_for(gw, "al-7")
    assert.same({ "bulk/kv", "primary", 200 }, { l.endpoint, l.pool, l.status })
    gw:post("/batch", '[{"query":"one"}]', { ["X-Request-Id"] = "al-8" })
    assert.equal("batch", line_for(gw, "al-8").endpoint)
    gw:get("/query/one", { Accept = "text/csv", ["X-Request-Id"] = "al-9" })
    l = line_for(gw, "al-9")
    assert.same({ "query/one", "primary", 200 }, { l.endpoint, l.pool, l.status })
    gw:stop()
  end)

  it("whole lines from two workers under concurrency, the last ones written at stop", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { tokens = TOKENS } }
    local reqs = {}
    for i = 1, 300 do reqs[i] = { path = "/query/one", headers = { ["X-Request-Id"] = "par-" .. i } } end
    for _, r in ipairs(gw:parallel(reqs, { max = 16 })) do assert.equal(200, r.status) end
    -- stop at once: lines still in a worker's batch are written as it stops
    gw:stop()
    local seen, n = {}, 0
    for _, l in ipairs(access_lines(gw)) do -- access_lines asserts every line is JSON
      if l.request_id:find("^par%-") then
        assert.is_nil(seen[l.request_id], "twice: " .. l.request_id)
        seen[l.request_id] = true
        n = n + 1
      end
    end
    assert.equal(300, n)
    local workers = {}
    for _, l in ipairs(access_lines(gw)) do workers[l.worker] = true end
    assert.truthy(workers[0] and workers[1], "both workers logged")
  end)

  it("in log.format = \"text\" the line takes the log's text form", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { tokens = TOKENS, log = { format = "text" } } }
    assert.equal(200, (gw:get("/query/one", { ["X-Request-Id"] = "txt-1" })))
    gw:stop()
    local line = gw:log():match("[^\n]*txt%-1[^\n]*")
    assert.truthy(line, gw:log())
    assert.truthy(line:match("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z info  access {\"request_id\":\"txt%-1\""), line)
    assert.truthy(line:find('"status":200', 1, true), line)
  end)

  it("log.access = false, or SLUICE_LOG_ACCESS=false, turns it off", function()
    for _, opts in ipairs {
      { config = { tokens = TOKENS, log = { access = false } } },
      { config = { tokens = TOKENS }, env = { SLUICE_LOG_ACCESS = "false" } },
    } do
      local gw = H.start { dsn = db, scripts = scripts, config = opts.config, env = opts.env }
      for _ = 1, 5 do assert.equal(200, (gw:get("/query/one"))) end
      H.sleep(0.3)
      gw:stop()
      assert.equal(0, #access_lines(gw))
    end
  end)

  it("a bad log.access stops start-up naming the key", function()
    local g = H.start { dsn = db, wait = false, scripts = scripts, config = { tokens = TOKENS, log = { access = "yes" } } }
    local deadline = H.now() + 10
    while g:exit_code() == nil and H.now() < deadline do H.sleep(0.05) end
    assert.equal(1, g:exit_code())
    assert.truthy(g:log():find("log.access: expected", 1, true), g:log())
  end)
end)
