-- rywload.lua — one client process of ryw_spec: write-then-read pairs against a gateway, one pair
-- at a time. Each pair adds a note (POST /query/add) and reads it back (GET /query/seen), sending
-- the write's Sluice-LSN with the read ("token") or not ("bare"). One line per pair on stdout:
--   <id> <seen 1|0> <standby 1|0> <write status> <read status> <read ms>
-- Usage: luajit rywload.lua BASE_URL PAIRS token|bare TAG
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"

local base, pairs_n, mode, tag = arg[1], tonumber(arg[2]), arg[3], arg[4] or "c"
http.TIMEOUT = 20

local function request(method, path, body, headers)
  local chunks = {}
  headers = headers or {}
  local source
  if body then
    headers["content-type"] = "application/json"
    headers["content-length"] = tostring(#body)
    source = ltn12.source.string(body)
  end
  local ok, status, hdrs = http.request {
    url = base .. path, method = method, headers = headers, source = source, sink = ltn12.sink.table(chunks),
  }
  if not ok then return nil, nil, {} end
  local okj, v = pcall(cjson.decode, table.concat(chunks))
  return status, okj and v or nil, hdrs or {}
end

for i = 1, pairs_n do
  local ws, wb, wh = request("POST", "/query/add", cjson.encode { body = tag .. "-" .. i })
  local id = type(wb) == "table" and wb.id or 0
  local headers = {}
  if mode == "token" then headers["sluice-lsn"] = wh["sluice-lsn"] or "missing" end
  local t0 = socket.gettime()
  local rs, rb = request("GET", "/query/seen?id=" .. id, nil, headers)
  local ms = (socket.gettime() - t0) * 1000
  local seen = type(rb) == "table" and rb.seen == true
  local standby = type(rb) == "table" and rb.standby == true
  io.write(("%d %d %d %s %s %.1f\n"):format(id, seen and 1 or 0, standby and 1 or 0, tostring(ws), tostring(rs), ms))
  io.flush()
end
