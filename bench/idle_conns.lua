-- idle_conns.lua — opens N keep-alive HTTP/1.1 connections to HOST:PORT, sends one GET PATH on
-- each and reads its answer, then holds them all open and idle for HOLD seconds and exits
-- (closing them). It prints "ready OPEN FAILED" once every connection has been answered, so a
-- caller can measure the server while they sit idle. Needs `ulimit -n` above N.
-- Usage: luajit bench/idle_conns.lua HOST PORT [N=1000] [PATH=/health/live] [HOLD=5]
local socket = require "socket"
local host, port = arg[1], tonumber(arg[2])
local n, path, hold = tonumber(arg[3] or 1000), arg[4] or "/health/live", tonumber(arg[5] or 5)
assert(host and port, "usage: luajit idle_conns.lua HOST PORT [N] [PATH] [HOLD]")

local req = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nConnection: keep-alive\r\n\r\n"

-- Reads one response: the status line, headers up to the blank line, Content-Length bytes.
local function read_response(s)
  local status = s:receive("*l")
  if not status or not status:match("^HTTP/1%.%d 2") then return false end
  local len = 0
  while true do
    local h = s:receive("*l")
    if not h then return false end
    if h == "" then break end
    local v = h:lower():match("^content%-length:%s*(%d+)")
    if v then len = tonumber(v) end
  end
  return len == 0 or s:receive(len) ~= nil
end

local conns, failed = {}, 0
for _ = 1, n do
  local s = socket.tcp()
  s:settimeout(5)
  local ok = s:connect(host, port) and s:send(req) and read_response(s)
  if ok then conns[#conns + 1] = s else failed = failed + 1; s:close() end
end
io.write(string.format("ready %d %d\n", #conns, failed))
io.flush()
socket.sleep(hold)
for _, s in ipairs(conns) do s:close() end
