-- haload.lua — one client of the HA specs, run in the background by H.start_load: requests one
-- at a time against a gateway (or HAProxy), each answer written as a line to DIR/out:
--   n t0 t1 status code outcome [transport error]
-- (t0/t1: when it was sent and answered, seconds since the epoch; status 0 when there was no HTTP
-- answer; code and outcome from a JSON error, "-" when none).
-- Usage: luajit haload.lua write|read URL DIR RUN MAX_SECS PAUSE_MS OWNER_PID TIMEOUT_S
--   write: POST URL with {"id": n, "run": RUN}, n = 1, 2, 3, ...   read: GET URL
-- Stops when DIR/stop appears, after MAX_SECS, or when OWNER_PID (the spec) is gone.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local ffi = require "ffi"
ffi.cdef [[ int kill(int pid, int sig); ]]

local kind, url, dir, run, max_secs, pause_ms, owner, timeout = unpack(arg)
assert(kind == "write" or kind == "read", "kind: write or read")
max_secs, pause_ms, owner, timeout = tonumber(max_secs), tonumber(pause_ms), tonumber(owner), tonumber(timeout)

local out = assert(io.open(dir .. "/out", "w"))
local started = H.now()
local n = 0
while true do
  if H.readfile(dir .. "/stop") or H.now() - started > max_secs then break end
  if n % 50 == 0 and ffi.C.kill(owner, 0) ~= 0 then break end
  n = n + 1
  local t0 = H.now()
  local status, body
  if kind == "write" then
    status, body = H.http("POST", url, H.encode({ id = n, run = run }), nil, timeout)
  else
    status, body = H.http("GET", url, nil, nil, timeout)
  end
  local t1 = H.now()
  local code, outcome, err = "-", "-", ""
  if not status then
    err = tostring(body):gsub("%s+", "_")
  elseif status >= 300 then
    local v = H.decode(body)
    if type(v) == "table" and type(v.error) == "table" then
      code = tostring(v.error.code or "-")
      outcome = tostring(v.error.outcome or "-")
    else
      err = "not_json:" .. tostring(body):sub(1, 60):gsub("%s+", "_")
    end
  end
  out:write(("%d %.6f %.6f %d %s %s %s\n"):format(n, t0, t1, status or 0, code, outcome, err))
  out:flush()
  if pause_ms > 0 then H.sleep(pause_ms / 1000) end
end
out:close()
