-- Market data of the example forex service: instruments and best bid/ask quotes
-- (tables in migrations/0001_forex.sql).

-- The newest quote of a pair. Params: pair ("EURUSD").
sluice.query "latest_quote" {
  sql = [[
    SELECT pair, bid, ask, ts
    FROM quotes
    WHERE pair = :pair
    ORDER BY ts DESC
    LIMIT 1
  ]],
  readonly = true,
  single = true,
  timeout_ms = 200,
  route = "GET /quotes/{pair}",
}

-- The quotes of a pair in [from, to), oldest first. Params: pair, from, to (timestamps),
-- limit (null: 500; never more than 5000).
sluice.query "quotes_range" {
  sql = [[
    SELECT pair, bid, ask, ts
    FROM quotes
    WHERE pair = :pair AND ts >= :from AND ts < :to
    ORDER BY ts
    LIMIT LEAST(COALESCE(:limit, 500), 5000)
  ]],
  readonly = true,
  timeout_ms = 1000,
  route = "GET /quotes/{pair}/range",
}

-- Every tradable instrument. No params.
sluice.query "instruments" {
  sql = [[
    SELECT symbol, base, quote, pip_size, digits, min_qty
    FROM instruments
    WHERE active
    ORDER BY symbol
  ]],
  readonly = true,
  route = "GET /instruments",
}
