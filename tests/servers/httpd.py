#!/usr/bin/env python3
"""A small HTTP server the bats suites control, on 127.0.0.1 with a free port.

    httpd.py DIR [--port PORT | --unix PATH] [--lifetime SECONDS] [--tls CERT KEY]

Binds 127.0.0.1:PORT (default 0: a free port), or the unix socket PATH, and
writes the port (0 for a socket) to DIR/httpd.port (atomically).  Each
request re-reads DIR/control.json, which the test rewrites at will:

    {"/health": {"status": 200, "body": "ok"},
     "/slow":   {"status": 200, "body": "late", "delay": 3},
     "/json":   {"json": {"build": {"version": "1.2.3"}}},
     "/flap":   {"seq": [{"status": 200}, {"status": 500}], "cycle": true},
     "/echo":   {"echo": true}}

A path's entry is one response (status, body or json, headers, delay in
seconds), or "seq": a list of responses, the n-th request to the path getting
the n-th (the last one repeats, or the list cycles with "cycle": true).
"echo" answers with the request as JSON.  Unknown paths are 404.  Every
request is appended to DIR/requests.jsonl (method, path, lower-case headers,
body, n) so tests can see what arrived.

The server exits after --lifetime seconds (default 120) whatever happens, so
a test that forgets it cannot leave it behind for long.
"""
import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import argparse

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--unix")
ap.add_argument("--lifetime", type=float, default=120.0)
ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                help="speak HTTPS with this certificate and key (PEM)")
ARGS = ap.parse_args()
DIR = ARGS.dir

counters = {}
lock = threading.Lock()


def control():
    try:
        with open(os.path.join(DIR, "control.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        with lock:
            n = counters.get(path, 0)
            counters[path] = n + 1
            with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
                f.write(json.dumps({
                    "method": self.command, "path": self.path, "n": n,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }) + "\n")
        spec = control().get(path)
        if spec is None:
            return self.answer(404, b"no such path\n", {})
        if "seq" in spec:
            seq = spec["seq"]
            spec = seq[n % len(seq)] if spec.get("cycle") else seq[min(n, len(seq) - 1)]
        if spec.get("delay"):
            time.sleep(float(spec["delay"]))
        headers = dict(spec.get("headers", {}))
        if spec.get("echo"):
            out = json.dumps({
                "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }).encode()
            headers.setdefault("Content-Type", "application/json")
        elif "json" in spec:
            out = json.dumps(spec["json"]).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            out = spec.get("body", "").encode()
        return self.answer(int(spec.get("status", 200)), out, headers)

    def answer(self, status, body, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class UnixHandler(Handler):
    def address_string(self):
        return "unix"

    def setup(self):
        self.client_address = ("unix", 0)
        super().setup()


def main():
    if ARGS.unix:
        srv = UnixHTTPServer(ARGS.unix, UnixHandler)
        port = 0
    else:
        srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
        srv.daemon_threads = True
        port = srv.server_address[1]
        if ARGS.tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(ARGS.tls[0], ARGS.tls[1])
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = os.path.join(DIR, ".httpd.port.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, os.path.join(DIR, "httpd.port"))
    threading.Timer(ARGS.lifetime, lambda: os._exit(0)).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
