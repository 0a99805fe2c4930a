-- Trading of the example forex service: POST /trade places a limit order only when the account's
-- balance covers it, checking and inserting in one transaction (tables in migrations/0001_forex.sql).
-- The order itself is inserted by place_order (orders.lua).

-- The account, locked until the end of the transaction; 404 when there is no such account.
-- Params: account (id).
sluice.query "account_for_update" {
  sql = [[
    SELECT id, owner, currency, balance
    FROM accounts
    WHERE id = :account
    FOR UPDATE
  ]],
  single = true,
}

-- Raises the error answer { status, code, message }; the transaction, if any, rolls back.
local function fail(status, code, message)
  error({ status = status, code = code, message = message }, 0)
end

-- A positive number from a JSON number or numeric string, or nil.
local function positive(v)
  local n = (type(v) == "number" or type(v) == "string") and tonumber(v) or nil
  if n and n > 0 and n < math.huge then return n end
  return nil
end

-- The order fields of a request body; raises a 400 for a missing or malformed one.
local function order_of(body)
  if type(body) ~= "table" then fail(400, "bad_request", "a JSON object body is required") end
  local account = tonumber(body.account)
  if not account or account ~= math.floor(account) or account < 1 then
    fail(400, "bad_request", "account: a positive integer id is required")
  end
  if type(body.pair) ~= "string" or body.pair == "" then fail(400, "bad_request", "pair is required") end
  if body.side ~= "buy" and body.side ~= "sell" then fail(400, "bad_request", 'side: "buy" or "sell" is required') end
  local qty, price = positive(body.qty), positive(body.price)
  if not qty then fail(400, "bad_request", "qty: a positive number is required") end
  if not price then fail(400, "bad_request", "price: a positive number is required") end
  return { account = account, pair = body.pair, side = body.side, qty = qty, price = price }
end

-- Body: { account, pair, side, qty, price }. 201 with the new order; 400 for a bad body, 404 for
-- an unknown account, 409 when qty * price exceeds the balance (or for a constraint, e.g. an
-- unknown pair).
sluice.endpoint "trade" {
  route = "POST /trade",
  handler = function(req)
    local o = order_of(req.body)
    local order = sluice.db.transaction(function(tx)
      local ok, acct = pcall(tx.query, tx, "account_for_update", { account = o.account })
      if not ok then
        if type(acct) == "table" and acct.status == 404 then fail(404, "not_found", "no such account") end
        error(acct, 0)
      end
      if tonumber(acct.balance) < o.qty * o.price then fail(409, "conflict", "insufficient balance") end
      return tx:query("place_order", o)
    end)
    return 201, order
  end,
}
