#!/usr/bin/env python3
"""A one-purpose peer for zdm.socket tests (tests/lb_socket.bats).

    sockd.py MODE ADDRESS READY_FILE

ADDRESS is a unix socket path or 127.0.0.1 (a free port is picked).  Writes
the port (0 for a unix socket) to READY_FILE when listening.  Per connection:
  echo    read to end of input, answer "got: <what was read>", close
  silent  read, answer nothing, keep the connection open (until exit)
  big     read to end of input, answer 100 "x" bytes, close
Exits after 60 s whatever happens.
"""
import os
import socket
import sys
import threading

mode, address, ready = sys.argv[1:4]
threading.Timer(60, lambda: os._exit(0)).start()
if address.startswith("/"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(address)
    port = 0
else:
    s = socket.socket()
    s.bind((address, 0))
    port = s.getsockname()[1]
s.listen(8)
with open(ready + ".tmp", "w") as f:
    f.write("%d\n" % port)
os.rename(ready + ".tmp", ready)
held = []
while True:
    c, _ = s.accept()
    if mode == "silent":
        held.append(c)
        continue
    data = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    c.sendall(b"got: " + data if mode == "echo" else b"x" * 100)
    c.close()
