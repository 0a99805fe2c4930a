-- alerts_spec.lua — the Prometheus alert rules of docker/prometheus/: valid (`promtool check
-- rules`), their unit tests pass (`promtool test rules`), the compose Prometheus loads them
-- (`promtool check config`), every metric they use is one a real gateway exposes, and each alert
-- is documented in docs/metrics.md. promtool comes from PROMTOOL or PATH (`make test` fetches it
-- with scripts/promtool.sh); without it the tests fail.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local DIR = H.root .. "/docker/prometheus"

local function promtool()
  local p = os.getenv("PROMTOOL")
  if not p or p == "" then
    local out, rc = H.sh("command -v promtool")
    if rc == 0 then p = out:gsub("%s+$", "") end
  end
  assert(p and p ~= "", "promtool not found: run scripts/promtool.sh (make test does), or set PROMTOOL")
  return p
end

-- Runs promtool with args in DIR; returns ok, its output.
local function run(args)
  local out, rc, err = H.sh(("cd %s && %s %s"):format(H.q(DIR), H.q(promtool()), args))
  return rc == 0, out .. err
end

-- The alerts of alerts.yml: { name = expr text }.
local function alerts()
  local list, name, expr, block = {}, nil, nil, false
  for line in (assert(H.readfile(DIR .. "/alerts.yml")) .. "\n"):gmatch("([^\n]*)\n") do
    local a = line:match("^%s*%- alert: (%S+)")
    if a then
      name, block = a, false
    elseif name and line:match("^%s+expr: |%s*$") then
      block, expr = true, ""
    elseif name and line:match("^%s+expr: ") then
      list[name] = line:match("^%s+expr: (.*)$")
    elseif block and line:match("^%s+for: ") then
      list[name], block = expr, false
    elseif block then
      expr = expr .. line .. "\n"
    end
  end
  return list
end

describe("alert rules", function()
  it("pass promtool check rules", function()
    local ok, out = run("check rules alerts.yml")
    assert(ok, out)
    assert.truthy(out:find("SUCCESS", 1, true), out)
  end)

  it("pass their unit tests (promtool test rules)", function()
    local ok, out = run("test rules alerts_test.yml")
    assert(ok, out)
  end)

  it("the unit tests really test: a changed threshold fails them", function()
    local tmp = H.tmpdir("sluice-alerts")
    H.writefile(tmp .. "/alerts.yml", (H.readfile(DIR .. "/alerts.yml"):gsub("> 0%.05", "> 0.5")))
    H.writefile(tmp .. "/alerts_test.yml", H.readfile(DIR .. "/alerts_test.yml"))
    local out, rc, err = H.sh(("cd %s && %s test rules alerts_test.yml"):format(H.q(tmp), H.q(promtool())))
    H.sh("rm -rf " .. H.q(tmp))
    assert.is_not.equal(0, rc, out .. err)
    assert.truthy((out .. err):find("SluiceHighErrorRatio", 1, true), out .. err)
  end)

  it("are loaded by the Prometheus of docker/compose.yml (promtool check config)", function()
    local ok, out = run("check config prometheus.yml")
    assert(ok, out)
    assert.truthy(out:find("1 rule files found", 1, true), out)
    local compose = assert(H.readfile(H.root .. "/docker/compose.yml"))
    assert.truthy(compose:find("./prometheus/alerts.yml:/etc/prometheus/alerts.yml", 1, true))
  end)

  it("use only metrics the gateway exposes, and are documented in docs/metrics.md", function()
    local db = H.createdb("alerts")
    local gw = H.start { dsn = db, scripts = { ["q.lua"] = [[sluice.query "one" { readonly = true, sql = "SELECT 1 AS one" }]] } }
    local s, text = gw:get("/metrics")
    assert.equal(200, s)
    gw:stop()
    H.dropdb(db)
    local families = {}
    for fam in text:gmatch("# TYPE (%S+) ") do families[fam] = true end
    local doc = assert(H.readfile(H.root .. "/docs/metrics.md"))

    local n = 0
    for name, expr in pairs(alerts()) do
      n = n + 1
      assert.truthy(doc:find("`" .. name .. "`", 1, true), name .. " is not in docs/metrics.md")
      -- metric names: an identifier followed by a selector, a range or the end of an argument
      local selectors = expr:gsub("by%s*%b()", ""):gsub("without%s*%b()", "")
      for metric in selectors:gmatch("([%a_][%w_]*)%s*[{%[%)]") do
        if metric ~= "up" then -- Prometheus' own
          local fam = metric -- a histogram's series name its family without the suffix
          if not families[fam] then fam = metric:gsub("_bucket$", ""):gsub("_count$", ""):gsub("_sum$", "") end
          assert.truthy(families[fam], name .. " uses " .. metric .. ", which /metrics does not show")
          assert.truthy(doc:find("`" .. fam .. "`", 1, true), metric .. " is not in docs/metrics.md")
        end
      end
    end
    assert.is_true(n >= 5)
    for _, want in ipairs { "SluiceCircuitBreakerOpen", "SluicePoolSaturated", "SluiceReplicationLag",
      "SluiceHighErrorRatio", "SluiceSlowQueries" } do
      assert.is_string(alerts()[want], want)
    end
  end)
end)
