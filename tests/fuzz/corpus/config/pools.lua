local base = { pool_size = 4, pool_timeout = 2.5, optional = false }
local function pool(url, extra)
  local p = { url = url }
  for k, v in pairs(base) do p[k] = v end
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end
return {
  listen = "[::1]:8081",
  workers = 2,
  pools = {
    primary = pool("host=127.0.0.1 port=5432 dbname=app", { pipeline_depth = 8, max_queue = 0 }),
    replica = pool(os.getenv("REPLICA_URL") or "", { optional = true, echo = true }),
    analytics_2 = { url = "postgresql:///analytics", pool_size = "auto", pool_recycle = 0 },
  },
  scripts = "lua/*.lua",
}
