--SLUICE_JWT_MAX_AGE=300
--SLUICE_JWT_ISSUER=https://auth.example
return { tokens = { "t1", "t2" }, jwt = { secret = "0123456789abcdef0123456789abcdef", audience = "api" } }
