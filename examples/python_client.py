#!/usr/bin/env python3
"""python_client.py — a client of the example forex service, built at run time from the gateway's
/openapi.json (Python standard library only): every operation becomes a method named by its
operationId, parameters go where the document says (path, query string or JSON body).

Usage: examples/python_client.py [BASE_URL]      (default http://127.0.0.1:8080)
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


class ApiError(Exception):
    def __init__(self, status, error):
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status, self.error = status, error


class Client:
    def __init__(self, base):
        self.base = base.rstrip("/")
        with urllib.request.urlopen(self.base + "/openapi.json") as r:
            self.spec = json.load(r)
        self.ops = {op["operationId"]: (method.upper(), path, op)
                    for path, item in self.spec["paths"].items()
                    for method, op in item.items() if "operationId" in op}

    def call(self, op_id, **params):
        method, path, op = self.ops[op_id]
        query = {}
        for p in op.get("parameters", []):
            if p["name"] not in params:
                continue
            value = params.pop(p["name"])
            if p["in"] == "path":
                path = path.replace("{%s}" % p["name"], urllib.parse.quote(str(value), safe=""))
            else:
                query[p["name"]] = value
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data, headers = None, {}
        if method.upper() not in ("GET", "HEAD"):
            # sluice refuses any other method without this header, even with no body
            headers = {"Content-Type": "application/json"}
        if "requestBody" in op:
            data = json.dumps(params).encode()
        elif params:
            raise TypeError(f"{op_id}: unknown parameters {sorted(params)}")
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, json.load(e).get("error", {})) from None

    def __getattr__(self, name):
        if name in self.ops:
            return lambda **params: self.call(name, **params)
        raise AttributeError(name)


def main():
    api = Client(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080")
    print("instruments:", ", ".join(row["symbol"] for row in api.instruments_get()["rows"]))
    quote = api.latest_quote_route(pair="EURUSD")
    print(f"EURUSD: bid {quote['bid']} ask {quote['ask']} at {quote['ts']}")
    window = api.quotes_range_get(pair="EURUSD", **{"from": "2000-01-01T00:00:00Z", "to": quote["ts"], "limit": 5})
    print(f"quotes_range: {window['row_count']} rows, first bid {window['rows'][0]['bid']}")
    order = api.place_order(account=1, pair="EURUSD", side="buy", qty=1000, price=quote["bid"])
    print(f"placed order {order['id']}: {order['side']} {order['qty']} {order['pair']} at {order['price']}")
    cancelled = api.cancel_order_route(id=order["id"])
    print(f"cancelled order {cancelled['id']}: status {cancelled['status']}")
    try:
        api.cancel_order_route(id=order["id"])
    except ApiError as e:
        print(f"cancel again: {e}")
    print("orders of account 1:", api.orders_by_account_route(account=1)["row_count"])


if __name__ == "__main__":
    main()
