-- cache_fresh.lua — freshness probe for bench/cache.sh: for SECS seconds, writes a new bid for
-- id 1 through the gateway, then reads it back through the cached query at once, and counts the
-- reads that did not see the write. Prints "pairs=N stale=N".
--   luajit bench/cache_fresh.lua http://127.0.0.1:61711 5
local http = require "socket.http"
local socket = require "socket"
local ltn12 = require "ltn12"

local url, secs = arg[1], tonumber(arg[2] or "5")
local pairs_, stale, i = 0, 0, 0
local stop = socket.gettime() + secs
while socket.gettime() < stop do
  i = i + 1
  local bid = 900000 + i
  local body = string.format('{"id":1,"bid":%d}', bid)
  local _, code = http.request {
    url = url .. "/query/set_bid", method = "POST", source = ltn12.source.string(body),
    headers = { ["content-type"] = "application/json", ["content-length"] = #body },
  }
  if code == 200 then
    local out = {}
    local _, rc = http.request { url = url .. "/query/quote_cached?id=1", sink = ltn12.sink.table(out) }
    if rc == 200 then
      pairs_ = pairs_ + 1
      if not table.concat(out):find('"bid":' .. bid, 1, true) then stale = stale + 1 end
    end
  end
end
print(string.format("pairs=%d stale=%d", pairs_, stale))
