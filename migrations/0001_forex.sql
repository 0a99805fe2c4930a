-- 0001_forex.sql — the example forex service: instruments, quotes, ticks, accounts and orders,
-- with deterministic seed data (no random()) so that tests can assert exact values.
-- `sluice migrate` runs this file in one transaction.

CREATE TABLE instruments (
    symbol   text PRIMARY KEY CHECK (symbol ~ '^[A-Z]{6}$'),
    base     text NOT NULL CHECK (base ~ '^[A-Z]{3}$'),
    quote    text NOT NULL CHECK (quote ~ '^[A-Z]{3}$'),
    pip_size numeric(10, 5) NOT NULL CHECK (pip_size > 0),
    digits   integer NOT NULL CHECK (digits BETWEEN 0 AND 5), -- decimals of a price
    min_qty  numeric(18, 2) NOT NULL DEFAULT 1000 CHECK (min_qty > 0),
    active   boolean NOT NULL DEFAULT true,
    CHECK (symbol = base || quote)
);

-- Best bid/ask snapshots, one row per price change.
CREATE TABLE quotes (
    id   bigserial PRIMARY KEY,
    pair text NOT NULL REFERENCES instruments (symbol),
    bid  numeric(12, 5) NOT NULL CHECK (bid > 0),
    ask  numeric(12, 5) NOT NULL CHECK (ask >= bid),
    ts   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quotes_pair_ts ON quotes (pair, ts DESC);

-- The raw feed, loaded in bulk (POST /bulk/ticks). No key and no foreign key, so that COPY
-- stays cheap; the checks still reject rows that cannot be prices.
CREATE TABLE ticks (
    pair text NOT NULL,
    bid  numeric(12, 5) NOT NULL CHECK (bid > 0),
    ask  numeric(12, 5) NOT NULL CHECK (ask >= bid),
    ts   timestamptz NOT NULL
);
CREATE INDEX ticks_pair_ts ON ticks (pair, ts);

CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    owner      text NOT NULL,
    currency   text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    balance    numeric(18, 2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    pair       text NOT NULL REFERENCES instruments (symbol),
    side       text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty        numeric(18, 2) NOT NULL CHECK (qty > 0),
    price      numeric(12, 5) CHECK (price > 0), -- NULL: a market order
    status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'filled', 'cancelled', 'rejected')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_account_created ON orders (account_id, created_at DESC);

-- Seed data ----------------------------------------------------------------------------------

INSERT INTO instruments (symbol, base, quote, pip_size, digits) VALUES
    ('EURUSD', 'EUR', 'USD', 0.0001, 5),
    ('GBPUSD', 'GBP', 'USD', 0.0001, 5),
    ('USDJPY', 'USD', 'JPY', 0.01, 3),
    ('AUDUSD', 'AUD', 'USD', 0.0001, 5);

-- 121 quotes per pair, one a minute over the last two hours up to the minute of migration:
-- quote i (i = 0 is the newest, at date_trunc('minute', now()) - i minutes) has
--   bid = mid + pip_size * ((i * 37) % 61 - 30),   ask = bid + spread.
-- So the newest EURUSD quote is bid 1.08200 / ask 1.08210, and ids grow with ts.
INSERT INTO quotes (pair, bid, ask, ts)
SELECT p.pair,
       p.mid + i.pip_size * ((n * 37) % 61 - 30),
       p.mid + i.pip_size * ((n * 37) % 61 - 30) + p.spread,
       date_trunc('minute', now()) - n * interval '1 minute'
FROM (VALUES ('EURUSD', 1.08500, 0.00010),
             ('GBPUSD', 1.26500, 0.00015),
             ('USDJPY', 149.500, 0.010),
             ('AUDUSD', 0.65500, 0.00012)) AS p (pair, mid, spread)
JOIN instruments i ON i.symbol = p.pair
CROSS JOIN generate_series(0, 120) AS n
ORDER BY n DESC, p.pair;

INSERT INTO accounts (owner, currency, balance) VALUES -- ids 1, 2, 3
    ('alice', 'USD', 100000.00),
    ('bob', 'EUR', 50000.00),
    ('carol', 'USD', 2500.00);

INSERT INTO orders (account_id, pair, side, qty, price, status, created_at) VALUES -- ids 1..5
    (1, 'EURUSD', 'buy', 10000.00, 1.08250, 'filled', date_trunc('minute', now()) - interval '90 minutes'),
    (1, 'USDJPY', 'sell', 5000.00, 149.80000, 'open', date_trunc('minute', now()) - interval '60 minutes'),
    (2, 'GBPUSD', 'buy', 20000.00, 1.26000, 'open', date_trunc('minute', now()) - interval '45 minutes'),
    (2, 'EURUSD', 'sell', 15000.00, 1.09000, 'cancelled', date_trunc('minute', now()) - interval '30 minutes'),
    (3, 'AUDUSD', 'buy', 1000.00, NULL, 'open', date_trunc('minute', now()) - interval '10 minutes');
