-- openapi_spec.lua — GET /openapi.json of the example service: valid OpenAPI 3.0 by a real
-- validator (@apidevtools/swagger-parser from npm, run by node; installed once under
-- ${XDG_CACHE_HOME:-$HOME/.cache}/sluice-openapi), a path per endpoint whose parameters are the
-- queries' placeholders, the types the database described, and the example clients of
-- examples/ working from it; and 0 errors from Redocly's linter with its strictest ruleset
-- (@redocly/cli, installed in the same cache). node and npm are required: without them the
-- tests fail.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local VALIDATOR = "@apidevtools/swagger-parser@10.1.1"
local LINTER = "@redocly/cli@2.77.0"
local cache = (os.getenv("XDG_CACHE_HOME") or ((os.getenv("HOME") or "/tmp") .. "/.cache")) .. "/sluice-openapi"

local VALIDATE_JS = [[
const SwaggerParser = require("@apidevtools/swagger-parser");
SwaggerParser.validate(process.argv[2])
  .then((api) => console.log(`valid: ${Object.keys(api.paths).length} paths`))
  .catch((e) => { console.error(`invalid: ${e.message}`); process.exit(1); });
]]

-- The path of validate.js, with the validator installed; errors when node or npm is missing.
local function validator()
  local _, rc = H.sh("command -v node >/dev/null && command -v npm >/dev/null")
  assert(rc == 0, "node and npm are needed to validate /openapi.json (Debian: apt-get install nodejs npm)")
  if not H.readfile(cache .. "/node_modules/@apidevtools/swagger-parser/package.json") then
    H.must(("mkdir -p %s && npm install --prefix %s --no-audit --no-fund --loglevel=error %s")
      :format(H.q(cache), H.q(cache), VALIDATOR))
  end
  if not H.readfile(cache .. "/node_modules/@redocly/cli/package.json") then
    H.must(("npm install --prefix %s --no-audit --no-fund --loglevel=error %s"):format(H.q(cache), LINTER))
  end
  local js = cache .. "/validate.js"
  if H.readfile(js) ~= VALIDATE_JS then H.writefile(js, VALIDATE_JS) end
  return js
end

-- Runs the validator on the document text; returns ok, its output.
local function validate(text, dir)
  local path = dir .. "/openapi-" .. math.random(1e9) .. ".json"
  H.writefile(path, text)
  local out, rc, err = H.sh(("NODE_PATH=%s node %s %s"):format(H.q(cache .. "/node_modules"), H.q(validator()), H.q(path)))
  return rc == 0, out .. err
end

-- Runs `redocly lint --extends=recommended-strict` on the document text; returns ok (no error),
-- its output.
local function lint(text, dir)
  validator() -- installs the linter too
  local path = dir .. "/openapi-" .. math.random(1e9) .. ".json"
  H.writefile(path, text)
  local out, rc, err = H.sh(("cd %s && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true %s lint --extends=recommended-strict --format=stylish %s")
    :format(H.q(dir), H.q(cache .. "/node_modules/.bin/redocly"), H.q(path)))
  return rc == 0, out .. err
end

