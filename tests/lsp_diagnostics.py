#!/usr/bin/env python3
"""Open one YAML document in yaml-language-server over stdio, with a JSON
Schema mapped to it, and print the diagnostics it publishes, one a line:
LINE:COL: message.  Waits up to 30 s for a set that is not empty (the first
may come before the schema is read).

    lsp_diagnostics.py SERVER_JS SCHEMA.json DOC.yml
"""
import json, subprocess, sys, time, select, os

server, schema, doc = sys.argv[1], sys.argv[2], sys.argv[3]
p = subprocess.Popen(["node", server, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

def send(msg):
    b = json.dumps(msg).encode()
    p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(b) + b)
    p.stdin.flush()

buf = b""
def recv(deadline):
    global buf
    while True:
        if b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
            if len(rest) >= n:
                buf = rest[n:]
                return json.loads(rest[:n])
        left = deadline - time.time()
        if left <= 0:
            return None
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                return None
            buf += chunk

uri = "file://" + os.path.abspath(doc)
send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
deadline = time.time() + 30
while True:
    m = recv(deadline)
    if m is None: sys.exit("no initialize reply")
    if m.get("id") == 1: break
send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
send({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": {"settings": {"yaml": {
    "validate": True, "schemas": {"file://" + os.path.abspath(schema): [uri]}}}}})
send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
    "uri": uri, "languageId": "yaml", "version": 1, "text": open(doc).read()}}})
# the first diagnostics may come before the schema is read: wait for a set
# that is not empty, or for the time to run out (then print the last one)
last = []
while True:
    m = recv(deadline)
    if m is None: break
    if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri:
        last = m["params"]["diagnostics"]
        if last: break
    elif "id" in m and "method" in m:
        # a request from the server (workspace/configuration): answer it
        send({"jsonrpc": "2.0", "id": m["id"], "result": [{"validate": True, "schemas": {"file://" + os.path.abspath(schema): [uri]}}] * len(m["params"].get("items", [1]))})
for d in last:
    print("%d:%d: %s" % (d["range"]["start"]["line"] + 1, d["range"]["start"]["character"] + 1, d["message"]))
p.kill()
