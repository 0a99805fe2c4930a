-- cache_mixed.lua — wrk script for bench/cache.sh: a mixed load on the cached query, reads of a
-- random id in 1..KEYS, and one write in WRITE_EVERY requests (POST /query/set_bid on a random
-- id but 1, which the freshness probe writes; each write invalidates the table's entries).
--   wrk -t1 -c32 -d5s -s bench/cache_mixed.lua http://127.0.0.1:61711 -- 10 100
local keys, every, n = 10, 100, 0

function init(args)
  keys = tonumber(args[1]) or keys
  every = tonumber(args[2]) or every
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  n = n + 1
  if n % every == 0 then
    return wrk.format("POST", "/query/set_bid", { ["Content-Type"] = "application/json" },
      string.format('{"id":%d,"bid":%d}', math.random(2, math.max(keys, 2)), n))
  end
  return wrk.format("GET", "/query/quote_cached?id=" .. math.random(1, keys))
end
