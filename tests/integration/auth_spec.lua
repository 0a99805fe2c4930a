-- auth_spec.lua — per-endpoint access control through the real binary: auth = "bearer", "jwt" and
-- function(req) on queries, route aliases, /batch, bulk and handlers; protect_metrics on /metrics
-- and /health; 401/403 bodies per docs/http-api.md; no token or secret in the log.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local SECRET, AUDIENCE = "jwt-s3cret-for-tests-0123456789abcdef", "sluice-test"
local ENV_SECRET = "env-secret-0123456789abcdef0123456789"

local scripts = {
  ["auth.lua"] = [==[
sluice.query "open" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "tok" { readonly = true, single = true, auth = "bearer", route = "GET /tok",
  sql = [[ SELECT 2 AS two ]] }
sluice.query "jwtq" { readonly = true, single = true, auth = "jwt", sql = [[ SELECT 3 AS three ]] }
sluice.query "pol" { readonly = true, single = true, sql = [[ SELECT 4 AS four ]],
  auth = function(req)
    local role = req.headers["x-role"]
    if role == nil then return false, 401 end
    return role == "admin" and req.endpoint == "pol" and req.method == "GET" and req.path == "/query/pol"
  end }
sluice.query "spin" { readonly = true, sql = [[ SELECT 1 AS x ]], auth = function(req) while true do end end }
sluice.query "boom" { readonly = true, sql = [[ SELECT 1 AS x ]], auth = function(req) error("policy bug") end }
sluice.query "pcall_spin" { readonly = true, sql = [[ SELECT 1 AS x ]],
  auth = function(req) while true do pcall(function() while true do end end) end end }
sluice.query "pcall_allow" { readonly = true, sql = [[ SELECT 1 AS x ]],
  auth = function(req)
    local ok = pcall(function() while true do end end)
    local ok2 = xpcall(function() while true do end end, function(e) return e end)
    local ok3 = coroutine.resume(coroutine.create(function() while true do end end))
    return true
  end }
sluice.bulk "items" { table = "items", columns = { "id" }, auth = "bearer" }
sluice.endpoint "hello" { route = "GET /hello", auth = "jwt", handler = function(req) return 200, { hi = true } end }
sluice.endpoint "hpol" { route = "GET /hpol", auth = function(req) return req.query.key == "open" end,
  handler = function(req) return 200, { ok = true } end }
]==],
}

local function b64url(s) return (H.base64(s):gsub("%+", "-"):gsub("/", "_"):gsub("=", "")) end

local function hmac(key, data)
  local dir = H.tmpdir("sluice-jwt")
  H.writefile(dir .. "/d", data)
  local mac = H.must("openssl dgst -sha256 -hmac " .. H.q(key) .. " -binary < " .. H.q(dir .. "/d"))
  H.sh("rm -rf " .. H.q(dir))
  return mac
end

-- An HS256 JWT of claims (a table), signed with key (default SECRET); alg replaces HS256 in the
-- header, and header_extra's members are added to it.
local function jwt(claims, key, alg, header_extra)
  local header = { alg = alg or "HS256", typ = "JWT" }
  for k, v in pairs(header_extra or {}) do header[k] = v end
  local signing = b64url(H.encode(header)) .. "." .. b64url(H.encode(claims))
  return signing .. "." .. b64url(hmac(key or SECRET, signing))
end

local function bearer(t) return { authorization = "Bearer " .. t } end

local function assert_401(status, body, headers, raw)
  H.assert_error(401, "unauthorized", status, body, headers, raw)
  assert.truthy((headers["www-authenticate"] or ""):match("^Bearer"))
end

