--SLUICE_MAX_RESPONSE_BYTES=2048
return { max_response_bytes = 4096 }
