local t = { max_body_bytes = 1024 * 1024, shutdown_timeout = 1e10 }
if t.max_body_bytes > 1 then error("refused: " .. tostring(t.max_body_bytes)) end
return t
