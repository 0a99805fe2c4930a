-- haload.lua — one client of the HA specs, run in the background by H.start_load: requests one
-- at a time against a gateway (or HAProxy), each answer written as a line to DIR/out:
--   n t0 t1 status code outcome [detail]
-- (t0/t1: when it was sent and answered, seconds since the epoch; status 0 when there was no HTTP
-- answer; code and outcome from a JSON error, "-" when none; detail: the error's message, the
-- start of a body that is not a JSON error, or the transport error, blanks as "_").
-- Usage: luajit haload.lua write|read URL DIR RUN MAX_SECS PAUSE_MS OWNER_PID TIMEOUT_S
--   write: POST URL with {"id": n, "run": RUN}, n = 1, 2, 3, ...   read: GET URL
-- Stops when DIR/stop appears, after MAX_SECS, or when OWNER_PID (the spec) is gone.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"
local ffi = require "ffi"
ffi.cdef [[ int kill(int pid, int sig); ]]

local kind, url, dir, run, max_secs, pause_ms, owner, timeout = unpack(arg)
assert(kind == "write" or kind == "read", "kind: write or read")
max_secs, pause_ms, owner, timeout = tonumber(max_secs), tonumber(pause_ms), tonumber(owner), tonumber(timeout)

-- One request on a connection of its own, sent with a single write and TCP_NODELAY (luasocket's
-- http module writes each header line apart, which costs a delayed ACK, 40 ms, per request
-- through a proxy). Returns status, body; nil, error when there is no HTTP answer.
local host, port, path = url:match("^http://([^:/]+):(%d+)(/.*)$")
assert(host, "URL: http://HOST:PORT/PATH")
local function request(method, body)
  local c = socket.tcp()
  c:settimeout(timeout)
  local ok, err = c:connect(host, tonumber(port))
  if not ok then c:close(); return nil, "connect:" .. tostring(err) end
  c:setoption("tcp-nodelay", true)
  local req = { method, " ", path, " HTTP/1.1\r\nHost: ", host, ":", port, "\r\nConnection: close\r\n" }
  if body then
    req[#req + 1] = "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  else
    req[#req + 1] = "\r\n"
  end
  ok, err = c:send(table.concat(req))
  if not ok then c:close(); return nil, "send:" .. tostring(err) end
  local data, rerr, partial = c:receive("*a")
  c:close()
  data = data or partial or ""
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, "receive:" .. tostring(rerr) .. ":" .. data:sub(1, 40) end
  return status, data:match("\r\n\r\n(.*)$") or ""
end

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
    status, body = request("POST", H.encode({ id = n, run = run }))
  else
    status, body = request("GET")
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
      err = tostring(v.error.message or ""):sub(1, 80):gsub("%s+", "_")
    else
      err = "not_json:" .. tostring(body):sub(1, 60):gsub("%s+", "_")
    end
  end
  out:write(("%d %.6f %.6f %d %s %s %s\n"):format(n, t0, t1, status or 0, code, outcome, err))
  out:flush()
  if pause_ms > 0 then H.sleep(pause_ms / 1000) end
end
out:close()
