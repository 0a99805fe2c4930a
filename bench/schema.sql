-- schema.sql — the benchmark tables of bench/run.sh and bench/profile.sh, the same as the
-- side-by-side comparison (compare.sh) creates: bench_quotes (:rows rows, every one in shared buffers)
-- and an empty bench_ticks for the bulk loads. psql -v rows=100000 -f bench/schema.sql
SELECT setseed(0.42);
CREATE TABLE bench_quotes (id bigint PRIMARY KEY, pair text, bid numeric(12,5), ask numeric(12,5), ts timestamptz);
INSERT INTO bench_quotes (id, pair, bid, ask, ts)
SELECT i, pair, bid, bid + spread, ts
FROM (SELECT i,
             (ARRAY['EURUSD','GBPUSD','USDJPY','USDCHF','AUDUSD','USDCAD','NZDUSD','EURGBP'])[1 + i % 8] AS pair,
             round((0.5 + random())::numeric, 5) AS bid,
             round((0.00005 + random() * 0.0003)::numeric, 5) AS spread,
             timestamptz '2026-01-05 00:00:00+00' + i * interval '250 milliseconds' AS ts
      FROM generate_series(1, :rows) AS i) AS q;
CREATE TABLE bench_ticks (pair text, bid numeric(12,5), ask numeric(12,5), ts timestamptz);
VACUUM ANALYZE;
CREATE EXTENSION pg_prewarm;
SELECT pg_prewarm('bench_quotes'), pg_prewarm('bench_quotes_pkey');
