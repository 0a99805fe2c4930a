-- sluice.lua for docker/compose.yml: the example service (conf/, lua/ and migrations/ of the
-- image) on the primary and its streaming replica. DATABASE_URL, REPLICA_URL and SLUICE_* come
-- from the compose file.
return {
  listen = "0.0.0.0:8080",
  workers = "auto",
  log = { level = "info", format = "json" },
  pools = {
    primary = {
      url = os.getenv("DATABASE_URL") or "postgresql://sluice:sluice@primary:5432/sluice",
      pool_size = "auto",
    },
    -- lua/policy.lua routes readonly queries here while it is healthy; optional: /health/ready
    -- does not need it.
    replica = {
      url = os.getenv("REPLICA_URL") or "postgresql://sluice:sluice@replica:5432/sluice",
      optional = true,
    },
  },
  scripts = { "lua/endpoints/*.lua", "lua/policy.lua" },
}
