--SLUICE_WORKERS=3
--DATABASE_URL=postgresql://u@db/x
--SLUICE_ECHO=true
--SLUICE_POOL_TIMEOUT=1.5
return { listen = "unix:/run/sluice.sock", log = { level = "debug", format = "text" } }
