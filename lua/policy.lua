-- Routing, resilience and monitoring policy of the example service (docs/lua-api.md).

-- Readonly queries go to a healthy replica when a pool named "replica" is configured;
-- everything else, and everything while the replica is down, goes to the primary.
function sluice.route(query, req)
  local replica = sluice.pools.replica
  if query.readonly and replica and replica.healthy then return "replica" end
  return "primary"
end

sluice.policy {
  slow_query_ms = 250,              -- db_slow_query_count and the slow-query log
  explain_slow = true,              -- capture EXPLAIN (FORMAT JSON) of a slow query once per window
  retry = { attempts = 3, base_ms = 20, max_ms = 1000 },       -- exponential backoff, full jitter
  breaker = { failures = 5, window_ms = 10000, open_ms = 5000, half_open = 1 },
}

function sluice.on_slow_query(ev)
  sluice.log.warn("slow query", ev)
end
