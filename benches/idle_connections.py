#!/usr/bin/env python3
"""Holds idle connections to a server for benches/idle_connections.sh.

    idle_connections.py HOST:PORT COUNT [--request]

Opens COUNT connections that send nothing (or, with --request, that each send one
`GET /health`, read the answer and stay open, idle, as keep-alive connections), raising this
process's open-file limit to its hard limit first. Prints one JSON line
{"opened": n, "seconds": s} once they are open, then holds them until its standard input
closes. Stops opening early when the kernel or the server refuses more.
"""
import json
import resource
import socket
import sys
import time

REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


def read_answer(sock):
    """Reads one answer to /health: a head and a short JSON body."""
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"}")):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    count = int(sys.argv[2])
    with_request = "--request" in sys.argv[3:]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    started = time.monotonic()
    for _ in range(count):
        try:
            sock = socket.create_connection((host, int(port)), timeout=5)
            if with_request:
                sock.sendall(REQUEST)
                read_answer(sock)
        except OSError:
            break
        held.append(sock)
    print(json.dumps({"opened": len(held), "seconds": time.monotonic() - started}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
