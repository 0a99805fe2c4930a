-- events_spec.lua — GET /events/{name} through the real binary against a real PostgreSQL: each
-- NOTIFY one event with an increasing id (multi-line payloads as several data: lines), replay
-- after Last-Event-ID, the keepalive comment, overflow of a stream that falls behind while
-- others get everything, reset after pg_terminate_backend of the LISTEN backend, one LISTEN
-- backend per pool whatever the streams and workers, 401/403/404/405, filters that drop,
-- rewrite, fail or run away, the metrics, /openapi.json, reload, a fan-out to 200 streams,
-- HTTP/2 and TLS, the last event at a stop, and bad channel definitions refused at start.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local SSE = require "sse"

local TOKEN = "events-t0ken"

local scripts = {
  ["channels.lua"] = [==[
sluice.channel "quotes" { listen = "quotes", buffer = 50 }
sluice.channel "quotes_small" { listen = "quotes", buffer = 5 }
sluice.channel "quotes_big" { listen = "quotes", buffer = 2000 }
sluice.channel "quotes_mid" { listen = "quotes", buffer = 800 }
sluice.channel "ticks" { listen = "Ticks Channel", keepalive = 0.3 }
sluice.channel "private" { listen = "quotes", auth = "bearer" }
sluice.channel "policed" { listen = "quotes", auth = function(req) return req.query.key == "open" end }
sluice.channel "filtered" {
  listen = "quotes",
  filter = function(payload, req)
    if payload == "drop" then return nil end
    if payload == "boom" then error("filter bug") end
    if payload == "loop" then while true do end end
    if payload == "number" then return 42 end
    if payload:sub(1, 3) == "up:" then return payload:sub(4):upper() .. "\nfor " .. (req.query.who or "?") end
    return true
  end,
}
]==],
}

local function notify(db, channel, payload)
  H.psql(db, ("SELECT pg_notify(%s, %s);"):format(
    "'" .. channel:gsub("'", "''") .. "'", "'" .. payload:gsub("'", "''") .. "'"))
end

local function listen_backends(db)
  return tonumber(H.psql1(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'"
    .. " AND datname = current_database()"))
end

local function metric(gw, pattern)
  local _, body = gw:get("/metrics")
  return tonumber((body or ""):match(pattern:gsub("([{}\"%%.%-])", "%%%1") .. " (%d+)"))
end

-- Opens a stream and waits until the hub counts it (the subscription is made before the head
-- leaves, so the head is enough).
local function open(gw, name, headers, opts)
  local s = assert(SSE.open(gw.port, "/events/" .. name, headers, opts))
  return s
end

