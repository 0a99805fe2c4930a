#!/usr/bin/env python3
"""latency_probe.py — one well-behaved client: GET --url over one HTTP/1.1 keep-alive connection,
one request after another, for --seconds. Prints one JSON line: requests, errors (non-200 or a
transport failure; the connection is reopened after one), latency p50 / p99 / max in ms of the
200s, and the count of each status or failure.
Standard library only; https URLs are not verified (a test certificate).

Usage: latency_probe.py --url http://127.0.0.1:8080/query/one [--seconds 5]"""
import argparse
import http.client
import json
import ssl
import sys
import time
import urllib.parse


def connect(u):
    if u.scheme == "https":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(u.hostname, u.port, timeout=30, context=ctx)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    target = u.path + ("?" + u.query if u.query else "")
    conn = connect(u)
    lat, errors, statuses = [], 0, {}
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            conn.request("GET", target)
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status != 200:
                errors += 1
            else:
                lat.append((time.monotonic() - t) * 1000)
        except (OSError, http.client.HTTPException) as e:
            errors += 1
            statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
            conn.close()
            conn = connect(u)
            time.sleep(0.01)
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))], 2) if lat else None

    print(json.dumps({"requests": len(lat) + errors, "errors": errors, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                      "max_ms": round(lat[-1], 2) if lat else None,
                      "answers": {str(k): v for k, v in statuses.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