describe("auth", function()
  local db, gw

  setup(function()
    db = H.createdb("auth")
    H.psql(db, [[ CREATE TABLE items (id int4 PRIMARY KEY); ]])
    gw = H.start { dsn = db, scripts = scripts, config = {
      tokens = { "tok-one", "tok-two" },
      jwt = { secret = SECRET, audience = AUDIENCE },
      admin_token = "adm-token",
      protect_metrics = true,
    } }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("leaves endpoints without auth open", function()
    assert.same({ one = 1 }, H.assert_ok(gw:get_json("/query/open")))
  end)

  describe("bearer", function()
    it("missing → 401 with WWW-Authenticate, wrong → 403, listed → 200", function()
      assert_401(gw:get_json("/query/tok"))
      assert_401(gw:get_json("/query/tok", { authorization = "Basic dG9rLW9uZQ==" }))
      H.assert_error(403, "forbidden", gw:get_json("/query/tok", bearer("tok-three")))
      H.assert_error(403, "forbidden", gw:get_json("/query/tok", bearer("tok-on")))
      H.assert_error(403, "forbidden", gw:get_json("/query/tok", bearer("tok-one0")))
      assert.same({ two = 2 }, H.assert_ok(gw:get_json("/query/tok", bearer("tok-one"))))
      assert.same({ two = 2 }, H.assert_ok(gw:get_json("/query/tok", { authorization = "bearer tok-two" })))
    end)

    it("guards the route alias and /batch too", function()
      assert_401(gw:get_json("/tok"))
      assert.same({ two = 2 }, H.assert_ok(gw:get_json("/tok", bearer("tok-two"))))
      local items = { { query = "open", params = {} }, { query = "tok", params = {} } }
      assert_401(gw:post_json("/batch", items))
      H.assert_error(403, "forbidden", gw:post_json("/batch", items, bearer("nope")))
      H.assert_ok(gw:post_json("/batch", items, bearer("tok-one")))
    end)

    it("guards bulk endpoints", function()
      assert_401(gw:post_json("/bulk/items", { { id = 1 } }))
      H.assert_error(403, "forbidden", gw:post_json("/bulk/items", { { id = 1 } }, bearer("jwt-ish")))
      H.assert_ok(gw:post_json("/bulk/items", { { id = 1 } }, bearer("tok-one")))
      assert.equal("1", H.psql1(db, "SELECT count(*) FROM items"))
    end)
  end)

  describe("jwt", function()
    local now = os.time()

    it("a valid token passes", function()
      local t = jwt { sub = "alice", aud = AUDIENCE, exp = now + 60, nbf = now - 5 }
      assert.same({ three = 3 }, H.assert_ok(gw:get_json("/query/jwtq", bearer(t))))
      assert.same({ hi = true }, H.assert_ok(gw:get_json("/hello", bearer(t))))
    end)

    it("missing, expired, not yet valid, wrong audience, bad signature, alg none → 401", function()
      assert_401(gw:get_json("/query/jwtq"))
      assert_401(gw:get_json("/hello"))
      local cases = {
        expired = jwt { aud = AUDIENCE, exp = now - 120 },
        not_yet = jwt { aud = AUDIENCE, nbf = now + 600 },
        audience = jwt { aud = "someone-else", exp = now + 60 },
        no_audience = jwt { exp = now + 60 },
        signature = jwt({ aud = AUDIENCE, exp = now + 60 }, "another-secret"),
        alg_none = b64url('{"alg":"none"}') .. "." .. b64url(H.encode { aud = AUDIENCE }) .. ".",
        rs256 = jwt({ aud = AUDIENCE }, SECRET, "RS256"),
        static_token = "tok-one",
        garbage = "a.b.c",
      }
      for name, t in pairs(cases) do
        local status, body, headers, raw = gw:get_json("/query/jwtq", bearer(t))
        assert(status == 401, name .. ": expected 401, got " .. tostring(status) .. " " .. tostring(raw))
        assert_401(status, body, headers, raw)
        assert.truthy(headers["www-authenticate"]:match('invalid_token'), name)
      end
    end)

    it("an expired token within the 30 s leeway still passes", function()
      local t = jwt { aud = AUDIENCE, exp = now - 5 }
      H.assert_ok(gw:get_json("/query/jwtq", bearer(t)))
    end)

    it("a header with crit is refused, whatever it lists", function()
      for _, crit in ipairs { { "exp" }, { "b64" }, H.array() } do
        local t = jwt({ aud = AUDIENCE, exp = now + 60 }, SECRET, nil, { crit = crit, b64 = false })
        local status, body, headers, raw = gw:get_json("/query/jwtq", bearer(t))
        assert_401(status, body, headers, raw)
        assert.truthy(body.error.message:find("crit", 1, true), raw)
      end
    end)

    it("jwt.issuer and jwt.max_age: iss must match; without exp, iat must be recent (and present)", function()
      local g = H.start { dsn = db, scripts = scripts, config = { tokens = { "tok-one" },
        jwt = { secret = SECRET, issuer = "https://auth.example", max_age = 600 } } }
      local iss = "https://auth.example"
      H.assert_ok(g:get_json("/query/jwtq", bearer(jwt { iss = iss, iat = now - 60 })))
      H.assert_ok(g:get_json("/query/jwtq", bearer(jwt { iss = iss, exp = now + 60 })))
      -- exp decides when present: an old iat does not matter then
      H.assert_ok(g:get_json("/query/jwtq", bearer(jwt { iss = iss, iat = now - 86400, exp = now + 60 })))
      local cases = {
        ["wrong issuer"] = jwt { iss = "https://evil.example", iat = now },
        ["no issuer"] = jwt { iat = now },
        ["too old"] = jwt { iss = iss, iat = now - 700 },
        ["without exp or iat"] = jwt { iss = iss },
        ["not valid yet"] = jwt { iss = iss, iat = now + 600 },
      }
      for reason, t in pairs(cases) do
        local status, body, headers, raw = g:get_json("/query/jwtq", bearer(t))
        assert(status == 401, reason .. ": expected 401, got " .. tostring(status) .. " " .. tostring(raw))
        assert_401(status, body, headers, raw)
        assert.truthy(body.error.message:find(reason == "no issuer" and "wrong issuer" or reason, 1, true),
          reason .. ": " .. raw)
      end
      g:stop()
    end)

    it("refuses to start with a secret shorter than 32 bytes, naming its length only", function()
      for _, case in ipairs {
        { config = { jwt = { secret = "short-s3cret-value" } }, where = "jwt.secret" },
        { env = { SLUICE_JWT_SECRET = "short-s3cret-value" }, where = "SLUICE_JWT_SECRET" },
      } do
        local g = H.start { dsn = db, wait = false, scripts = scripts, config = case.config, env = case.env }
        local deadline = H.now() + 10
        while g:exit_code() == nil and H.now() < deadline do H.sleep(0.05) end
        assert.equal(1, g:exit_code())
        local log = g:log()
        assert.truthy(log:find(case.where .. ": expected a string of at least 32 bytes", 1, true), log)
        assert.truthy(log:find("got 18 bytes", 1, true), log)
        assert.falsy(log:find("short-s3cret", 1, true), log)
        local _, lines = log:gsub("\n", "")
        assert.equal(1, lines, log)
      end
    end)
  end)

  describe("Lua policies", function()
    it("true → 200, false → 403, false, 401 → 401", function()
      assert.same({ four = 4 }, H.assert_ok(gw:get_json("/query/pol", { ["x-role"] = "admin" })))
      H.assert_error(403, "forbidden", gw:get_json("/query/pol", { ["x-role"] = "user" }))
      assert_401(gw:get_json("/query/pol"))
      H.assert_ok(gw:get_json("/hpol?key=open"))
      H.assert_error(403, "forbidden", gw:get_json("/hpol?key=closed"))
    end)

    it("a policy that raises or never returns is a 500, and the worker lives on", function()
      local t0 = H.now()
      H.assert_error(500, "internal", gw:get_json("/query/spin"))
      assert.truthy(H.now() - t0 < 5)
      H.assert_error(500, "internal", gw:get_json("/query/boom"))
      assert.truthy(gw:log():match("auth policy of boom failed"))
      H.assert_ok(gw:get_json("/query/open"))
    end)

    it("pcall, xpcall or a coroutine inside a policy cannot catch the time limit: refused in time", function()
      for _, name in ipairs { "pcall_spin", "pcall_allow" } do
        local t0 = H.now()
        local status, body, headers, raw = gw:get_json("/query/" .. name, nil, 5)
        H.assert_error(500, "internal", status, body, headers, raw)
        assert.truthy(H.now() - t0 < 1, name .. " took " .. (H.now() - t0) .. " s")
        assert.truthy(gw:log():find("auth policy of " .. name .. " failed: the auth policy ran for more than 100 ms",
          1, true), name)
      end
      H.assert_ok(gw:get_json("/query/open"))
    end)

    it("a handler suspended on the database while a policy runs keeps its own time limit", function()
      -- LuaJIT has one hook per state: the policy's limit must not replace the handler's for good
      local g = H.start { dsn = db, config = { workers = 1 }, scripts = { ["a.lua"] = [==[
sluice.query "nap" { readonly = true, single = true, sql = [[ SELECT pg_sleep(0.5) IS NULL AS x ]] }
sluice.query "pol" { readonly = true, single = true, sql = [[ SELECT 1 AS x ]], auth = function(req) return true end }
sluice.route = function(q, req) return nil end
sluice.endpoint "spin" { route = "GET /spin", handler = function(req) sluice.db.query("nap", {}) while true do end end }
]==] } }
      local t0 = H.now()
      local spin = g:async("GET", "/spin", nil, nil, 10)
      H.sleep(0.2)
      H.assert_ok(g:get_json("/query/pol"))
      local r = spin:wait()
      assert.equal(500, r.status)
      assert.truthy(H.now() - t0 < 4)
      H.assert_ok(g:get_json("/query/pol"))
      g:stop()
    end)
  end)

  describe("protect_metrics", function()
    it("/metrics and /health need the admin token; /health/live does not", function()
      assert_401(gw:get_json("/metrics"))
      local status = gw:get("/metrics", bearer("tok-one"))
      assert.equal(403, status)
      local s, body = gw:get("/metrics", bearer("adm-token"))
      assert.equal(200, s)
      assert.truthy(body:match("db_pool_size"))
      assert_401(gw:get_json("/health"))
      assert_401(gw:get_json("/health/ready"))
      H.assert_ok(gw:get_json("/health", bearer("adm-token")))
      assert.equal(200, (gw:get("/health/live")))
    end)
  end)

  it("never logs a token or the secret", function()
    local log = gw:log()
    for _, s in ipairs { "tok-one", "tok-two", "tok-three", "adm-token", SECRET, "eyJ" } do
      assert.falsy(log:find(s, 1, true), "the log contains " .. s)
    end
  end)

  it("takes tokens and the JWT secret from SLUICE_TOKENS and SLUICE_JWT_SECRET", function()
    local g = H.start { dsn = db, scripts = scripts,
      env = { SLUICE_TOKENS = "env-a, env-b", SLUICE_JWT_SECRET = ENV_SECRET } }
    H.assert_ok(g:get_json("/query/tok", bearer("env-b")))
    H.assert_error(403, "forbidden", g:get_json("/query/tok", bearer("tok-one")))
    H.assert_ok(g:get_json("/query/jwtq", bearer(jwt({ sub = "x" }, ENV_SECRET))))
    g:stop()
  end)

  it("refuses to start when an endpoint needs tokens or a secret the config lacks", function()
    local g = H.start { dsn = db, wait = false,
      scripts = { ["a.lua"] = [[ sluice.query "q" { sql = "SELECT 1", auth = "jwt" } ]] } }
    local deadline = H.now() + 10
    while g:exit_code() == nil and H.now() < deadline do H.sleep(0.05) end
    assert.equal(1, g:exit_code())
    assert.truthy(g:log():match("needs jwt.secret"))
    g = H.start { dsn = db, wait = false,
      scripts = { ["a.lua"] = [[ sluice.bulk "b" { table = "items", columns = { "id" }, auth = function() end } ]] } }
    deadline = H.now() + 10
    while g:exit_code() == nil and H.now() < deadline do H.sleep(0.05) end
    assert.equal(1, g:exit_code())
    assert.truthy(g:log():match('expected "bearer", "jwt"'))
  end)
end)
