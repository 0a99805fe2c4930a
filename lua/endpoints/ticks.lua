-- The raw price feed of the example forex service: POST /bulk/ticks takes a JSON array, NDJSON
-- or CSV (header row pair,bid,ask,ts) and loads it with COPY.
sluice.bulk "ticks" {
  table = "ticks",
  columns = { "pair", "bid", "ask", "ts" },
  mode = "insert",
  chunk_rows = 10000,
  atomic = true,
}
