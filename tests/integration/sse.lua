-- sse.lua — a small Server-Sent Events client for the specs: one raw socket per stream, the
-- chunked HTTP/1.1 body decoded as it comes, events split as an EventSource splits them.
local socket = require "socket"

local M = {}
local Stream = {}
Stream.__index = Stream

-- Opens GET path on port with extra headers ({ name = value }); reads the head. Returns the
-- stream (stream.status, stream.headers) or nil, error.
function M.open(port, path, headers, opts)
  opts = opts or {}
  local c = socket.tcp4()
  if opts.rcvbuf then c:setoption("recv-buffer-size", opts.rcvbuf) end
  c:settimeout(opts.timeout or 5)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then return nil, err end
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  c:send(table.concat(lines, "\r\n") .. "\r\n\r\n")
  local s = setmetatable({ c = c, raw = "", text = "", events = {}, comments = {}, closed = false, headers = {} }, Stream)
  if opts.no_head then return s end
  local ok2, e2 = s:read_head()
  if not ok2 then return nil, e2 end
  return s
end

-- Reads more bytes into raw (false when the server closed or nothing came within timeout).
function Stream:fill(timeout)
  if self.closed then return false end
  -- wait for readability, then take whatever is there (receive(n) would wait for all n bytes)
  local r = socket.select({ self.c }, nil, timeout)
  if not r or #r == 0 then return false end
  self.c:settimeout(0)
  local data, err, partial = self.c:receive(65536)
  data = data or partial
  if data and #data > 0 then self.raw = self.raw .. data end
  if err == "closed" then
    self.closed = true
    -- without chunked encoding (HTTP/1 streams) the body ends where the connection does
    if not self.chunked then self.ended = true end
  end
  return data ~= nil and #data > 0
end

function Stream:read_head()
  local deadline = socket.gettime() + 5
  while not self.raw:find("\r\n\r\n", 1, true) do
    if socket.gettime() > deadline or (not self:fill(0.2) and self.closed) then return nil, "no head" end
  end
  local head, rest = self.raw:match("^(.-)\r\n\r\n(.*)$")
  self.status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  for line in head:gmatch("\r\n([^\r\n]*)") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then self.headers[k:lower()] = v end
  end
  self.chunked = (self.headers["transfer-encoding"] or ""):find("chunked") ~= nil
  self.raw = rest
  return true
end

-- Moves whole chunks from raw to text; true once the final chunk came.
function Stream:dechunk()
  if not self.chunked then
    self.text, self.raw = self.text .. self.raw, ""
    return false
  end
  while true do
    local size_hex, after = self.raw:match("^(%x+)[^\r\n]*\r\n()")
    if not size_hex then return false end
    local size = tonumber(size_hex, 16)
    if size == 0 then
      self.ended = true
      return true
    end
    if #self.raw < after + size + 1 then return false end
    self.text = self.text .. self.raw:sub(after, after + size - 1)
    self.raw = self.raw:sub(after + size + 2)
  end
end

-- Splits complete events out of text: { id, event, data } (data lines joined with "\n") into
-- events, comment lines into comments.
function Stream:parse()
  while true do
    local block, rest = self.text:match("^(.-)\n\n(.*)$")
    if not block then return end
    self.text = rest
    local ev, data = {}, nil
    for line in (block .. "\n"):gmatch("([^\n]*)\n") do
      if line:sub(1, 1) == ":" then
        self.comments[#self.comments + 1] = line
      else
        local k, v = line:match("^([^:]+): ?(.*)$")
        if k == "data" then
          data = data and (data .. "\n" .. v) or v
        elseif k then
          ev[k] = v
        end
      end
    end
    if data then
      ev.data = data
      self.events[#self.events + 1] = ev
    end
  end
end

-- Reads until pred(self) is true, the stream ends, or timeout seconds pass; returns pred(self).
function Stream:until_(pred, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while true do
    self:dechunk()
    self:parse()
    if pred(self) then return true end
    if self.ended or socket.gettime() > deadline then return pred(self) end
    if not self:fill(0.05) and self.closed then
      self:dechunk()
      self:parse()
      return pred(self)
    end
  end
end

-- Waits for n events in all; returns the events list.
function Stream:wait_events(n, timeout)
  self:until_(function(s) return #s.events >= n end, timeout)
  return self.events
end

function Stream:close() self.c:close() end

return M
