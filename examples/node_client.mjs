#!/usr/bin/env node
// node_client.mjs — a client of the example forex service, built at run time from the gateway's
// /openapi.json (Node 18+, fetch only): every operation becomes a function named by its
// operationId; parameters go where the document says (path, query string or JSON body).
//
// Usage: node examples/node_client.mjs [BASE_URL]      (default http://127.0.0.1:8080)

export async function connect(base) {
  base = base.replace(/\/$/, "");
  const spec = await (await fetch(`${base}/openapi.json`)).json();
  const api = {};
  for (const [template, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!op.operationId) continue;
      api[op.operationId] = async (params = {}) => {
        const rest = { ...params };
        const query = new URLSearchParams();
        let path = template;
        for (const p of op.parameters ?? []) {
          if (!(p.name in rest)) continue;
          if (p.in === "path") path = path.replace(`{${p.name}}`, encodeURIComponent(rest[p.name]));
          else query.append(p.name, rest[p.name]);
          delete rest[p.name];
        }
        const init = { method: method.toUpperCase() };
        // sluice refuses any method but GET and HEAD without this header, even with no body
        if (init.method !== "GET" && init.method !== "HEAD") init.headers = { "Content-Type": "application/json" };
        if (op.requestBody) init.body = JSON.stringify(rest);
        const qs = query.toString();
        const res = await fetch(`${base}${path}${qs ? `?${qs}` : ""}`, init);
        const body = await res.json();
        if (!res.ok) {
          const err = new Error(`${res.status} ${body.error?.code}: ${body.error?.message}`);
          err.status = res.status;
          throw err;
        }
        return body;
      };
    }
  }
  return api;
}

const api = await connect(process.argv[2] ?? "http://127.0.0.1:8080");
const instruments = await api.instruments_get();
console.log("instruments:", instruments.rows.map((r) => r.symbol).join(", "));
const quote = await api.latest_quote_route({ pair: "EURUSD" });
console.log(`EURUSD: bid ${quote.bid} ask ${quote.ask} at ${quote.ts}`);
const window = await api.quotes_range_get({ pair: "EURUSD", from: "2000-01-01T00:00:00Z", to: quote.ts, limit: 5 });
console.log(`quotes_range: ${window.row_count} rows, first bid ${window.rows[0].bid}`);
const order = await api.place_order({ account: 1, pair: "EURUSD", side: "sell", qty: 2000, price: quote.ask });
console.log(`placed order ${order.id}: ${order.side} ${order.qty} ${order.pair} at ${order.price}`);
const cancelled = await api.cancel_order_route({ id: order.id });
console.log(`cancelled order ${cancelled.id}: status ${cancelled.status}`);
try {
  await api.cancel_order_route({ id: order.id });
} catch (e) {
  console.log(`cancel again: ${e.message}`);
}
console.log("orders of account 1:", (await api.orders_by_account_route({ account: 1 })).row_count);
