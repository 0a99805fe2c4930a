-- Live quotes of the example forex service: every quote inserted is NOTIFYed on `quotes` by a
-- trigger (migrations/0002_quote_events.sql) and served as Server-Sent Events at
-- GET /events/quotes; GET /live is a page that shows them as they come, with EventSource.

sluice.channel "quotes" {
  listen = "quotes",
  buffer = 1000,   -- a client reconnecting with Last-Event-ID gets up to this many missed quotes
  -- ?pair=EURUSD keeps only that pair's quotes; without it every quote passes.
  filter = function(payload, req)
    local pair = req.query.pair
    return pair == nil or payload:match('"pair"%s*:%s*"(%w+)"') == pair
  end,
}

local PAGE = [[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Live quotes</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; }
  table { border-collapse: collapse; }
  th, td { padding: 0.2em 1em; text-align: right; border-bottom: 1px solid #ddd; }
  #status { color: #666; }
</style>
</head>
<body>
<h1>Live quotes</h1>
<p id="status">connecting</p>
<table>
  <thead><tr><th>pair</th><th>bid</th><th>ask</th><th>time</th></tr></thead>
  <tbody id="quotes"></tbody>
</table>
<script>
  const rows = document.getElementById("quotes");
  const status = document.getElementById("status");
  const source = new EventSource("/events/quotes" + location.search);
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting"; };
  // The gateway lost its LISTEN connection meanwhile: quotes may have been missed.
  source.addEventListener("reset", () => { status.textContent = "live (some quotes may be missing)"; });
  source.onmessage = (e) => {
    const q = JSON.parse(e.data);
    const tr = document.createElement("tr");
    tr.dataset.id = q.id;
    for (const v of [q.pair, q.bid, q.ask, q.ts]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    rows.prepend(tr);
    while (rows.children.length > 50) rows.lastChild.remove();
  };
</script>
</body>
</html>
]]

sluice.endpoint "live_page" {
  route = "GET /live",
  handler = function(req)
    return 200, PAGE, { ["content-type"] = "text/html; charset=utf-8", ["cache-control"] = "no-cache" }
  end,
}
