--SLUICE_MAX_BODY_BYTES=9007199254740993
return { admin_token = "s3cret", migrations = "db/migrations", scripts = { "a.lua", "b/*.lua" } }
