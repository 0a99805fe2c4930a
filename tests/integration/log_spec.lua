-- log_spec.lua — sluice.log through the real binary: a script's fields cannot replace or repeat
-- the line's own ts, level, worker and msg (JSON format), and a newline or other control
-- character in a message or field cannot start a forged line (text format).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

local FORGED = "2020-01-01T00:00:00.000Z error admin password changed"

local scripts = {
  ["log.lua"] = ([==[
sluice.endpoint "logit" { route = "GET /logit", handler = function(req)
  sluice.log.info("marker-7f3a\n%s\r\x1b[2K", {
    ts = "1999-01-01T00:00:00Z", level = "error", msg = "not the message", worker = 99,
    field_ts = "kept", user = "u\n%s",
  })
  return 200, { ok = true }
end }
]==]):format(FORGED, FORGED),
}

-- The lines of the gateway's log written by the handler.
local function script_lines(gw)
  local lines = {}
  for line in gw:log():gmatch("[^\n]+") do
    if line:find("marker-7f3a", 1, true) then lines[#lines + 1] = line end
  end
  return lines
end

describe("sluice.log", function()
  local db

  setup(function() db = H.createdb("log") end)
  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
  end)

  it("JSON: the script's ts, level, worker and msg become field_*; the line's own stay", function()
    local gw = H.start { dsn = db, scripts = scripts }
    H.assert_ok(gw:get_json("/logit"))
    local lines = script_lines(gw)
    assert.equal(1, #lines, gw:log())
    local line = lines[1]
    for _, k in ipairs { "ts", "level", "worker", "msg" } do
      local _, n = line:gsub('"' .. k .. '":', "")
      assert.equal(1, n, k .. " appears " .. n .. " times in " .. line)
    end
    local v = assert(H.decode(line))
    assert.equal("info", v.level)
    assert.equal("marker-7f3a\n" .. FORGED .. "\r\27[2K", v.msg)
    assert.truthy(v.ts:match("^%d%d%d%d%-%d%d%-%d%dT"))
    assert.is_number(v.worker)
    assert.equal("1999-01-01T00:00:00Z", v.field_field_ts)
    assert.equal("kept", v.field_ts)
    assert.equal("error", v.field_level)
    assert.equal("not the message", v.field_msg)
    assert.equal(99, v.field_worker)
    assert.equal("u\n" .. FORGED, v.user)
    for l in gw:log():gmatch("[^\n]+") do assert(H.decode(l), "not a JSON line: " .. l) end
    gw:stop()
  end)

  it("text: newlines and other control characters are escaped, so no line is forged", function()
    local gw = H.start { dsn = db, scripts = scripts, config = { log = { format = "text" } } }
    H.assert_ok(gw:get_json("/logit"))
    local log = gw:log()
    local lines = script_lines(gw)
    assert.equal(1, #lines, log)
    assert.truthy(lines[1]:match("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z info  "), lines[1])
    assert.truthy(lines[1]:find("marker-7f3a\\n" .. FORGED .. "\\r\\x1b[2K", 1, true), lines[1])
    for l in log:gmatch("[^\n]+") do
      assert.falsy(l:find(FORGED, 1, true) == 1, "a forged line: " .. l)
      assert.falsy(l:find("[\r\27]"), "a control character in: " .. l)
    end
    gw:stop()
  end)
end)
