#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server, strict about the request shape
lb.kubernetes must send, on 127.0.0.1 with a free port, over HTTPS.

    kube-api.py DIR --tls CERT KEY [--lifetime SECONDS]

Serves the Services in DIR/services/NAMESPACE/NAME.json (the test writes and
reads them) at the core API's path:

    GET   /api/v1/namespaces/NAMESPACE/services/NAME
    PATCH /api/v1/namespaces/NAMESPACE/services/NAME
          Content-Type: application/merge-patch+json (RFC 7386)

and answers like the real API server, with a Status object:
    401 without "Authorization: Bearer TOKEN" (TOKEN from DIR/token),
    404 for another path or a Service that does not exist,
    405 for another method,
    415 for a PATCH with another content type,
    400 for a body that is not a JSON object,
    409 when the patch names a metadata.resourceVersion that is not current.
A PATCH applies the merge patch (null deletes a key), bumps
metadata.resourceVersion and writes the file back (atomically).  Every
request is appended to DIR/requests.jsonl as {method, path, content_type,
auth: "ok"|"missing"|"wrong", status} - never the token itself.  Writes the
port to DIR/port once listening; exits after --lifetime seconds (default 120).
"""
import argparse
import json
import os
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), required=True)
ap.add_argument("--lifetime", type=float, default=120.0)
ARGS = ap.parse_args()
DIR = ARGS.dir
LOCK = threading.Lock()
PATH = re.compile(r"^/api/v1/namespaces/([a-z0-9-]+)/services/([a-z0-9.-]+)$")


def merge(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def status(self, code, reason, message):
        self.send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Failure", "message": message, "reason": reason,
                         "code": code})

    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "content_type": self.headers.get("Content-Type"),
                                "auth": self.auth, "status": code}) + "\n")

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        with open(os.path.join(DIR, "token")) as f:
            token = f.read().strip()
        got = self.headers.get("Authorization")
        self.auth = "missing" if got is None else ("ok" if got == "Bearer " + token else "wrong")
        if self.auth != "ok":
            return self.status(401, "Unauthorized", "Unauthorized")
        m = PATH.match(self.path)
        if m is None:
            return self.status(404, "NotFound", "the server could not find the requested resource")
        ns, name = m.groups()
        file = os.path.join(DIR, "services", ns, name + ".json")
        if self.command not in ("GET", "PATCH"):
            return self.status(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
        with LOCK:
            try:
                with open(file) as f:
                    svc = json.load(f)
            except FileNotFoundError:
                return self.status(404, "NotFound", 'services "%s" not found' % name)
            if self.command == "GET":
                return self.send(200, svc)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/merge-patch+json":
                return self.status(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - "
                                   "accepted media types include: application/json-patch+json, "
                                   "application/merge-patch+json, application/apply-patch+yaml")
            try:
                patch = json.loads(body)
                assert isinstance(patch, dict)
            except (ValueError, AssertionError):
                return self.status(400, "BadRequest", "the body is not a JSON object")
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            cur = svc["metadata"]["resourceVersion"]
            if rv is not None and rv != cur:
                return self.status(409, "Conflict",
                                   'Operation cannot be fulfilled on services "%s": the object has '
                                   'been modified; please apply your changes to the latest version '
                                   'and try again' % name)
            svc = merge(svc, patch)
            svc["metadata"]["resourceVersion"] = str(int(cur) + 1)
            tmp = file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(svc, f, sort_keys=True)
            os.rename(tmp, file)
            return self.send(200, svc)

    do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = handle_any


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(*ARGS.tls)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Timer(ARGS.lifetime, lambda: os._exit(0)).start()
with open(os.path.join(DIR, ".port"), "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(os.path.join(DIR, ".port"), os.path.join(DIR, "port"))
srv.serve_forever()
