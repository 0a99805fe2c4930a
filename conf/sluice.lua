-- sluice.lua — configuration of the example forex service (docs/configuration.md).
-- A Lua file that returns a table. Every key has a default; the environment variable named
-- beside a key overrides it. Relative paths resolve against the current directory.
return {
  listen = "127.0.0.1:8080",            -- SLUICE_LISTEN; "unix:/path" also accepted
  workers = "auto",                      -- SLUICE_WORKERS; auto = CPU count
  admin_token = nil,                     -- SLUICE_ADMIN_TOKEN; required for /admin/* (off without it)
  max_body_bytes = 64 * 1024 * 1024,     -- SLUICE_MAX_BODY_BYTES; larger bodies get 413
  shutdown_grace = 5,                    -- SLUICE_SHUTDOWN_GRACE; seconds served after SIGTERM with /health/ready at 503
  shutdown_timeout = 30,                 -- SLUICE_SHUTDOWN_TIMEOUT; seconds to drain once the listener closed
  request_timeout = 30,                  -- SLUICE_REQUEST_TIMEOUT; seconds: the deadline of one request
  migrations = "migrations",             -- folder read by `sluice migrate`
  log = { level = "info", format = "json" },  -- SLUICE_LOG_LEVEL, SLUICE_LOG_FORMAT ("json" | "text")

  pools = {
    primary = {
      -- DATABASE_URL; the default is the development database of `make run` (scripts/localdb.sh).
      -- Several hosts follow the primary through a failover (docs/high-availability.md):
      -- "postgresql://app@db1:5432,db2:5432/app?target_session_attrs=read-write"
      url = os.getenv("DATABASE_URL") or "postgresql://postgres@127.0.0.1:55433/sluice",
      pool_size = "auto",               -- SLUICE_POOL_SIZE; auto = 2 * CPU count + 1, shared out over the workers
      max_overflow = 20,                -- SLUICE_MAX_OVERFLOW; extra connections under burst
      pool_timeout = 30,                -- SLUICE_POOL_TIMEOUT; seconds to wait for a connection
      pool_recycle = 1800,              -- SLUICE_POOL_RECYCLE; max connection age in seconds, jittered
      idle_timeout = 300,               -- overflow connections idle this long are closed
      echo = false,                     -- SLUICE_ECHO; log every statement
      prepared_statement_cache_size = 256,  -- SLUICE_PREPARED_STATEMENT_CACHE_SIZE; per connection
      statement_timeout_ms = 30000,     -- SLUICE_STATEMENT_TIMEOUT_MS; a query's own timeout_ms wins
      failover_wait_ms = 10000,         -- SLUICE_FAILOVER_WAIT_MS; how long requests wait for a usable server
      read_your_writes_wait_ms = 200,   -- SLUICE_READ_YOUR_WRITES_WAIT_MS; a read with Sluice-LSN waits this long for a standby
    },
    -- A streaming replica takes the readonly queries (see sluice.route in lua/policy.lua):
    -- replica = { url = os.getenv("REPLICA_URL"), optional = true },
  },

  -- Loaded in order by every worker at start and on SIGHUP.
  scripts = { "lua/endpoints/*.lua", "lua/policy.lua" },
}
