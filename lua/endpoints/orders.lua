-- Orders of the example forex service (tables in migrations/0001_forex.sql).
-- Constraint violations (unknown account or pair, bad side, qty <= 0) answer 409.

-- Places an order and returns it. Params: account (id), pair, side ("buy" | "sell"), qty,
-- price (null: a market order).
sluice.query "place_order" {
  sql = [[
    INSERT INTO orders (account_id, pair, side, qty, price)
    VALUES (:account, :pair, :side, :qty, :price)
    RETURNING *
  ]],
  single = true,
  route = "POST /orders",
}

-- The newest orders of an account first (at most 100). Params: account (id).
sluice.query "orders_by_account" {
  sql = [[
    SELECT id, account_id, pair, side, qty, price, status, created_at
    FROM orders
    WHERE account_id = :account
    ORDER BY created_at DESC, id DESC
    LIMIT 100
  ]],
  readonly = true,
  route = "GET /accounts/{account}/orders",
}

-- Cancels an open order and returns it; 404 when there is no such open order. Params: id.
sluice.query "cancel_order" {
  sql = [[
    UPDATE orders
    SET status = 'cancelled'
    WHERE id = :id AND status = 'open'
    RETURNING *
  ]],
  single = true,
  route = "POST /orders/{id}/cancel",
}