-- The :name placeholders of sql, as a sorted list (::casts are not placeholders).
local function placeholders(sql)
  local seen, list = {}, {}
  for pre, name in (" " .. sql):gmatch("([^:%w_]):([%a_][%w_]*)") do
    if pre ~= ":" and not seen[name] then seen[name] = true; list[#list + 1] = name end
  end
  table.sort(list)
  return list
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t or {}) do list[#list + 1] = k end
  table.sort(list)
  return list
end

local extra = [==[
-- Every mapped type, as parameter and as result column.
sluice.query "types" {
  sql = [[SELECT :i8::bigint AS i8, :b::boolean AS b, :j::jsonb AS j, :d::date AS d, :u::uuid AS u,
             :a::int[] AS a, :by::bytea AS by, :ts::timestamp AS ts, :f::float8 AS f, :n::numeric AS n]],
  readonly = true,
  single = true,
}
-- A statement without a result set.
sluice.query "touch_account" {
  sql = [[UPDATE accounts SET owner = owner WHERE id = :id]],
}
sluice.endpoint "echo" {
  route = "POST /echo/{word}",
  handler = function(req) return 200, { word = req.path.word } end,
}
-- One endpoint per kind of access control.
sluice.query "guarded" { readonly = true, auth = "bearer", sql = [[SELECT 1 AS one]] }
sluice.endpoint "whoami" { route = "GET /whoami", auth = "jwt", handler = function(req) return 200, {} end }
sluice.query "by_policy" { readonly = true, sql = [[SELECT 1 AS one]], auth = function(req) return true end }
-- NOT NULL and nullable table columns, an expression, and an outer join that can null any column.
sluice.query "order_prices" { readonly = true, sql = [[SELECT id, price, qty * 2 AS twice FROM orders]] }
sluice.query "instrument_orders" {
  readonly = true,
  sql = [[SELECT i.symbol, o.id FROM instruments i LEFT JOIN orders o ON o.pair = i.symbol]],
}
]==]

describe("/openapi.json", function()
  local db, gw, tmp, doc, raw

  setup(function()
    db = H.createdb("openapi")
    H.psql(db, ("ALTER DATABASE %s SET timezone = 'UTC';"):format(H.dsn_dbname(db)))
    tmp = H.tmpdir("sluice-openapi")
    local cfg = tmp .. "/migrate.lua"
    H.write_config(cfg, { pools = { primary = { url = db } }, migrations = H.root .. "/migrations" })
    H.must(("cd %s && %s migrate --config %s up"):format(H.q(tmp), H.q(H.bin), H.q(cfg)))
    H.writefile(tmp .. "/extra.lua", extra)
    gw = H.start { dsn = db, config = {
      admin_token = "tok", protect_metrics = true, tokens = { "t1" }, jwt = { secret = ("s"):rep(32) },
      openapi_license = "Apache-2.0", openapi_license_url = "https://www.apache.org/licenses/LICENSE-2.0",
      scripts = { H.root .. "/lua/endpoints/*.lua", H.root .. "/lua/policy.lua", tmp .. "/extra.lua" },
    } }
    local status, hdrs
    status, raw, hdrs = gw:get("/openapi.json")
    assert(status == 200, "GET /openapi.json: " .. tostring(status) .. " " .. tostring(raw))
    assert.truthy((hdrs["content-type"] or ""):match("^application/json"))
    doc = assert(H.decode(raw))
    if os.getenv("OPENAPI_DUMP") then H.writefile(os.getenv("OPENAPI_DUMP"), raw) end
  end)

  teardown(function()
    H.cleanup()
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
  end)

  it("passes the OpenAPI validator", function()
    assert.equal("3.0.3", doc.openapi)
    local ok, out = validate(raw, tmp)
    assert(ok, "the validator refused the document:\n" .. out)
  end)

  it("has no error under redocly lint --extends=recommended-strict", function()
    local ok, out = lint(raw, tmp)
    assert(ok, "redocly lint found errors:\n" .. out)
  end)

  it("the linter really lints: an operation without a 4xx answer is an error", function()
    local src = tmp .. "/whole.json"
    H.writefile(src, raw)
    local broken = H.must(("node -e %s %s"):format(H.q([[
const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const r = d.paths["/health/live"].get.responses;
for (const k of Object.keys(r)) if (k !== "200") delete r[k];
process.stdout.write(JSON.stringify(d));]]), H.q(src)))
    local ok, out = lint(broken, tmp)
    assert.is_false(ok, out)
    assert.truthy(out:find("operation-4xx-response", 1, true), out)
  end)

  it("the validator really validates: a document without responses is refused", function()
    local broken = raw:gsub('"responses"', '"responsez"', 1)
    local ok, out = validate(broken, tmp)
    assert.is_false(ok, out)
  end)

  it("has a path per named query whose parameters are the query's placeholders", function()
    local s, list = gw:get_json("/admin/queries", { authorization = "Bearer tok" })
    assert.equal(200, s)
    assert.is_true(#list.queries >= 8)
    for _, q in ipairs(list.queries) do
      local want = placeholders(q.sql)
      local item = doc.paths["/query/" .. q.name]
      assert.is_table(item, "no path for query " .. q.name)
      assert.is_table(item.post, q.name)
      assert.equal(q.name, item.post.operationId)
      if q.readonly then
        assert.is_table(item.get, q.name .. " is readonly: GET expected")
        local names = {}
        for _, p in ipairs(item.get.parameters or {}) do
          assert.equal("query", p["in"])
          assert.is_true(p.required)
          names[#names + 1] = p.name
        end
        table.sort(names)
        assert.same(want, names, q.name)
      else
        assert.is_nil(item.get, q.name .. " writes: no GET")
      end
      local params = doc.components.schemas["query." .. q.name .. ".params"]
      if #want == 0 then
        assert.is_nil(item.post.requestBody, q.name)
      else
        assert.same(want, sorted_keys(params.properties), q.name)
        assert.same(want, (function() local r = { unpack(params.required) }; table.sort(r); return r end)())
        local body = item.post.requestBody.content["application/json"].schema
        assert.equal("#/components/schemas/query." .. q.name .. ".params", body.oneOf[1]["$ref"])
        assert.equal("array", body.oneOf[2].type)
        assert.equal(#want, body.oneOf[2].minItems)
      end
    end
  end)

  it("has the route aliases, with path parameters and the rest in the query string or body", function()
    local function names_of(op)
      local path, rest = {}, {}
      for _, p in ipairs(op.parameters or {}) do
        if p["in"] == "path" then path[#path + 1] = p.name else rest[#rest + 1] = p.name end
      end
      local body = op.requestBody and op.requestBody.content["application/json"].schema
      if body and body["$ref"] then body = doc.components.schemas[body["$ref"]:match("[^/]+$")] end
      for k in pairs(body and body.properties or {}) do rest[#rest + 1] = k end
      table.sort(path)
      table.sort(rest)
      return path, rest
    end
    local aliases = {
      { "/quotes/{pair}", "get", "latest_quote_route", { "pair" }, {} },
      { "/quotes/{pair}/range", "get", "quotes_range_route", { "pair" }, { "from", "limit", "to" } },
      { "/instruments", "get", "instruments_route", {}, {} },
      { "/orders", "post", "place_order_route", {}, { "account", "pair", "price", "qty", "side" } },
      { "/accounts/{account}/orders", "get", "orders_by_account_route", { "account" }, {} },
      { "/orders/{id}/cancel", "post", "cancel_order_route", { "id" }, {} },
    }
    for _, a in ipairs(aliases) do
      local item = doc.paths[a[1]]
      assert.is_table(item, a[1])
      local op = item[a[2]]
      assert.is_table(op, a[2] .. " " .. a[1])
      assert.equal(a[3], op.operationId)
      local path, rest = names_of(op)
      assert.same(a[4], path, a[1])
      assert.same(a[5], rest, a[1])
    end
  end)

  it("has the bulk endpoint, the handler and the fixed paths", function()
    local bulk = doc.paths["/bulk/ticks"].post
    for _, ct in ipairs { "application/json", "application/x-ndjson", "text/csv" } do
      assert.is_table(bulk.requestBody.content[ct], ct)
    end
    local row = doc.components.schemas["bulk.ticks.row"]
    assert.same({ "pair", "bid", "ask", "ts" }, row.required)
    assert.equal("date-time", row.properties.ts.format)
    assert.equal("#/components/schemas/BulkResult", bulk.responses["200"].content["application/json"].schema["$ref"])

    local echo = doc.paths["/echo/{word}"].post
    assert.equal("echo", echo.operationId)
    assert.same({ "handlers" }, echo.tags)
    assert.equal("word", echo.parameters[1].name)
    assert.equal("path", echo.parameters[1]["in"])

    for _, p in ipairs { "/batch", "/health", "/health/live", "/health/ready", "/metrics", "/openapi.json" } do
      assert.is_table(doc.paths[p], p)
    end
    assert.is_table(doc.paths["/metrics"].get.responses["200"].content["text/plain; version=0.0.4"])
    local admin = doc.paths["/admin/queries"].get
    assert.same({ { admin = {} } }, admin.security)
    assert.equal("bearer", doc.components.securitySchemes.admin.scheme)
  end)

  it("names the credential each endpoint needs, with its 401 and 403", function()
    local schemes = doc.components.securitySchemes
    local guarded = doc.paths["/query/guarded"]
    for _, op in ipairs { guarded.get, guarded.post } do
      assert.same({ { bearer = {} } }, op.security)
      assert.is_table(op.responses["401"])
      assert.is_table(op.responses["403"])
    end
    assert.same({ type = "http", scheme = "bearer" }, schemes.bearer)
    assert.same({ { jwt = {} } }, doc.paths["/whoami"].get.security)
    assert.same({ type = "http", scheme = "bearer", bearerFormat = "JWT" }, schemes.jwt)
    -- a Lua policy names no scheme, but may refuse
    local policy = doc.paths["/query/by_policy"].get
    assert.is_nil(policy.security)
    assert.is_table(policy.responses["403"])
    -- protect_metrics: /metrics and /health need the admin token; the probes do not
    assert.same({ { admin = {} } }, doc.paths["/metrics"].get.security)
    assert.same({ { admin = {} } }, doc.paths["/health"].get.security)
    assert.is_nil(doc.paths["/health/live"].get.security)
    assert.is_nil(doc.paths["/query/latest_quote"].post.security)
    assert.same({}, doc.security)
  end)

  it("types parameters and result columns as the database described them", function()
    local s = doc.components.schemas
    local row = s["query.latest_quote.row"]
    assert.same({ "pair", "bid", "ask", "ts" }, row.required)
    assert.equal("string", row.properties.pair.type)
    assert.equal("numeric", row.properties.bid["x-pg-type"])
    assert.equal("number", row.properties.bid.anyOf[1].type)
    assert.equal("string", row.properties.bid.anyOf[2].type)
    assert.equal("date-time", row.properties.ts.format)

    local range = doc.paths["/query/quotes_range"].get.parameters
    local by = {}
    for _, p in ipairs(range) do by[p.name] = p.schema end
    assert.equal("date-time", by.from.format)
    assert.equal("integer", by.limit.type)

    local t = s["query.types.row"].properties
    assert.equal("bigint", t.i8["x-pg-type"])
    assert.equal("integer", t.i8.anyOf[1].type)
    assert.equal("boolean", t.b.type)
    assert.is_nil(t.j.type)                    -- any JSON value
    assert.equal("jsonb", t.j["x-pg-type"])
    assert.equal("date", t.d.format)
    assert.equal("uuid", t.u.format)
    assert.equal("array", t.a.type)
    assert.equal("integer", t.a.items.type)
    assert.equal("byte", t.by.format)
    assert.equal("timestamp", t.ts["x-pg-type"])
    assert.is_nil(t.ts.format)                 -- no offset: not an RFC 3339 date-time
    assert.same({ "NaN", "Infinity", "-Infinity" }, t.f.anyOf[2].enum)
    local p = s["query.types.params"].properties
    assert.equal("array", p.a.type)
    assert.equal("boolean", p.b.type)
    assert.is_true(p.b.nullable)
    local get = {}
    for _, q in ipairs(doc.paths["/query/types"].get.parameters) do get[q.name] = q.schema end
    assert.equal("string", get.a.type)         -- an array literal in the query string
    assert.equal("string", get.j.type)         -- JSON text in the query string
  end)

  it("describes the responses: rows or the single row, 404 for single, the shared error shape", function()
    local lq = doc.paths["/query/latest_quote"].get.responses
    assert.equal("#/components/schemas/query.latest_quote.row", lq["200"].content["application/json"].schema["$ref"])
    assert.equal("#/components/responses/not_found", lq["404"]["$ref"])
    local inst = doc.paths["/query/instruments"].post.responses
    assert.equal("#/components/schemas/query.instruments.result", inst["200"].content["application/json"].schema["$ref"])
    assert.equal("#/components/responses/unsupported_media_type", inst["415"]["$ref"])
    assert.is_nil(inst["404"])
    local result = doc.components.schemas["query.instruments.result"]
    assert.same({ "rows", "row_count" }, result.required)
    assert.equal("#/components/schemas/query.instruments.row", result.properties.rows.items["$ref"])
    local touch = doc.components.schemas["query.touch_account.result"]
    assert.equal(0, touch.properties.rows.maxItems)

    local responses = doc.components.responses
    for status, code in pairs { ["400"] = "bad_request", ["409"] = "conflict", ["503"] = "unavailable",
      ["504"] = "timeout", ["500"] = "internal", ["413"] = "too_large" } do
      assert.is_table(responses[code], status)
      assert.equal("#/components/schemas/Error", responses[code].content["application/json"].schema["$ref"])
    end
    assert.is_table(responses.unavailable.headers["Retry-After"])
    local err = doc.components.schemas.Error.properties.error
    assert.same({ "code", "message" }, err.required)
    -- the error a client really gets has that shape
    local s, body = gw:get_json("/query/latest_quote?pair=NOPE")
    assert.equal(404, s)
    assert.equal("not_found", body.error.code)
    local known = false
    for _, c in ipairs(err.properties.code.enum) do known = known or c == body.error.code end
    assert.is_true(known)
  end)

  it("marks result columns NOT NULL in their table as not nullable", function()
    local s = doc.components.schemas
    local lq = s["query.latest_quote.row"].properties
    assert.is_nil(lq.pair.nullable)                 -- text NOT NULL
    assert.is_nil(lq.ts.nullable)                   -- timestamptz NOT NULL
    assert.is_nil(lq.bid.anyOf[1].nullable)         -- numeric NOT NULL: neither branch
    assert.is_nil(lq.bid.anyOf[2].nullable)
    local op = s["query.order_prices.row"].properties
    assert.is_nil(op.id.anyOf[1].nullable)          -- the primary key
    assert.is_true(op.price.anyOf[1].nullable)      -- price is nullable
    assert.is_true(op.twice.anyOf[1].nullable)      -- an expression
    local io = s["query.instrument_orders.row"].properties
    assert.is_true(io.symbol.nullable)              -- an outer join: every column may be NULL
    assert.is_true(io.id.anyOf[1].nullable)
    -- the answer agrees: a NOT NULL column is never null
    local status, body = gw:get_json("/query/latest_quote?pair=EURUSD")
    assert.equal(200, status)
    for k in pairs(lq) do assert.is_not_nil(body[k], k) end
  end)

  it("types /batch item params as an object or an array with items", function()
    local item = doc.paths["/batch"].post.requestBody.content["application/json"].schema.items
    local params = item.properties.params.oneOf
    assert.equal("object", params[1].type)
    assert.is_true(params[1].additionalProperties)
    assert.equal("array", params[2].type)
    assert.is_table(params[2].items)
    assert.same({ "query" }, item.required)
  end)

  it("lists every field of the error object, and the answers send no other", function()
    local props = doc.components.schemas.Error.properties.error.properties
    for _, f in ipairs { "code", "message", "query", "sqlstate", "param", "request_id", "index", "outcome",
      "bulk", "row", "column", "committed_chunks", "rows_committed" } do
      assert.is_table(props[f], f)
      assert.is_string(props[f].type, f)
    end
    assert.same({ "unknown" }, props.outcome.enum)
    -- errors of several endpoints: each field they carry is in the schema
    local answers = {
      { gw:get_json("/query/latest_quote?pair=NOPE") },
      { gw:get_json("/query/latest_quote") },
      { gw:post_json("/batch?transaction=true", { { query = "latest_quote", params = { pair = "EURUSD" } },
        { query = "latest_quote", params = { pair = "NOPE" } } }) },
      { gw:post("/bulk/ticks", "pair,bid,ask,ts\nEURUSD,x,1,2024-01-01T00:00:00Z\n", { ["content-type"] = "text/csv" }) },
      { gw:get_json("/nowhere") },
    }
    local seen = {}
    for i, a in ipairs(answers) do
      local body = type(a[2]) == "string" and H.decode(a[2]) or a[2]
      assert.is_true(a[1] >= 400, i)
      assert.is_table(body.error, i)
      for k in pairs(body.error) do
        assert.is_table(props[k], ("answer %d sends %s, which the schema does not list"):format(i, k))
        seen[k] = true
      end
    end
    assert.is_true(seen.index and seen.row and seen.column and seen.bulk and true or false)
  end)

  it("lists the 4xx answers of every operation, and a license", function()
    local n = 0
    for path, item in pairs(doc.paths) do
      for method, op in pairs(item) do
        n = n + 1
        local r = op.responses
        for _, st in ipairs { "400", "413", "414", "431" } do
          assert.is_table(r[st], method .. " " .. path .. " " .. st)
        end
        if method ~= "get" then assert.is_table(r["415"], method .. " " .. path) end
      end
    end
    assert.is_true(n > 20)
    assert.equal("#/components/responses/too_large", doc.paths["/query/instruments"].get.responses["431"]["$ref"])
    assert.is_table(doc.paths["/query/instruments"].get.responses["503"])
    assert.equal("#/components/responses/unavailable", doc.paths["/health/ready"].get.responses["503"]["$ref"])
    assert.same({ name = "Apache-2.0", url = "https://www.apache.org/licenses/LICENSE-2.0" }, doc.info.license)
  end)

  it("answers 405 to POST", function()
    H.assert_error(405, "method_not_allowed", gw:post_json("/openapi.json", {}))
  end)

  it("the Python example client works from the document", function()
    local _, rc = H.sh("command -v python3 >/dev/null")
    assert(rc == 0, "python3 is needed to run examples/python_client.py")
    local out = H.must(("python3 %s %s"):format(H.q(H.root .. "/examples/python_client.py"), H.q(gw.base)))
    assert.truthy(out:find("instruments: AUDUSD, EURUSD, GBPUSD, USDJPY", 1, true), out)
    assert.truthy(out:find("EURUSD: bid 1.082 ask 1.0821", 1, true), out)
    assert.truthy(out:find("quotes_range: 5 rows", 1, true), out)
    assert.truthy(out:match("cancelled order %d+: status cancelled"), out)
    assert.truthy(out:find("cancel again: 404 not_found", 1, true), out)
  end)

  it("the Node example client works from the document", function()
    validator() -- node is there
    local out = H.must(("node %s %s"):format(H.q(H.root .. "/examples/node_client.mjs"), H.q(gw.base)))
    assert.truthy(out:find("instruments: AUDUSD, EURUSD, GBPUSD, USDJPY", 1, true), out)
    assert.truthy(out:find("EURUSD: bid 1.082 ask 1.0821", 1, true), out)
    assert.truthy(out:match("placed order %d+: sell 2000 EURUSD at 1.0821"), out)
    assert.truthy(out:match("cancelled order %d+: status cancelled"), out)
    assert.truthy(out:find("cancel again: 404 not_found", 1, true), out)
  end)

  describe("when the database is down at start-up", function()
    it("still serves a valid document, with the types left open", function()
      local port = H.free_port() -- nothing listens there
      local gw2 = H.start { dsn = ("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=1"):format(port),
        scripts = { ["q.lua"] = [[sluice.query "by_id" { sql = "SELECT id FROM t WHERE id = :id", readonly = true }]] } }
      local s, text = gw2:get("/openapi.json")
      assert.equal(200, s)
      local ok, out = validate(text, tmp)
      assert(ok, out)
      local d = H.decode(text)
      local p = d.paths["/query/by_id"].get.parameters[1]
      assert.equal("id", p.name)
      assert.equal("string", p.schema.type)
      assert.truthy(p.schema.description:find("not known", 1, true))
      assert.is_true(d.components.schemas["query.by_id.row"].additionalProperties)
      assert.same({ name = "Proprietary" }, d.info.license) -- openapi_license unset
      assert.truthy(gw2:log():find("describe", 1, true), gw2:log())
      gw2:stop()
    end)
  end)
end)
