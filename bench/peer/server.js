// server.js — the peer of bench/compare.sh and bench/run.sh: what a team would write by hand in
// front of PostgreSQL with Node's own HTTP server and node-postgres, one process per core.
//   GET  /health                      -> {"ok":true}
//   GET  /query/quote_by_id?id=N      -> {"rows":[{...}],"row_count":1}
//   POST /bulk/bench_ticks            -> a JSON array of {pair,bid,ask,ts}, inserted in one statement
// Environment: DATABASE_URL, HOST, PORT, POOL (connections in all), WORKERS.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

const workers = Math.max(1, Number(process.env.WORKERS || os.availableParallelism()));
const poolTotal = Math.max(1, Number(process.env.POOL || 4));

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork({ PEER_INDEX: String(i) });
  cluster.on('exit', (w, code) => { if (code) process.exitCode = 1; });
  const stop = () => { for (const w of Object.values(cluster.workers)) w.kill('SIGTERM'); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { Pool } = require('pg');
  // the connections are shared out over the workers so that the total is POOL, like the others
  const index = Number(process.env.PEER_INDEX);
  const max = Math.floor(poolTotal / workers) + (index < poolTotal % workers ? 1 : 0) || 1;
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max });
  const quote = { name: 'quote_by_id', text: 'SELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = $1' };
  const insertTicks = `INSERT INTO bench_ticks (pair, bid, ask, ts)
    SELECT pair, bid, ask, ts FROM json_to_recordset($1::json) AS t(pair text, bid numeric, ask numeric, ts timestamptz)`;

  const reply = (res, status, obj) => {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const fail = (res, err) => reply(res, 500, { error: { code: 'internal', message: String(err.message || err) } });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://peer');
    if (req.method === 'GET' && url.pathname === '/health') return reply(res, 200, { ok: true });
    if (req.method === 'GET' && url.pathname === '/query/quote_by_id') {
      const id = url.searchParams.get('id');
      if (!/^[0-9]+$/.test(id || '')) return reply(res, 400, { error: { code: 'bad_request', message: 'id must be an integer' } });
      return pool.query({ ...quote, values: [id] })
        .then((r) => reply(res, 200, { rows: r.rows, row_count: r.rowCount }), (e) => fail(res, e));
    }
    if (req.method === 'POST' && url.pathname === '/bulk/bench_ticks') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let rows;
        try { rows = JSON.parse(text); } catch (e) { return reply(res, 400, { error: { code: 'bad_json', message: e.message } }); }
        if (!Array.isArray(rows)) return reply(res, 400, { error: { code: 'bad_request', message: 'expected an array' } });
        pool.query(insertTicks, [text]).then((r) => reply(res, 200, { inserted: r.rowCount }), (e) => fail(res, e));
      });
      return undefined;
    }
    return reply(res, 404, { error: { code: 'not_found', message: 'no such route' } });
  });
  server.keepAliveTimeout = 60000;
  server.listen(Number(process.env.PORT || 3000), process.env.HOST || '127.0.0.1');
  process.on('SIGTERM', () => { server.close(); pool.end().finally(() => process.exit(0)); });
}
