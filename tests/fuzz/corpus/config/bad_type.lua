return { pools = { primary = { pool_size = "many" } }, request_timeout = -1 }
