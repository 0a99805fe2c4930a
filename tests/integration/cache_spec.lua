-- cache_spec.lua — the result cache and request coalescing through the real binary: hits and
-- misses (Sluice-Cache), /batch items served from and filling the store, invalidation before a write's answer (named query with writes, bulk
-- load, handler transaction, /batch), 1000 write-then-read pairs without a stale read, writes
-- through a second gateway and through psql reaching the cache by the triggers of `sluice
-- cache-triggers`, one LISTEN connection per gateway shared with event channels, a lost LISTEN
-- connection, the LISTEN of a pool whose first cached query comes with a reload, Sluice-LSN, 100
-- identical slow requests run at most twice (pg_stat_statements), one error for every waiter, a
-- shared execution kept for those who stay and cancelled when all left, cache_max_bytes never
-- exceeded, entries kept apart by the caller's credentials, and the configuration errors.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local MARK = ("coalesce_mark_%d"):format(math.random(100000, 999999))

local scripts = {
  ["cache.lua"] = ([==[
sluice.query "quote" { readonly = true, single = true, sql = [[ SELECT pair, bid FROM quotes WHERE pair = :pair ]],
  cache = { ttl_ms = 60000, tables = { "quotes" } } }
sluice.query "quote_alias" { readonly = true, single = true, route = "GET /quotes/{pair}",
  sql = [[ SELECT pair, bid FROM quotes WHERE pair = :pair ]], cache = { ttl_ms = 60000, tables = { "public.quotes" } } }
sluice.query "quote_auth" { readonly = true, single = true, auth = "bearer",
  sql = [[ SELECT pair, bid FROM quotes WHERE pair = :pair ]], cache = { ttl_ms = 60000, tables = { "quotes" } } }
sluice.query "set_bid" { single = true, sql = [[ UPDATE quotes SET bid = :bid WHERE pair = :pair RETURNING bid ]],
  writes = { "quotes" } }
sluice.query "set_bid_silent" { single = true, sql = [[ UPDATE quotes SET bid = :bid WHERE pair = :pair RETURNING bid ]] }
sluice.query "padded" { readonly = true, single = true, sql = [[ SELECT :k::text AS k, repeat('x', 400) AS pad ]],
  cache = { ttl_ms = 60000, tables = { "quotes" } } }
sluice.query "slow" { readonly = true, single = true, coalesce = true,
  sql = [[ SELECT pg_sleep(1)::text AS %s, :x::int AS x ]] }
sluice.query "slow_fail" { readonly = true, single = true, coalesce = true,
  sql = [[ SELECT s, 1 / (x - x) AS boom FROM (SELECT pg_sleep(1)::text AS s, :x::int AS x OFFSET 0) AS t ]] }
sluice.query "slowest" { readonly = true, single = true, coalesce = true,
  sql = [[ SELECT pg_sleep(:s::float8)::text AS slowest_mark, :s::float8 AS s ]] }
sluice.channel "ticks" { listen = "ticks" }
sluice.bulk "quotes_bulk" { table = "quotes", columns = { "pair", "bid" }, mode = "upsert", key = { "pair" } }
sluice.endpoint "h_tx" { route = "POST /h/tx", handler = function(req)
  return 200, sluice.db.transaction(function(tx)
    return tx:query("set_bid", { pair = req.body.pair, bid = req.body.bid })
  end)
end }
]==]):format(MARK),
}

