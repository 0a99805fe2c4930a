-- httploop.lua — a client loop for the shutdown specs: GETs one URL over and over (a new
-- connection each time) until SECONDS have passed, pausing PAUSE_MS between requests (and 10 ms
-- after a transport failure). One line per request on stdout:
--   <start time> <end time> <status | ERR:<reason>>
-- Usage: luajit httploop.lua URL SECONDS PAUSE_MS
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"

local url, seconds, pause = arg[1], tonumber(arg[2]), tonumber(arg[3] or "0") / 1000
http.TIMEOUT = 10
local stop = socket.gettime() + seconds
while socket.gettime() < stop do
  local t0 = socket.gettime()
  local ok, status = http.request { url = url, sink = ltn12.sink.null() }
  local t1 = socket.gettime()
  local what = ok and tostring(status) or ("ERR:" .. tostring(status):gsub("%s", "_"))
  io.write(("%.4f %.4f %s\n"):format(t0, t1, what))
  io.flush()
  if not ok then socket.sleep(0.01) elseif pause > 0 then socket.sleep(pause) end
end
