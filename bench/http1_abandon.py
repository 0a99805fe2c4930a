#!/usr/bin/env python3
"""http1_abandon.py — the HTTP/1.1 counterpart of Rapid Reset, for comparison: connect, send one
GET of --path, close with a reset (SO_LINGER 0) without reading, as fast as one process can, for
--seconds. Prints one JSON line: requests sent and requests/s. Standard library only.

Usage: http1_abandon.py --port P [--host 127.0.0.1] [--path /query/x] [--seconds 10]"""
import argparse
import json
import socket
import struct
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/health/live")
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (a.path, a.host, a.port)).encode()
    linger0 = struct.pack("ii", 1, 0)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        s = socket.create_connection((a.host, a.port), timeout=10)
        s.sendall(req)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
        s.close()
        n += 1
    elapsed = time.monotonic() - t0
    print(json.dumps({"requests_sent": n, "seconds": round(elapsed, 3), "requests_per_second": round(n / elapsed)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