describe("result cache", function()
  local db, gw

  -- Waits until n gateways have their LISTEN connection to db up and have seen it (until then
  -- their cached queries are neither served from the cache nor stored).
  local function wait_listening(n)
    assert.is_true(H.wait_for(function()
      return tonumber(H.psql1(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'"
        .. " AND datname = current_database()")) >= n
    end, 10))
    H.sleep(0.3)
  end

  setup(function()
    db = H.createdb("cache")
    H.psql(db, [[
      CREATE TABLE quotes (pair text PRIMARY KEY, bid numeric NOT NULL);
      INSERT INTO quotes VALUES ('EURUSD', 1), ('GBPUSD', 2);
      CREATE TABLE other (id int);
    ]])
    gw = H.start { dsn = db, scripts = scripts, config = { admin_token = "adm", tokens = { "tok-a", "tok-b" } },
      pool = { pool_size = 4, max_overflow = 4 } }
    wait_listening(1)
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  local function read(path, headers)
    local s, body, hdrs, raw = gw:get_json(path or "/query/quote?pair=EURUSD", headers)
    H.assert_ok(s, body, hdrs, raw)
    return body, hdrs["sluice-cache"]
  end

  local function metric(name, query)
    local s, text = gw:get("/metrics")
    assert.equal(200, s)
    local pat = query and (name .. '{query="' .. query .. '"} ') or (name .. " ")
    for line in text:gmatch("[^\n]+") do
      if line:sub(1, #pat) == pat then return tonumber(line:sub(#pat + 1)) end
    end
    return nil
  end

  it("answers a repeated read from the cache: miss, then hit, with the same body", function()
    local b1, v1 = read("/query/quote?pair=GBPUSD")
    local b2, v2 = read("/query/quote?pair=GBPUSD")
    assert.equal("miss", v1)
    assert.equal("hit", v2)
    assert.same(b1, b2)
    -- the same parameters by POST, as JSON: the same key
    local s, b3, h3 = gw:post_json("/query/quote", H.encode { pair = "GBPUSD" })
    assert.equal(200, s)
    assert.equal("hit", h3["sluice-cache"])
    assert.same(b1, b3)
    assert.is_nil(h3["etag"]) -- POST: no validator
    assert.is_true(metric("sluice_cache_hits_total", "quote") >= 2)
    -- a route alias of another query: entries of its own
    local _, va = read("/quotes/GBPUSD")
    assert.equal("miss", va)
    local _, vb = read("/quotes/GBPUSD")
    assert.equal("hit", vb)
  end)

  it("serves and fills the cache from /batch items too (not inside a transaction)", function()
    local function batch(qs)
      local s, body, _, raw = gw:post_json("/batch" .. (qs or ""),
        H.encode { { query = "quote", params = { pair = "BATCHX" } }, { query = "quote", params = { pair = "BATCHY" } } })
      assert.equal(200, s, raw)
      return body
    end
    H.psql(db, "INSERT INTO quotes VALUES ('BATCHX', 10), ('BATCHY', 20)")
    local h0 = metric("sluice_cache_hits_total", "quote")
    local first = batch() -- fills the store
    assert.same({ pair = "BATCHX", bid = 10 }, first[1].body)
    local b, v = read("/query/quote?pair=BATCHY")
    assert.equal("hit", v)
    assert.same(first[2].body, b)
    -- a write the gateway is not told about shows which answers come from the store
    assert.equal(200, (gw:post_json("/query/set_bid_silent", H.encode { pair = "BATCHX", bid = 11 })))
    local again = batch()
    assert.same({ pair = "BATCHX", bid = 10 }, again[1].body)
    assert.equal(h0 + 3, metric("sluice_cache_hits_total", "quote"))
    -- in a transaction the items read the database
    local tx = batch("?transaction=true")
    assert.same({ pair = "BATCHX", bid = 11 }, tx[1].body)
    -- and a write that says so reaches batch readers at once
    assert.equal(200, (gw:post_json("/query/set_bid", H.encode { pair = "BATCHX", bid = 12 })))
    assert.same({ pair = "BATCHX", bid = 12 }, batch()[1].body)
    H.psql(db, "DELETE FROM quotes WHERE pair IN ('BATCHX', 'BATCHY')")
  end)

  it("gives a hit the ETag of the answer it keeps, and 304 to a client that has it", function()
    local _, _, h1 = gw:get_json("/query/quote?pair=EURUSD")
    local _, _, h2 = gw:get_json("/query/quote?pair=EURUSD")
    assert.equal("hit", h2["sluice-cache"])
    assert.truthy(h1["etag"])
    assert.equal(h1["etag"], h2["etag"])
    local s, raw, h3 = gw:get("/query/quote?pair=EURUSD", { ["if-none-match"] = h1["etag"] })
    assert.equal(304, s, raw)
    assert.equal("hit", h3["sluice-cache"])
    assert.equal("", raw or "")
    -- the uncached query's answer to the same SQL carries the same tag
    local _, _, h4 = gw:get_json("/query/quote_auth?pair=EURUSD", { authorization = "Bearer tok-a" })
    assert.equal(h1["etag"], h4["etag"])
  end)

  it("shares one LISTEN connection per gateway with the event channels", function()
    local s, _, h = gw:get_json("/query/quote?pair=GBPUSD")
    assert.equal(200, s)
    assert.truthy(h["sluice-cache"])
    assert.equal("1", H.psql1(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'"
      .. " AND datname = current_database()"))
  end)

  it("keeps the entries of a query with auth apart by the caller's credentials", function()
    local function as(tok)
      local s, _, h = gw:get_json("/query/quote_auth?pair=GBPUSD", { authorization = "Bearer " .. tok })
      assert.equal(200, s)
      return h["sluice-cache"]
    end
    assert.equal("miss", as("tok-a"))
    assert.equal("hit", as("tok-a"))
    assert.equal("miss", as("tok-b"))
    assert.equal("hit", as("tok-b"))
    local s = gw:get_json("/query/quote_auth?pair=GBPUSD", { authorization = "Bearer nope" })
    assert.equal(403, s) -- refused before the cache is looked at
  end)

  it("drops the entries of a table before a write to it answers: named query, bulk, handler transaction, batch", function()
    local function write_then_read(write)
      read() -- cached
      local _, v = read()
      assert.equal("hit", v)
      write()
      return read()
    end
    local b, v = write_then_read(function()
      local s = gw:post_json("/query/set_bid", H.encode { pair = "EURUSD", bid = 11 })
      assert.equal(200, s)
    end)
    assert.equal("miss", v)
    assert.equal(11, b.bid)
    b, v = write_then_read(function()
      local s, r = gw:post("/bulk/quotes_bulk", H.encode(H.array { { pair = "EURUSD", bid = 12 } }),
        { ["content-type"] = "application/json" })
      assert.equal(200, s, r)
    end)
    assert.equal("miss", v)
    assert.equal(12, b.bid)
    b, v = write_then_read(function()
      local s, r = gw:post_json("/h/tx", H.encode { pair = "EURUSD", bid = 13 })
      assert.equal(200, s, r)
    end)
    assert.equal("miss", v)
    assert.equal(13, b.bid)
    for _, qs in ipairs { "", "?transaction=true" } do -- /batch, pipelined and in a transaction
      b, v = write_then_read(function()
        local s, r = gw:post_json("/batch" .. qs,
          H.encode(H.array { { query = "set_bid", params = { pair = "EURUSD", bid = 20 + #qs } } }))
        assert.equal(200, s, r)
      end)
      assert.equal("miss", v)
      assert.equal(20 + #qs, b.bid)
    end
    -- the alias declared "public.quotes": the same table
    read("/quotes/EURUSD")
    assert.equal(200, (gw:post_json("/query/set_bid", H.encode { pair = "EURUSD", bid = 14 })))
    local ba, va = read("/quotes/EURUSD")
    assert.equal("miss", va)
    assert.equal(14, ba.bid)
    assert.is_true(metric("sluice_cache_invalidations_total", "quote") >= 3)
  end)

  it("serves no stale read in 1000 write-then-read pairs", function()
    local stale, hits = 0, 0
    for i = 1, 1000 do
      local s = gw:post_json("/query/set_bid", H.encode { pair = "EURUSD", bid = 1000 + i })
      assert.equal(200, s)
      for _ = 1, 2 do -- the first read refills the cache, the second is served from it
        local b, v = read()
        if b.bid ~= 1000 + i then stale = stale + 1 end
        if v == "hit" then hits = hits + 1 end
      end
    end
    H.figure("write-then-read pairs: 1000, stale reads: %d, hits among the 2000 reads: %d", stale, hits)
    assert.equal(0, stale)
    assert.is_true(hits >= 900)
  end)

  it("keeps a write it was not told about until the ttl, when no trigger says so", function()
    read()
    assert.equal(200, (gw:post_json("/query/set_bid_silent", H.encode { pair = "EURUSD", bid = 1 })))
    local b, v = read()
    assert.equal("hit", v) -- what `writes` and the triggers are for
    assert.are_not.equal(1, b.bid)
  end)

  describe("with the triggers of sluice cache-triggers", function()
    local gw2
    setup(function()
      local sql = H.must(H.q(H.bin) .. " cache-triggers quotes")
      assert.truthy(sql:find("FOR EACH STATEMENT", 1, true), sql)
      H.psql(db, sql)
      gw2 = H.start { dsn = db, scripts = scripts, config = { tokens = { "tok-a" } } }
      wait_listening(2)
    end)

    it("a write through another gateway or psql is seen 100 ms after its commit", function()
      local stale = 0
      for i = 1, 20 do
        read() -- cached by both
        local _, v = gw2:get_json("/query/quote?pair=EURUSD")
        gw2:get_json("/query/quote?pair=EURUSD")
        local bid = 5000 + i
        if i % 2 == 0 then
          assert.equal(200, (gw2:post_json("/query/set_bid_silent", H.encode { pair = "EURUSD", bid = bid })))
        else
          H.psql(db, ("UPDATE quotes SET bid = %d WHERE pair = 'EURUSD'"):format(bid))
        end
        H.sleep(0.1)
        local b = read()
        local s2, b2 = gw2:get_json("/query/quote?pair=EURUSD")
        assert.equal(200, s2)
        if b.bid ~= bid then stale = stale + 1 end
        if b2.bid ~= bid then stale = stale + 1 end
      end
      H.figure("writes through a second gateway and psql: 20, stale reads 100 ms later: %d of 40", stale)
      assert.equal(0, stale)
    end)

    it("ignores and counts a payload naming a table nothing caches", function()
      local before = metric("sluice_cache_notify_unknown_total") or 0
      H.psql(db, "NOTIFY sluice_invalidate, 'no_such_table'; INSERT INTO other VALUES (1);")
      assert.is_true(H.wait_for(function()
        return metric("sluice_cache_notify_unknown_total") == before + 1
      end, 5))
      read()
      local _, v = read()
      assert.equal("hit", v)
    end)

    it("drops the pool's entries when its LISTEN connection is lost", function()
      read()
      local _, v = read()
      assert.equal("hit", v)
      H.psql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice-listen'")
      assert.is_true(H.wait_for(function()
        return H.psql1(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'") == "2"
      end, 5))
      H.sleep(0.3)
      local _, v2 = read() -- what was notified while it was down is lost: the old entry is not served
      assert.equal("miss", v2)
      read()
      local _, v3 = read()
      assert.equal("hit", v3)
    end)
  end)

  it("misses for a request whose Sluice-LSN is newer than the entry", function()
    read()
    local _, v = read(nil, { ["sluice-lsn"] = "0/1" })
    assert.equal("hit", v)
    local _, v2 = read(nil, { ["sluice-lsn"] = "FFFF/0" })
    assert.equal("miss", v2)
  end)

  it("runs 100 concurrent identical slow requests at most twice, with one answer for all", function()
    local reqs = {}
    for i = 1, 100 do reqs[i] = { path = "/query/slow?x=7" } end
    -- the extension lives in the postgres database (scripts/testdb.sh); its view covers them all
    H.psql(H.admin_dsn(), "SELECT pg_stat_statements_reset()")
    local res = gw:parallel(reqs, { max = 100 })
    local first = res[1].body
    local verdicts = {}
    for _, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      assert.equal(first, r.body)
      verdicts[r.headers["sluice-cache"]] = (verdicts[r.headers["sluice-cache"]] or 0) + 1
    end
    local runs = tonumber(H.psql1(H.admin_dsn(), ("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%%%s%%'")
      :format(MARK)))
    H.figure("100 identical slow requests: %d executions (pg_stat_statements), %d miss, %d coalesced", runs,
      verdicts.miss or 0, verdicts.coalesced or 0)
    assert.is_true(runs >= 1 and runs <= 2, tostring(runs))
    assert.equal(100, (verdicts.miss or 0) + (verdicts.coalesced or 0))
  end)

  it("gives every waiter of a failed execution the same error", function()
    local reqs = {}
    for i = 1, 30 do reqs[i] = { path = "/query/slow_fail?x=3" } end
    local res = gw:parallel(reqs, { max = 30 })
    local coalesced = 0
    local function without_id(r) -- each answer names its own request
      local e = r.json.error
      e.request_id = nil
      return e
    end
    for _, r in ipairs(res) do
      assert.equal(400, r.status, r.body)
      assert.same(without_id(res[1]), without_id(r))
      if r.headers["sluice-cache"] == "coalesced" then coalesced = coalesced + 1 end
    end
    assert.is_true(coalesced >= 20, tostring(coalesced))
  end)

  it("keeps a shared execution for those still waiting when others leave, and cancels it when all left", function()
    -- the first requests leave after 0.4 s (their client gives up); the later ones wait for the answer
    local leaving = gw:start_parallel({ { path = "/query/slowest?s=1.5" }, { path = "/query/slowest?s=1.5" } },
      { timeout = 0.4 })
    H.sleep(0.1)
    local staying = {}
    for i = 1, 6 do staying[i] = { path = "/query/slowest?s=1.5" } end
    local res = gw:parallel(staying, { max = 6 })
    leaving:wait()
    for _, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      assert.equal(res[1].body, r.body)
    end
    -- nobody left waiting: the statement is cancelled on the server
    gw:start_parallel({ { path = "/query/slowest?s=30" }, { path = "/query/slowest?s=30" } }, { timeout = 0.4 }):wait()
    assert.is_true(H.wait_for(function()
      return H.psql1(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%slowest_mark%' AND state = 'active'"
        .. " AND pid <> pg_backend_pid()") == "0"
    end, 5))
  end)

  it("never holds more than cache_max_bytes", function()
    local max = 20000
    local g = H.start { dsn = db, scripts = scripts, config = { cache_max_bytes = max, tokens = { "tok-a" } } }
    wait_listening(3)
    local peak = 0
    for i = 1, 200 do
      local s = g:get_json("/query/padded?k=" .. i)
      assert.equal(200, s)
      if i % 10 == 0 then
        local _, text = g:get("/metrics")
        local bytes = tonumber(text:match("\nsluice_cache_bytes (%d+)"))
        assert.is_true(bytes <= max, tostring(bytes))
        if bytes > peak then peak = bytes end
      end
    end
    local _, text = g:get("/metrics")
    local evicted = tonumber(text:match('\nsluice_cache_evictions_total{query="padded"} (%d+)'))
    H.figure("200 entries of ~450 bytes into cache_max_bytes %d: peak sluice_cache_bytes %d, %d evicted", max, peak,
      evicted)
    assert.is_true(evicted > 100)
    -- the newest entries are still there
    local _, _, h = g:get_json("/query/padded?k=200")
    assert.equal("hit", h["sluice-cache"])
    g:stop()
  end)

  it("shows the cache in /admin/queries and /openapi.json", function()
    local s, body = gw:get_json("/admin/queries", { authorization = "Bearer adm" })
    assert.equal(200, s)
    local by = {}
    for _, q in ipairs(body.queries) do by[q.name] = q end
    assert.equal(60000, by.quote.cache.ttl_ms)
    assert.same({ "quotes" }, by.quote.cache.tables)
    assert.is_true(by.quote.cache.hits > 0)
    assert.equal(H.null, by.set_bid.cache)
    assert.equal(0, by.slow.cache.ttl_ms)
    local s2, doc = gw:get_json("/openapi.json")
    assert.equal(200, s2)
    assert.same({ "quotes" }, doc.paths["/query/quote"].get["x-sluice-cache"].tables)
    assert.is_nil(doc.paths["/query/set_bid"].post["x-sluice-cache"])
  end)

  describe("a cached query added by a reload", function()
    local db2, gw3
    -- Another database, so that its LISTEN connections are told apart from the ones above.
    local function listeners()
      return tonumber(H.psql1(db2, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'"
        .. " AND datname = current_database()"))
    end
    setup(function()
      db2 = H.createdb("cachereload")
      H.psql(db2, "CREATE TABLE prices (pair text PRIMARY KEY, bid numeric NOT NULL); INSERT INTO prices VALUES ('EURUSD', 1);")
      H.psql(db2, H.must(H.q(H.bin) .. " cache-triggers prices"))
      gw3 = H.start { dsn = db2, port = H.free_port(61301, 61399), scripts = { ["plain.lua"] = [==[
sluice.query "plain" { readonly = true, single = true, sql = [[ SELECT bid FROM prices WHERE pair = :pair ]] }
]==] } }
    end)
    teardown(function()
      if gw3 then pcall(gw3.stop, gw3) end
      if db2 then H.dropdb(db2) end
    end)

    it("gets its LISTEN at once: a write through psql is seen 100 ms after its commit", function()
      assert.equal(0, listeners()) -- nothing cached at start: no LISTEN connection
      H.writefile(gw3.dir .. "/scripts/cached.lua", [==[
sluice.query "price" { readonly = true, single = true, sql = [[ SELECT pair, bid FROM prices WHERE pair = :pair ]],
  cache = { ttl_ms = 60000, tables = { "prices" } } }
]==])
      H.must("kill -HUP " .. gw3.pid)
      local function price()
        local s, body, hdrs, raw = gw3:get_json("/query/price?pair=EURUSD")
        H.assert_ok(s, body, hdrs, raw)
        return body, hdrs["sluice-cache"]
      end
      -- served from the cache once the query is there and (with the change) its LISTEN is up
      assert.is_true(H.wait_for(function()
        local s, _, hdrs = gw3:get_json("/query/price?pair=EURUSD")
        return s == 200 and hdrs["sluice-cache"] == "hit"
      end, 10))
      local stale = 0
      for i = 1, 10 do
        local _, v = price()
        assert.equal("hit", v)
        local bid = 7000 + i
        H.psql(db2, ("UPDATE prices SET bid = %d WHERE pair = 'EURUSD'"):format(bid))
        H.sleep(0.1)
        if price().bid ~= bid then stale = stale + 1 end
      end
      H.figure("cached query added by a reload: writes through psql 10, stale reads 100 ms later: %d", stale)
      assert.equal(0, stale)
      assert.equal(1, listeners())
    end)
  end)

  describe("configuration", function()
    local function fails(src, want)
      local g = H.start { dsn = db, scripts = { ["bad.lua"] = src }, wait = false }
      assert.is_true(H.wait_for(function() return g:exit_code() ~= nil end, 10))
      assert.equal(1, g:exit_code())
      assert.truthy(g:log():find(want, 1, true), g:log())
    end
    it("refuses cache on a query that is not readonly", function()
      fails([[sluice.query "w" { sql = "UPDATE quotes SET bid = 1", cache = { tables = { "quotes" } } }]],
        'query "w": cache: only a readonly query can be cached')
    end)
    it("refuses cache without tables", function()
      fails([[sluice.query "r" { readonly = true, sql = "SELECT 1", cache = { ttl_ms = 10, tables = {} } }]],
        'query "r": cache: tables: name the tables')
    end)
    it("refuses a table the database does not have", function()
      fails([[sluice.query "r" { readonly = true, sql = "SELECT 1", cache = { tables = { "nope" } } }]],
        'query "r": cache.tables: no table "nope" in the database')
    end)
    it("refuses writes on a readonly query and coalesce on a write", function()
      fails([[sluice.query "r" { readonly = true, sql = "SELECT 1", writes = { "quotes" } }]],
        'query "r": writes: a readonly query writes nothing')
      fails([[sluice.query "w" { sql = "SELECT 1", coalesce = true }]],
        'query "w": coalesce: only a readonly query can be coalesced')
    end)
    it("refuses an unknown key in cache", function()
      fails([[sluice.query "r" { readonly = true, sql = "SELECT 1", cache = { tables = { "quotes" }, ttl = 5 } }]],
        'query "r": cache: unknown key "ttl"')
    end)
  end)
end)
