"""A test HTTP server on 127.0.0.1 (ephemeral port) in a background thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_loopback(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """Start ``handler`` on a free loopback port; returns the server and its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def stop_loopback(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


def raw_http(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` to 127.0.0.1:``port``; read until the server closes, the read times out
    or one whole answer (headers and ``Content-Length`` bytes) has arrived."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            head, sep, rest = out.partition(b"\r\n\r\n")
            if sep:
                n = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                     if h.lower().startswith(b"content-length:")]
                if n and len(rest) >= n[0]:
                    break
        return out


def trickle_until_closed(port: int, head: bytes, *, seconds: float = 8.0) -> float | None:
    """Send ``head``, then one byte every 0.2 s (each read well inside any idle timeout, as a
    slowloris client does); the seconds until the server closed, or None if it never did."""
    import select
    import socket
    import time

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                s.sendall(b"x")
            except OSError:
                return time.monotonic() - t0
            if select.select([s], [], [], 0.2)[0]:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    return time.monotonic() - t0
        return None
    finally:
        s.close()
