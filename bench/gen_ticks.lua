-- gen_ticks.lua — the bulk data of bench/run.sh: N deterministic tick rows (pair, bid, ask, ts),
-- written three ways so every contender loads exactly the same rows:
--   DIR/ticks.csv             all rows, no header (psql \copy ... FORMAT csv)
--   DIR/ticks-NNNN.json       bodies of BATCH rows: a JSON array of objects (POST application/json)
--   DIR/ticks-NNNN.csv        the same bodies as CSV with a header row (POST text/csv)
-- Usage: luajit bench/gen_ticks.lua DIR [N=200000] [BATCH=10000]
local dir, total, batch = arg[1], tonumber(arg[2] or 200000), tonumber(arg[3] or 10000)
assert(dir, "usage: luajit gen_ticks.lua DIR [N] [BATCH]")

local pairs_ = { "EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "EURGBP" }
math.randomseed(42)
local t0 = 1767571200 -- 2026-01-05T00:00:00Z

local all = assert(io.open(dir .. "/ticks.csv", "w"))
local json, csv = {}, {}
local file = 0

local function flush()
  local name = string.format("%s/ticks-%04d", dir, file)
  local f = assert(io.open(name .. ".json", "w"))
  f:write("[", table.concat(json, ","), "]")
  f:close()
  f = assert(io.open(name .. ".csv", "w"))
  f:write("pair,bid,ask,ts\n", table.concat(csv))
  f:close()
  json, csv, file = {}, {}, file + 1
end

for i = 0, total - 1 do
  local pair = pairs_[i % #pairs_ + 1]
  local bid = 0.5 + math.random()
  local ask = bid + 0.00005 + math.random() * 0.0003
  local ms = i * 10
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", t0 + math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
  local b, a = string.format("%.5f", bid), string.format("%.5f", ask)
  local line = pair .. "," .. b .. "," .. a .. "," .. ts .. "\n"
  all:write(line)
  csv[#csv + 1] = line
  json[#json + 1] = '{"pair":"' .. pair .. '","bid":' .. b .. ',"ask":' .. a .. ',"ts":"' .. ts .. '"}'
  if #json == batch then flush() end
end
if #json > 0 then flush() end
all:close()