describe("events", function()
  local db, gw

  setup(function()
    db = H.createdb("events")
    gw = H.start { dsn = db, scripts = scripts, config = { workers = 2, tokens = { TOKEN }, client_timeout = 2 } }
    -- the LISTEN connection is made at start: wait for it
    assert(H.wait_for(function() return listen_backends(db) == 1 end, H.scaled(5)))
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("delivers each NOTIFY as one event, ids increasing by one, a data: line per payload line", function()
    local s = open(gw, "quotes")
    assert.equal(200, s.status)
    assert.equal("text/event-stream", s.headers["content-type"])
    assert.equal("no-cache", s.headers["cache-control"])
    notify(db, "quotes", "EURUSD 1.0842")
    notify(db, "quotes", "line one\nline two\r\nline three")
    notify(db, "quotes", "")
    local evs = s:wait_events(3)
    assert.equal(3, #evs)
    assert.equal("EURUSD 1.0842", evs[1].data)
    assert.equal("line one\nline two\nline three", evs[2].data)
    assert.equal("", evs[3].data)
    local id1 = assert(tonumber(evs[1].id))
    assert.equal(id1 + 1, tonumber(evs[2].id))
    assert.equal(id1 + 2, tonumber(evs[3].id))
    assert.is_nil(evs[1].event)
    s:close()
  end)

  it("replays what the ring holds after Last-Event-ID, and resets a client whose events are gone", function()
    local s = open(gw, "quotes")
    for i = 1, 4 do notify(db, "quotes", "r" .. i) end
    local evs = s:wait_events(4)
    s:close()
    local r = open(gw, "quotes", { ["Last-Event-ID"] = evs[2].id })
    local got = r:wait_events(2)
    assert.equal("r3", got[1].data)
    assert.equal(evs[3].id, got[1].id)
    assert.equal("r4", got[2].data)
    notify(db, "quotes", "r5")
    got = r:wait_events(3)
    assert.equal("r5", got[3].data)
    r:close()

    -- quotes_small holds 5 events: an id 8 events back is gone, one from another process too.
    -- Its hub may still get r5 after this stream opened (the listener feeds the two channels of
    -- "quotes" one after the other), so its events are picked by their data.
    local small = open(gw, "quotes_small")
    for i = 1, 8 do notify(db, "quotes", "s" .. i) end
    assert.truthy(small:until_(function(x)
      return #x.events > 0 and x.events[#x.events].data == "s8"
    end, 5))
    local sevs = {}
    for _, e in ipairs(small.events) do
      local n = tonumber(e.data:match("^s(%d)$"))
      if n then sevs[n] = e end
    end
    small:close()
    for _, id in ipairs { sevs[1].id, "12", "99999999999999999" } do
      local g = open(gw, "quotes_small", { ["Last-Event-ID"] = id })
      local first = g:wait_events(1, 1)[1]
      assert.equal("reset", first and first.event, "Last-Event-ID " .. id)
      g:close()
    end
    -- an id the ring covers exactly: only what follows it
    local g = open(gw, "quotes_small", { ["Last-Event-ID"] = sevs[4].id })
    local rep = g:wait_events(4)
    assert.equal("s5", rep[1].data)
    assert.equal("s8", rep[4].data)
    g:close()
  end)

  it("sends a comment line on an idle stream every keepalive seconds", function()
    local s = open(gw, "ticks")
    assert.truthy(s:until_(function(x) return #x.comments >= 3 end, 3))
    assert.equal(": keepalive", s.comments[#s.comments])
    notify(db, "Ticks Channel", "t1")
    assert.equal("t1", s:wait_events(1)[1].data)
    s:close()
  end)

  it("closes a stream that falls buffer events behind with event: overflow; the others get everything", function()
    local slow = open(gw, "quotes_small", nil, { rcvbuf = 4096 })
    local reader = open(gw, "quotes_big")
    local before = metric(gw, 'sluice_events_dropped_total{channel="quotes_small",reason="overflow"}') or 0
    -- 1000 events of 7 kB: more than the kernel buffers of the slow client's connection hold (the
    -- gateway's send buffer grows to 4 MiB), so its writes wait while the events go by
    for _ = 1, 5 do
      H.psql(db, "SELECT pg_notify('quotes', repeat('x', 7000) || g) FROM generate_series(1, 200) AS g;")
    end
    assert.equal(1000, #reader:wait_events(1000, 30))
    -- the slow client reads at last: what was written, then event: overflow, then the end
    assert.truthy(slow:until_(function(x) return x.ended end, 10))
    local last = slow.events[#slow.events]
    assert.equal("overflow", last and last.event)
    assert.truthy(#slow.events < 1000)
    assert.truthy(metric(gw, 'sluice_events_dropped_total{channel="quotes_small",reason="overflow"}') > before)
    slow:close()
    reader:close()
  end)

  it("cuts a stream behind whose client takes nothing for client_timeout", function()
    local stuck = open(gw, "quotes_mid", nil, { rcvbuf = 4096 })
    -- 700 events of 7 kB fill the connection's kernel buffers (4 MiB) while the ring (800) still
    -- holds what the stream has not had: it waits on its write, not behind
    H.psql(db, "SELECT pg_notify('quotes', repeat('x', 7000) || g) FROM generate_series(1, 700) AS g;")
    H.sleep(1)
    -- 1000 more: the event after the stream's position leaves the ring while its write still waits
    for _ = 1, 5 do
      H.psql(db, "SELECT pg_notify('quotes', repeat('x', 7000) || g) FROM generate_series(1, 200) AS g;")
    end
    -- nothing read for client_timeout (2 s): the connection is shut down, no overflow event can go
    assert.truthy(H.wait_for(function() return gw:log():find("took nothing for client_timeout", 1, true) end, 6))
    assert.truthy(stuck:until_(function(x) return x.closed end, 20))
    assert.truthy(#stuck.events < 1700)
    local last = stuck.events[#stuck.events]
    assert.is_nil(last and last.event)
    stuck:close()
  end)

  it("keeps one LISTEN backend for the pool whatever the number of streams and workers", function()
    local streams = {}
    for i = 1, 30 do
      local names = { "quotes", "ticks", "filtered", "quotes_small", "quotes_big", "quotes_mid" }
      streams[i] = open(gw, names[i % 6 + 1], nil)
    end
    assert.equal(1, listen_backends(db))
    for _, s in ipairs(streams) do s:close() end
  end)

  it("sends event: reset to every stream when the LISTEN backend is terminated, then LISTENs again", function()
    local a, b = open(gw, "quotes"), open(gw, "ticks")
    local pid = H.psql1(db, "SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice-listen'"
      .. " AND datname = current_database()")
    H.psql(db, "SELECT pg_terminate_backend(" .. pid .. ");")
    for _, s in ipairs { a, b } do
      assert.truthy(s:until_(function(x) return #x.events >= 1 end, 5))
      assert.equal("reset", s.events[1].event)
    end
    assert(H.wait_for(function() return listen_backends(db) == 1 end, H.scaled(5)))
    local pid2 = H.psql1(db, "SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice-listen'"
      .. " AND datname = current_database()")
    assert.are_not.equal(pid, pid2)
    notify(db, "quotes", "after reset")
    notify(db, "Ticks Channel", "tick after reset")
    assert.equal("after reset", a:wait_events(2)[2].data)
    assert.equal("tick after reset", b:wait_events(2)[2].data)
    a:close()
    b:close()
  end)

  it("answers 401, 403, 404 and 405 as the other endpoints do", function()
    H.assert_error(401, "unauthorized", gw:get_json("/events/private"))
    H.assert_error(403, "forbidden", gw:get_json("/events/private", { authorization = "Bearer nope" }))
    H.assert_error(403, "forbidden", gw:get_json("/events/policed?key=shut"))
    H.assert_error(404, "not_found", gw:get_json("/events/nope"))
    H.assert_error(404, "not_found", gw:get_json("/events/quotes/extra"))
    H.assert_error(405, "method_not_allowed", gw:post_json("/events/quotes", {}))
    local ok = open(gw, "private", { Authorization = "Bearer " .. TOKEN })
    assert.equal(200, ok.status)
    ok:close()
    local pol = open(gw, "policed?key=open")
    assert.equal(200, pol.status)
    notify(db, "quotes", "for the policed")
    assert.equal("for the policed", pol:wait_events(1)[1].data)
    pol:close()
  end)

  it("filters per stream: drop, rewrite, pass; an error or a runaway drops that event only, counted", function()
    local f = open(gw, "filtered?who=ann")
    local plain = open(gw, "quotes")
    local errors0 = metric(gw, 'sluice_events_dropped_total{channel="filtered",reason="filter_error"}') or 0
    local dropped0 = metric(gw, 'sluice_events_dropped_total{channel="filtered",reason="filter"}') or 0
    for _, p in ipairs { "drop", "up:eur", "boom", "loop", "number", "plain" } do notify(db, "quotes", p) end
    local evs = f:wait_events(2, 10)
    assert.equal(2, #evs)
    assert.equal("EUR\nfor ann", evs[1].data)
    assert.equal("plain", evs[2].data)
    assert.truthy(tonumber(evs[2].id) > tonumber(evs[1].id))
    assert.equal(6, #plain:wait_events(6))
    assert.equal(errors0 + 3, metric(gw, 'sluice_events_dropped_total{channel="filtered",reason="filter_error"}'))
    assert.equal(dropped0 + 1, metric(gw, 'sluice_events_dropped_total{channel="filtered",reason="filter"}'))
    assert.truthy(gw:log():find("filter ran for more than 100 ms", 1, true))
    -- more than a write's worth of events dropped in a row, in one transaction: the next one still comes
    H.psql(db, "SELECT pg_notify('quotes', 'drop') FROM generate_series(1, 20); SELECT pg_notify('quotes', 'after drops');")
    assert.equal("after drops", (f:wait_events(3)[3] or {}).data)
    f:close()
    plain:close()
  end)

  it("counts subscribers and deliveries in /metrics and lists the channels in /openapi.json", function()
    local s1, s2 = open(gw, "ticks"), open(gw, "ticks")
    assert.equal(2, metric(gw, 'sluice_events_subscribers{channel="ticks"}'))
    local d0 = metric(gw, 'sluice_events_delivered_total{channel="ticks"}')
    notify(db, "Ticks Channel", "m")
    s1:wait_events(1)
    s2:wait_events(1)
    assert.equal(d0 + 2, metric(gw, 'sluice_events_delivered_total{channel="ticks"}'))
    s1:close()
    s2:close()
    -- a closed stream is noticed at its next write (ticks: a keepalive every 0.3 s)
    assert(H.wait_for(function() return metric(gw, 'sluice_events_subscribers{channel="ticks"}') == 0 end, 3))
    local status, doc = gw:get_json("/openapi.json")
    assert.equal(200, status)
    local op = doc.paths["/events/quotes"] and doc.paths["/events/quotes"].get
    assert.truthy(op, "GET /events/quotes in /openapi.json")
    assert.truthy(op.responses["200"].content["text/event-stream"])
    assert.truthy(doc.paths["/events/private"].get.security)
  end)

  it("fans one NOTIFY out to 200 streams over both workers", function()
    local streams = {}
    for i = 1, 200 do streams[i] = open(gw, "quotes", nil, { timeout = 10 }) end
    local t0 = H.now()
    notify(db, "quotes", "fan-out")
    for _, s in ipairs(streams) do
      local e = s:wait_events(1, 10)[1]
      assert.equal("fan-out", e and e.data)
    end
    H.figure("200 streams got one NOTIFY within %.0f ms (psql's commit included)", (H.now() - t0) * 1000)
    for _, s in ipairs(streams) do s:close() end
  end)

  it("on reload keeps the streams of channels that remain and closes those removed with a last event", function()
    local kept, removed = open(gw, "quotes"), open(gw, "ticks")
    local sdir = gw.dir .. "/scripts"
    H.writefile(sdir .. "/channels.lua", [==[
sluice.channel "quotes" { listen = "quotes", buffer = 50 }
]==])
    H.must("kill -HUP " .. gw.pid)
    assert.truthy(removed:until_(function(x) return x.ended end, 5))
    local last = removed.events[#removed.events]
    assert.equal("closed", last and last.event)
    assert(H.wait_for(function() return gw:get("/events/ticks") == 404 end, 5))
    notify(db, "quotes", "after reload")
    assert.equal("after reload", kept:wait_events(1)[1].data)
    kept:close()
    removed:close()
  end)

  it("serves a stream over HTTP/2 too, as an ordinary response stream", function()
    local gw2 = H.start { dsn = db, scripts = scripts, config = { workers = 1, http2 = true, tokens = { TOKEN } } }
    local out = gw2.dir .. "/h2.out"
    H.must(("(curl -sSN --http2-prior-knowledge --max-time 4 -w '\\nproto %%{http_version}\\n' %s >%s 2>&1 &)")
      :format(H.q(gw2:url("/events/quotes")), H.q(out)))
    assert(H.wait_for(function() return (H.readfile(out) or ""):find("sluice event stream", 1, true) end, 3))
    notify(db, "quotes", "over h2")
    assert(H.wait_for(function() return (H.readfile(out) or ""):find("proto 2", 1, true) end, 6))
    local body = H.readfile(out)
    assert.truthy(body:find("\ndata: over h2\n", 1, true), body)
    gw2:stop()
  end)

  it("refuses a bad channel definition at start, naming the channel and the key", function()
    local cases = {
      { 'sluice.channel "c" { listne = "x" }', 'channel "c": unknown key "listne"' },
      { 'sluice.channel "c" { buffer = 0 }', 'channel "c": buffer: expected an integer from 1 to 1000000' },
      { 'sluice.channel "c" { buffer = "many" }', 'channel "c": buffer: expected a positive integer' },
      { 'sluice.channel "c" { listen = ("x"):rep(64) }', 'channel "c": listen: expected a PostgreSQL channel name' },
      { 'sluice.channel "c" { keepalive = 0 }', 'channel "c": keepalive: expected seconds' },
      { 'sluice.channel "c" { keepalive = 0.0001 }', 'channel "c": keepalive: expected seconds, at least 0.1' },
      { 'sluice.channel "c" { filter = "yes" }', 'channel "c": filter: expected a function' },
      { 'sluice.channel "c" { pool = "nope" }', 'channel "c": no pool named "nope"' },
      { 'sluice.channel "c" { auth = "bearer" }', 'channel "c":' },
      { 'sluice.channel "a b" { }', 'channel "a b": a name is letters' },
      { 'sluice.channel "c" { } sluice.channel "c" { }', 'channel "c" is defined twice' },
    }
    for _, c in ipairs(cases) do
      local bad = H.start { dsn = db, scripts = { ["bad.lua"] = c[1] }, wait = false }
      assert(H.wait_for(function() return bad:exit_code() end, H.scaled(5)), c[1])
      assert.equal(1, bad:exit_code(), c[1])
      assert.truthy(bad:log():find(c[2], 1, true), c[1] .. " -> " .. bad:log())
    end
  end)

  it("ends every stream with event: closed when the gateway stops, and exits 0", function()
    local gw3 = H.start { dsn = db, scripts = scripts, config = { workers = 2, tokens = { TOKEN } } }
    local a, b = open(gw3, "quotes"), open(gw3, "ticks")
    assert.equal(0, gw3:stop())
    for _, s in ipairs { a, b } do
      assert.truthy(s:until_(function(x) return x.ended end, 5))
      local last = s.events[#s.events]
      assert.equal("closed", last and last.event)
      assert.equal("the gateway is stopping", last.data)
    end
  end)

  it("streams over TLS as over plain HTTP/1.1", function()
    local dir = H.tmpdir("sluice-events-tls")
    H.must(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2"
      .. " -subj /CN=localhost >/dev/null 2>&1"):format(H.q(dir)))
    local gw4 = H.start { dsn = db, scripts = scripts, config = { workers = 1, tokens = { TOKEN },
      tls = { cert = dir .. "/cert.pem", key = dir .. "/key.pem" } }, wait = false }
    assert(H.wait_for(function()
      return H.sh(("curl -sk -o /dev/null -w '%%{http_code}' https://127.0.0.1:%d/health/live"):format(gw4.port)) == "200"
    end, 10))
    local out = dir .. "/tls.out"
    H.must(("(curl -sSkN --max-time 4 https://127.0.0.1:%d/events/quotes >%s 2>&1 &)"):format(gw4.port, H.q(out)))
    assert(H.wait_for(function() return (H.readfile(out) or ""):find("sluice event stream", 1, true) end, 3))
    notify(db, "quotes", "over tls")
    assert(H.wait_for(function() return (H.readfile(out) or ""):find("data: over tls", 1, true) end, 3),
      H.readfile(out))
    gw4:stop()
    H.sh("rm -rf " .. H.q(dir))
  end)
end)
