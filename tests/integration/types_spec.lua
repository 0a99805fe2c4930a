-- types_spec.lua — every type of docs/http-api.md "Results" round-trips through the gateway, and
-- parameters come in from JSON bodies (by name and by position), query strings and route paths.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local null = H.null

local scripts = {
  ["types.lua"] = [==[
sluice.query "ints" { readonly = true, single = true, sql = [=[
  SELECT 1::int2 AS i2, (-32768)::int2 AS i2min, 2147483647::int4 AS i4, (-2147483648)::int4 AS i4min,
         42::int8 AS i8, 9007199254740992::int8 AS i8edge, (-9007199254740992)::int8 AS i8negedge,
         9007199254740993::int8 AS i8big, '-9223372036854775808'::int8 AS i8min ]=] }

sluice.query "floats" { readonly = true, single = true, sql = [=[
  SELECT 1.5::float4 AS f4, 0.1::float8 AS f8, (-2.5)::float8 AS neg, 1e300::float8 AS huge,
         'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, '-Infinity'::float4 AS ninf ]=] }

sluice.query "numerics" { readonly = true, single = true, sql = [=[
  SELECT 123.45::numeric AS small, 123456789012345::numeric AS fifteen,
         1234567890123456::numeric AS sixteen,
         '123456789012345678901234567890'::numeric AS thirty,
         '1234567890.12345678901234567890'::numeric AS frac, 1.50::numeric AS trailing,
         (-0.001)::numeric AS neg, 0.000001::numeric AS tiny, 'NaN'::numeric AS nan ]=] }

sluice.query "scalars" { readonly = true, single = true, sql = [=[
  SELECT true AS t, false AS f,
         E'a\nb\t"q" \\ ''s'' \u00e9 ☃ 😀' AS txt, E'ctl\x01\x1f' AS ctl, '' AS empty,
         NULL::int4 AS n_int, NULL::text AS n_text, NULL::timestamptz AS n_ts, NULL::jsonb AS n_jsonb,
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
         '\x00ff41'::bytea AS b, ''::bytea AS b_empty,
         '1 day 02:03:04'::interval AS iv ]=] }

sluice.query "jsons" { readonly = true, single = true, sql = [=[
  SELECT '{"a":1,"b":[1,2,{"c":null}],"s":"x\"y"}'::jsonb AS jb,
         '[1, "two", false]'::json AS j, '"str"'::jsonb AS jstr, '3.5'::json AS jnum,
         'null'::jsonb AS jsonnull, '{ "spaced" : [ 1 , 2 ] }'::json AS jspaced ]=] }

sluice.query "arrays" { readonly = true, single = true, sql = [=[
  SELECT ARRAY[1,2,NULL,4]::int4[] AS ia,
         ARRAY['a','b c',NULL,'q"uote','x,y','{br}','NULL','back\slash']::text[] AS ta,
         ARRAY[[1,2],[3,4]]::int4[] AS i2d, ARRAY[['a','b'],['c',NULL]]::text[] AS t2d,
         '{}'::int4[] AS empty, ARRAY[true,false]::bool[] AS ba ]=] }

sluice.query "times" { readonly = true, single = true, sql = [=[
  SELECT '2024-01-02 03:04:05+00'::timestamptz AS tz,
         '2024-01-02 03:04:05.123456+00'::timestamptz AS tzfrac,
         '2024-07-01 12:00:00+02'::timestamptz AS tzconv,
         '2024-01-02 03:04:05'::timestamp AS ts, '2024-01-02'::date AS d ]=] }

sluice.query "many" { readonly = true, sql = [=[
  SELECT g AS n, 'row ' || g AS label FROM generate_series(1, :count::int4) AS g ORDER BY g ]=] }

sluice.query "put" { single = true, sql = [=[
  INSERT INTO pt (i2, i4, i8, f8, num, b, t, j, ia, ta, ts, d, bin, u)
  VALUES (:i2, :i4, :i8, :f8, :num, :b, :t, :j, :ia, :ta, :ts, :d, :bin, :u)
  RETURNING * ]=] }

sluice.query "put_arrays" { single = true, sql = [=[
  INSERT INTO pt (ia, ta) VALUES (:ia, :ta) RETURNING id, ia, ta ]=] }

sluice.query "put_matrix" { single = true, sql = [=[
  INSERT INTO pt (ia) VALUES (:ia) RETURNING id, ia ]=] }

sluice.query "put_json" { single = true, sql = [=[
  INSERT INTO pt (j) VALUES (:j) RETURNING id, j ]=] }

sluice.query "put_bin" { single = true, sql = [=[
  INSERT INTO pt (bin) VALUES (:bin) RETURNING id, bin ]=] }

sluice.query "touch" { sql = [=[ UPDATE pt SET t = t WHERE id <= :upto ]=] }

sluice.query "pos" { readonly = true, single = true, route = "GET /echo/{x}", sql = [=[
  SELECT :x::text AS x, :y::int4 AS y, :x::text || '!' AS x2 ]=] }

sluice.query "hexof" { readonly = true, single = true, sql = [=[
  SELECT encode(:b, 'hex') AS h ]=] }

sluice.query "num_echo" { readonly = true, single = true, sql = [=[
  SELECT :n::numeric AS n, (:n::numeric)::text AS nt ]=] }

sluice.query "int8_echo" { readonly = true, single = true, sql = [=[
  SELECT :v::int8 AS v, (:v::int8)::text AS vt ]=] }

sluice.query "one" { readonly = true, sql = [=[ SELECT 1 AS one ]=] }
]==],
}

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("types", function()
  local db, gw

  setup(function()
    db = H.createdb("types")
    H.psql(db, ("ALTER DATABASE %s SET timezone = 'UTC';"):format(H.dsn_dbname(db)) .. [[
      CREATE TABLE pt (id serial PRIMARY KEY, i2 int2, i4 int4, i8 int8, f8 float8, num numeric,
        b bool, t text, j jsonb, ia int4[], ta text[], ts timestamptz, d date, bin bytea, u uuid);
    ]])
    gw = H.start { dsn = db, scripts = scripts }
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function get_row(path)
    local s, body, h, raw = gw:get_json(path)
    return H.assert_ok(s, body, h, raw), raw
  end

  -- Checks boolean SQL expressions about pt row id; each must be true.
  local function check_stored(id, checks)
    local names, exprs = {}, {}
    for name, expr in pairs(checks) do
      names[#names + 1] = name
      exprs[#exprs + 1] = ("coalesce((%s)::text, 'null')"):format(expr)
    end
    local out = H.psql1(db, ("SELECT %s FROM pt WHERE id = %d"):format(table.concat(exprs, ", "), id))
    local i = 0
    for v in (out .. "|"):gmatch("([^|]*)|") do
      i = i + 1
      assert(v == "true", ("stored value check %q (%s) is %s"):format(names[i], exprs[i], v))
    end
    assert(i == #names, "row " .. id .. " not found: " .. out)
  end

  describe("results", function()
    it("int2/int4 are numbers, int8 is a number up to 2^53 and a string beyond", function()
      local r = get_row("/query/ints")
      assert.equal(1, r.i2)
      assert.equal(-32768, r.i2min)
      assert.equal(2147483647, r.i4)
      assert.equal(-2147483648, r.i4min)
      assert.equal(42, r.i8)
      assert.equal("number", type(r.i8edge))
      assert.equal(9007199254740992, r.i8edge)
      assert.equal(-9007199254740992, r.i8negedge)
      assert.equal("9007199254740993", r.i8big)
      assert.equal("-9223372036854775808", r.i8min)
    end)

    it("float4/float8 are numbers; NaN and Infinity are strings", function()
      local r = get_row("/query/floats")
      assert.equal(1.5, r.f4)
      assert.equal(0.1, r.f8)
      assert.equal(-2.5, r.neg)
      assert.equal(1e300, r.huge)
      assert.equal("NaN", r.nan)
      assert.equal("Infinity", r.inf)
      assert.equal("-Infinity", r.ninf)
    end)

    it("numeric: a number up to 15 significant digits, else an exact string", function()
      local r = get_row("/query/numerics")
      assert.equal(123.45, r.small)
      assert.equal("number", type(r.fifteen))
      assert.equal(123456789012345, r.fifteen)
      assert.equal("1234567890123456", r.sixteen)
      assert.equal("123456789012345678901234567890", r.thirty)
      assert.equal("1234567890.12345678901234567890", r.frac)
      assert.equal(1.5, r.trailing)
      assert.equal(-0.001, r.neg)
      assert.equal(0.000001, r.tiny)
      assert.equal("NaN", r.nan)
    end)

    it("bool, text (unicode, quotes, control characters), NULL, uuid, bytea, other types", function()
      local r = get_row("/query/scalars")
      assert.equal(true, r.t)
      assert.equal(false, r.f)
      assert.equal("a\nb\t\"q\" \\ 's' \195\169 ☃ 😀", r.txt)
      assert.equal("ctl\1\31", r.ctl)
      assert.equal("", r.empty)
      assert.equal(null, r.n_int)
      assert.equal(null, r.n_text)
      assert.equal(null, r.n_ts)
      assert.equal(null, r.n_jsonb)
      assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", r.u)
      assert.equal("AP9B", r.b)
      assert.equal("", r.b_empty)
      assert.equal("1 day 02:03:04", r.iv)
    end)

    it("json and jsonb are embedded JSON, not strings", function()
      local r = get_row("/query/jsons")
      assert.same({ a = 1, b = { 1, 2, { c = null } }, s = 'x"y' }, r.jb)
      assert.same({ 1, "two", false }, r.j)
      assert.equal("str", r.jstr)
      assert.equal(3.5, r.jnum)
      assert.equal(null, r.jsonnull)
      assert.same({ spaced = { 1, 2 } }, r.jspaced)
    end)

    it("arrays are JSON arrays (NULL elements, quoting, 2-D, empty, bool)", function()
      local r, raw = get_row("/query/arrays")
      assert.same({ 1, 2, null, 4 }, r.ia)
      assert.same({ "a", "b c", null, 'q"uote', "x,y", "{br}", "NULL", "back\\slash" }, r.ta)
      assert.same({ { 1, 2 }, { 3, 4 } }, r.i2d)
      assert.same({ { "a", "b" }, { "c", null } }, r.t2d)
      assert.same({}, r.empty)
      assert.truthy(raw:match('"empty"%s*:%s*%[%s*%]'), "empty array must be [] in " .. raw)
      assert.same({ true, false }, r.ba)
    end)

    it("timestamptz, timestamp and date are ISO-8601 strings", function()
      local r = get_row("/query/times")
      assert.equal("2024-01-02T03:04:05+00:00", r.tz)
      assert.equal("2024-01-02T03:04:05.123456+00:00", r.tzfrac)
      assert.equal("2024-07-01T10:00:00+00:00", r.tzconv)
      assert.equal("2024-01-02T03:04:05", r.ts)
      assert.equal("2024-01-02", r.d)
    end)

    it("a multi-row result is {rows, row_count}", function()
      local s, body, h, raw = gw:get_json("/query/many?count=3")
      H.assert_ok(s, body, h, raw)
      assert.equal(3, body.row_count)
      assert.same({ { n = 1, label = "row 1" }, { n = 2, label = "row 2" }, { n = 3, label = "row 3" } }, body.rows)
      s, body, h, raw = gw:get_json("/query/many?count=0")
      H.assert_ok(s, body, h, raw)
      assert.equal(0, body.row_count)
      assert.same({}, body.rows)
      assert.truthy(raw:match('"rows"%s*:%s*%[%s*%]'), "no rows must be [] in " .. raw)
    end)

    it("a write without RETURNING gives rows [] and the affected count", function()
      H.psql(db, "INSERT INTO pt (t) SELECT 'x' FROM generate_series(1, 3)")
      local s, body, h, raw = gw:post_json("/query/touch", { upto = 2147483647 })
      H.assert_ok(s, body, h, raw)
      local n = tonumber(H.psql1(db, "SELECT count(*) FROM pt"))
      assert.equal(n, body.row_count)
      assert.same({}, body.rows)
    end)

    it("an empty POST body means no parameters; a charset in Content-Type is accepted", function()
      local s, body, h, raw = gw:post_json("/query/one", "", { ["Content-Type"] = "application/json" })
      H.assert_ok(s, body, h, raw)
      assert.same({ rows = { { one = 1 } }, row_count = 1 }, body)
      s, body, h, raw = gw:post_json("/query/one", "{}", { ["Content-Type"] = "application/json; charset=utf-8" })
      H.assert_ok(s, body, h, raw)
      assert.equal(1, body.row_count)
    end)
  end)

  describe("parameters", function()
    it("JSON values of the matching kind, by name", function()
      local bin = "\0\1\2hello\255"
      local s, r, h, raw = gw:post_json("/query/put", {
        i2 = 7, i4 = -42, i8 = 9007199254740991, f8 = 1.25, num = 3.5, b = true,
        t = "it's \"q\"\nline ☃ \\", j = { a = { b = H.array { 1, 2 } }, n = null },
        ia = H.array { 1, 2, 3 }, ta = H.array { "x", "y z" },
        ts = "2024-05-06T07:08:09Z", d = "2024-05-06", bin = H.base64(bin),
        u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      })
      H.assert_ok(s, r, h, raw)
      assert.equal(7, r.i2)
      assert.equal(-42, r.i4)
      assert.equal(9007199254740991, r.i8)
      assert.equal(1.25, r.f8)
      assert.equal(3.5, r.num)
      assert.equal(true, r.b)
      assert.equal("it's \"q\"\nline ☃ \\", r.t)
      assert.same({ a = { b = { 1, 2 } }, n = null }, r.j)
      assert.same({ 1, 2, 3 }, r.ia)
      assert.same({ "x", "y z" }, r.ta)
      assert.equal("2024-05-06T07:08:09+00:00", r.ts)
      assert.equal("2024-05-06", r.d)
      assert.equal(H.base64(bin), r.bin)
      assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", r.u)
      check_stored(r.id, {
        i2 = "i2 = 7", i4 = "i4 = -42", i8 = "i8 = 9007199254740991", f8 = "f8 = 1.25",
        num = "num = 3.5", b = "b", t = [[t = E'it\'s "q"\nline ☃ \\']],
        j = [[j = '{"a":{"b":[1,2]},"n":null}'::jsonb]], ia = "ia = '{1,2,3}'", ta = [[ta = '{x,"y z"}']],
        ts = "ts = '2024-05-06 07:08:09+00'", d = "d = '2024-05-06'",
        bin = ("bin = '\\x%s'::bytea"):format(hex(bin)), u = "u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
      })
    end)

    it("strings in PostgreSQL's input syntax for any type; numeric and int8 keep every digit", function()
      local s, r, h, raw = gw:post_json("/query/put", {
        i2 = "8", i4 = "42", i8 = "9223372036854775807", f8 = "1.5e3",
        num = "123456789012345678901234567890.123456789", b = "true", t = "plain",
        j = { k = "v" }, ia = "{4,5}", ta = '{"p,q",r}', ts = "2024-05-06 07:08:09+02",
        d = "2024-05-06", bin = H.base64("xyz"), u = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      })
      H.assert_ok(s, r, h, raw)
      assert.equal(8, r.i2)
      assert.equal(42, r.i4)
      assert.equal("9223372036854775807", r.i8)
      assert.equal(1500, r.f8)
      assert.equal("123456789012345678901234567890.123456789", r.num)
      assert.equal(true, r.b)
      assert.same({ 4, 5 }, r.ia)
      assert.same({ "p,q", "r" }, r.ta)
      assert.equal("2024-05-06T05:08:09+00:00", r.ts)
      assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", r.u)
      check_stored(r.id, {
        i8 = "i8 = 9223372036854775807",
        num = "num = '123456789012345678901234567890.123456789'::numeric",
        numtext = "num::text = '123456789012345678901234567890.123456789'",
        bin = "bin = 'xyz'::bytea",
      })
    end)

    it("JSON null binds SQL NULL", function()
      local body = {}
      for _, k in ipairs { "i2", "i4", "i8", "f8", "num", "b", "t", "j", "ia", "ta", "ts", "d", "bin", "u" } do
        body[k] = null
      end
      local s, r, h, raw = gw:post_json("/query/put", body)
      H.assert_ok(s, r, h, raw)
      for k in pairs(body) do assert.equal(null, r[k], k .. " should be null in " .. raw) end
      check_stored(r.id, {
        allnull = "num IS NULL AND t IS NULL AND j IS NULL AND ia IS NULL AND bin IS NULL AND u IS NULL",
      })
    end)

    it("a JSON number for numeric stores the decimal the client wrote", function()
      local s, r, h, raw = gw:post_json("/query/put", '{"i2":null,"i4":null,"i8":null,"f8":0.1,"num":0.1,'
        .. '"b":null,"t":null,"j":null,"ia":null,"ta":null,"ts":null,"d":null,"bin":null,"u":null}')
      H.assert_ok(s, r, h, raw)
      assert.equal(0.1, r.num)
      assert.equal(0.1, r.f8)
      check_stored(r.id, { num = "num::text = '0.1'", f8 = "f8 = 0.1::float8" })
    end)

    it("an integer JSON number beyond 2^53 binds an int8 exactly", function()
      local s, r, h, raw = gw:post_json("/query/int8_echo", '{"v": 9223372036854775807}')
      H.assert_ok(s, r, h, raw)
      assert.equal("9223372036854775807", r.v)
      assert.equal("9223372036854775807", r.vt)
    end)

    it("jsonb takes any JSON value (object, array, number, boolean)", function()
      local cases = {
        { '{"j":{"k":[1,{"z":true}]}}', { k = { 1, { z = true } } }, [[j = '{"k":[1,{"z":true}]}'::jsonb]] },
        { '{"j":[1,"a",null]}', { 1, "a", null }, [[j = '[1,"a",null]'::jsonb]] },
        { '{"j":5}', 5, [[j = '5'::jsonb]] },
        { '{"j":true}', true, [[j = 'true'::jsonb]] },
      }
      for _, c in ipairs(cases) do
        local s, r, h, raw = gw:post_json("/query/put_json", c[1])
        H.assert_ok(s, r, h, raw)
        assert.same(c[2], r.j, c[1])
        check_stored(r.id, { j = c[3] })
      end
    end)

    it("arrays take JSON arrays (NULL elements, quoting, 2-D)", function()
      local tricky = { "a,b", 'c"d', "{e}", "NULL", "back\\slash", "", "sp ace" }
      local s, r, h, raw = gw:post_json("/query/put_arrays", { ia = H.array { 1, null, 3 }, ta = H.array(tricky) })
      H.assert_ok(s, r, h, raw)
      assert.same({ 1, null, 3 }, r.ia)
      assert.same(tricky, r.ta)
      check_stored(r.id, {
        ia = "ia::text = '{1,NULL,3}'",
        ta = [=[ta = ARRAY['a,b', 'c"d', '{e}', 'NULL', E'back\\slash', '', 'sp ace']]=],
        ta4 = "ta[4] IS NOT NULL",
      })
      s, r, h, raw = gw:post_json("/query/put_matrix", '{"ia":[[1,2],[3,4]]}')
      H.assert_ok(s, r, h, raw)
      assert.same({ { 1, 2 }, { 3, 4 } }, r.ia)
      check_stored(r.id, { ia = "ia = '{{1,2},{3,4}}'::int4[]" })
    end)

    it("bytea takes base64; invalid base64 is 400", function()
      local bin = "\0\255A\251\255\0"
      local s, r, h, raw = gw:post_json("/query/put_bin", { bin = H.base64(bin) })
      H.assert_ok(s, r, h, raw)
      assert.equal(H.base64(bin), r.bin)
      check_stored(r.id, { bin = ("bin = '\\x%s'::bytea"):format(hex(bin)) })
      H.assert_error(400, "bad_request", gw:post_json("/query/put_bin", { bin = "not base64 !!" }))
    end)

    it("by position: a JSON array binds in order of first appearance", function()
      local s, r, h, raw = gw:post_json("/query/pos", '["hi", 5]')
      H.assert_ok(s, r, h, raw)
      assert.same({ x = "hi", y = 5, x2 = "hi!" }, r)
      s, r, h, raw = gw:post_json("/query/pos", { x = "by name", y = 6 })
      H.assert_ok(s, r, h, raw)
      assert.same({ x = "by name", y = 6, x2 = "by name!" }, r)
      H.assert_error(400, "bad_request", gw:post_json("/query/pos", '["only one"]'))
    end)

    it("GET: query-string values are strings in PostgreSQL's input syntax", function()
      local r = get_row("/query/pos?x=" .. H.urlencode("héllo w&=?") .. "&y=5")
      assert.same({ x = "héllo w&=?", y = 5, x2 = "héllo w&=?!" }, r)
      local bin = "\0\255A\251\255"
      r = get_row("/query/hexof?b=" .. H.urlencode(H.base64(bin)))
      assert.equal(hex(bin), r.h)
      local digits = "123456789012345678901234567890.000000001"
      r = get_row("/query/num_echo?n=" .. digits)
      assert.equal(digits, r.n)
      assert.equal(digits, r.nt)
    end)

    it("numeric as a JSON string keeps every digit", function()
      local digits = "-98765432109876543210.0123456789012345678901"
      local s, r, h, raw = gw:post_json("/query/num_echo", { n = digits })
      H.assert_ok(s, r, h, raw)
      assert.equal(digits, r.n)
      assert.equal(digits, r.nt)
    end)

    it("a route alias binds path parameters by name and the query string supplies the rest", function()
      local r = get_row("/echo/abc?y=3")
      assert.same({ x = "abc", y = 3, x2 = "abc!" }, r)
      r = get_row("/echo/" .. H.urlencode("a b") .. "?y=4")
      assert.same({ x = "a b", y = 4, x2 = "a b!" }, r)
    end)
  end)
end)
