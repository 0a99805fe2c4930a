-- livequotes_spec.lua — the example service's live quotes end to end: `sluice migrate up` installs
-- the trigger that NOTIFYs each new quote, GET /events/quotes streams them (with ?pair= as a
-- filter), and the page GET /live shows them in a real headless browser (Debian's chromium,
-- driven through chromedriver's WebDriver HTTP API): insert a quote, see it on the page.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local SSE = require "sse"

local CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

-- A WebDriver session: driver:call(method, path, body) -> value (errors on a WebDriver error).
local Driver = {}
Driver.__index = Driver

function Driver:call(method, path, body)
  local status, raw = H.http(method, self.base .. path, body and H.encode(body) or nil,
    { ["content-type"] = "application/json" }, H.scaled(30))
  local v = raw and H.decode(raw)
  assert(status == 200, ("webdriver %s %s: %s %s"):format(method, path, tostring(status), tostring(raw)))
  return v and v.value
end

function Driver:eval(js)
  return self:call("POST", "/session/" .. self.session .. "/execute/sync", { script = js, args = H.array() })
end

local function start_driver(dir)
  local port = H.free_port(61650, 61699)
  H.must(("(%s --port=%d >%s 2>&1 & echo $! >%s)"):format(DRIVER, port, H.q(dir .. "/driver.log"),
    H.q(dir .. "/driver.pid")))
  local d = setmetatable({ base = "http://127.0.0.1:" .. port, pid = tonumber(H.readfile(dir .. "/driver.pid")) }, Driver)
  assert(H.wait_for(function() return H.http("GET", d.base .. "/status", nil, nil, 1) == 200 end, H.scaled(10)),
    "chromedriver did not start: " .. (H.readfile(dir .. "/driver.log") or ""))
  local v = d:call("POST", "/session", { capabilities = { alwaysMatch = { ["goog:chromeOptions"] = {
    binary = CHROMIUM,
    args = H.array { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--user-data-dir=" .. dir .. "/profile" },
  } } } })
  d.session = v.sessionId
  return d
end

describe("live quotes of the example service", function()
  local db, gw, tmp, driver

  setup(function()
    db = H.createdb("live")
    tmp = H.tmpdir("sluice-live")
    local cfg = tmp .. "/migrate.lua"
    local scripts = { H.root .. "/lua/endpoints/*.lua", H.root .. "/lua/policy.lua" }
    H.write_config(cfg, { pools = { primary = { url = db } }, migrations = H.root .. "/migrations", scripts = scripts })
    local out, rc, err = H.sh(("cd %s && %s migrate --config %s up"):format(H.q(H.root), H.q(H.bin), H.q(cfg)))
    assert(rc == 0, ("sluice migrate up failed (exit %s):\n%s%s"):format(tostring(rc), out, err))
    gw = H.start { dsn = db, config = { scripts = scripts } }
  end)

  teardown(function()
    if driver then
      pcall(driver.call, driver, "DELETE", "/session/" .. tostring(driver.session))
      H.sh("kill " .. driver.pid)
    end
    H.cleanup()
    if tmp then H.sh("rm -rf " .. H.q(tmp)) end
    if db then H.dropdb(db) end
  end)

  it("streams each inserted quote as JSON; ?pair= keeps one pair", function()
    local all = assert(SSE.open(gw.port, "/events/quotes"))
    local gbp = assert(SSE.open(gw.port, "/events/quotes?pair=GBPUSD"))
    H.psql(db, "INSERT INTO quotes (pair, bid, ask) VALUES ('EURUSD', 1.07001, 1.07012), ('GBPUSD', 1.25001, 1.25013);")
    local evs = all:wait_events(2)
    local q1, q2 = H.decode(evs[1].data), H.decode(evs[2].data)
    assert.equal("EURUSD", q1.pair)
    assert.equal(1.07001, q1.bid)
    assert.equal("GBPUSD", q2.pair)
    local only = gbp:wait_events(1)
    assert.equal("GBPUSD", H.decode(only[1].data).pair)
    assert.equal(evs[2].id, only[1].id)
    -- a rolled-back insert publishes nothing
    H.psql(db, "BEGIN; INSERT INTO quotes (pair, bid, ask) VALUES ('EURUSD', 9, 9); ROLLBACK;")
    H.psql(db, "INSERT INTO quotes (pair, bid, ask) VALUES ('USDJPY', 151.201, 151.215);")
    evs = all:wait_events(3)
    assert.equal("USDJPY", H.decode(evs[3].data).pair)
    all:close()
    gbp:close()
  end)

  it("GET /live is an HTML page", function()
    local status, body, headers = gw:get("/live")
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", headers["content-type"])
    assert.truthy(body:find("new EventSource", 1, true))
  end)

  it("shows a quote inserted after the page loaded, in headless chromium", function()
    driver = start_driver(tmp)
    driver:call("POST", "/session/" .. driver.session .. "/url", { url = gw:url("/live") })
    assert.truthy(H.wait_for(function()
      return driver:eval("return document.getElementById('status').textContent") == "live"
    end, H.scaled(15)), "the page's EventSource did not open")
    local id = H.psql1(db, "INSERT INTO quotes (pair, bid, ask) VALUES ('AUDUSD', 0.65432, 0.65447) RETURNING id;")
    local text = H.wait_for(function()
      local t = driver:eval("const r = document.querySelector('#quotes tr'); return r ? r.dataset.id + ' ' + r.textContent : ''")
      return t ~= "" and t or nil
    end, H.scaled(10))
    assert.truthy(text, "no quote appeared on the page")
    -- the row: data-id, then pair, bid, ask and time as the page's cells
    local want = id .. " AUDUSD0.654320.65447"
    assert.equal(want, text:sub(1, #want))
  end)
end)
