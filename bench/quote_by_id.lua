-- quote_by_id.lua — wrk script for bench/run.sh: one GET /query/quote_by_id per request, a random
-- id in 1..100000 each time (every request a different row of bench_quotes), and one
-- machine-readable WRK_RESULT line at the end that run.sh parses.
--   wrk -t1 -c64 -d5s --latency -s bench/quote_by_id.lua http://127.0.0.1:61602
local rows = 100000

function init(args)
  math.randomseed(os.time())
end

function request()
  return wrk.format("GET", "/query/quote_by_id?id=" .. math.random(1, rows))
end

-- summary.errors.status counts responses that are not 2xx/3xx.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%.0f duration_us=%.0f non2xx=%.0f sock_errors=%.0f p50_us=%.0f p99_us=%.0f mean_us=%.0f\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
