"""Benchmark of the OANDA v20 emulator on loopback.

The emulator runs in a child process (``Emulator.spawn``, replaying the packaged real EUR_USD
H1 sample); this script is the separate load-generating process. It measures

1. sustained throughput for D seconds (candles and pricing), measured twice: with ``wrk``
   (a C load generator, 1 thread, 8 keep-alive connections; when installed:
   ``apt-get install wrk``) and with T Python threads, each with one keep-alive
   ``http.client`` connection (the Python generator shares the 2 cores and its own cost
   caps what it can show);
2. latency at a fixed rate: requests paced at 200 per second (open loop, one connection per
   pacing thread), p50 / p99 / max;
3. streams: 100 concurrent pricing streams held for a minute (``--stream-seconds``), counting
   heartbeats and prices and any stream that ended early.

Usage: ``python bench/emulator.py [--seconds 5] [--threads 4] [--stream-seconds 60]
[--out bench/results/emulator.json]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from sep_research.emulator import Emulator, EmulatorConfig

CASES = {
    "candles H1 count=100 M": "/v3/instruments/EUR_USD/candles?granularity=H1&count=100",
    "candles H1 count=500 MBA": "/v3/instruments/EUR_USD/candles?granularity=H1&count=500"
                                "&price=MBA",
    "candles D count=50 M": "/v3/instruments/EUR_USD/candles?granularity=D&count=50",
    "pricing EUR_USD": "/v3/accounts/{acct}/pricing?instruments=EUR_USD",
}


def _conn(port: int) -> http.client.HTTPConnection:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.connect()
    return c


def _get(c: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> int:
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    return r.status


def throughput(port: int, path: str, headers: dict[str, str], threads: int,
               seconds: float) -> dict[str, float]:
    counts = [0] * threads
    errors = [0] * threads
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        c = _conn(port)
        while time.monotonic() < stop:
            if _get(c, path, headers) != 200:
                errors[i] += 1
            counts[i] += 1
        c.close()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    return {"requests": sum(counts), "seconds": round(dt, 2),
            "req_per_s": round(sum(counts) / dt, 1), "errors": sum(errors)}


def wrk_throughput(url: str, token: str, seconds: float, conns: int = 8) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{max(1, int(seconds))}s", "-H",
         f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"requests": total, "req_per_s": rps, "errors": int(bad.group(1)) if bad else 0,
            "socket_errors": errs.group(1) if errs else "none", "connections": conns}


def paced_latency(port: int, path: str, headers: dict[str, str], rate: float,
                  seconds: float, pacers: int = 4) -> dict[str, float]:
    lat: list[float] = []
    late = [0]
    lock = threading.Lock()
    per = rate / pacers
    n = int(seconds * per)

    def work(k: int) -> None:
        c = _conn(port)
        t0 = time.monotonic() + k / rate
        for i in range(n):
            due = t0 + i / per
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                with lock:
                    late[0] += 1
            a = time.perf_counter()
            status = _get(c, path, headers)
            b = time.perf_counter()
            assert status == 200, status
            with lock:
                lat.append(b - a)
        c.close()

    ts = [threading.Thread(target=work, args=(k,)) for k in range(pacers)]
    start = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - start
    lat.sort()
    return {"rate_target": rate, "rate_achieved": round(len(lat) / dt, 1),
            "requests": len(lat),
            "p50_ms": round(1000 * statistics.median(lat), 2),
            "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 2),
            "max_ms": round(1000 * lat[-1], 2), "sent_late": late[0]}


def streams(port: int, acct: str, token: str, n: int, seconds: float) -> dict[str, float]:
    import socket

    prices = [0] * n
    beats = [0] * n
    ended = [False] * n
    path = f"/v3/accounts/{acct}/pricing/stream?instruments=EUR_USD"

    def work(i: int) -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=seconds + 15)
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                   "\r\n\r\n").encode())
        buf = b""
        stop = time.monotonic() + seconds
        try:
            while time.monotonic() < stop:
                s.settimeout(max(0.1, stop - time.monotonic()))
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    break
                if not data:
                    ended[i] = True
                    break
                buf += data
                prices[i] += buf.count(b'"type":"PRICE"')
                beats[i] += buf.count(b'"type":"HEARTBEAT"')
                buf = buf[buf.rfind(b"\n") + 1:]
        finally:
            s.close()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"streams": n, "held_seconds": round(time.monotonic() - t0, 1),
            "ended_early": sum(ended), "min_heartbeats": min(beats),
            "total_prices": sum(prices)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--stream-seconds", type=float, default=60.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    proc = Emulator.spawn(EmulatorConfig(source="sample", speed=60.0))
    try:
        headers = {"Authorization": f"Bearer {proc.token}"}
        results: dict[str, object] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "data": "packaged real EUR_USD H1 sample (backtesting.py), clock at 60x",
            "throughput": {}, "latency": {},
        }
        print(f"emulator child pid {proc.process.pid} on port {proc.port}; "
              f"load from pid {os.getpid()}; {os.cpu_count()} CPUs")
        has_wrk = shutil.which("wrk") is not None
        print(f"\n{'case':28s} {'wrk req/s':>10s} {'python req/s':>13s} {'errors':>6s}")
        for name, path in CASES.items():
            p = path.format(acct=proc.account_id)
            w = wrk_throughput(proc.base_url + p, proc.token, args.seconds) if has_wrk else None
            r = throughput(proc.port, p, headers, args.threads, args.seconds)
            results["throughput"][name] = {"wrk": w, "python": r}  # type: ignore[index]
            errors = r["errors"] + (w["errors"] if w else 0)
            wtxt = f"{w['req_per_s']:10.1f}" if w else f"{'n/a':>10s}"
            print(f"{name:28s} {wtxt} {r['req_per_s']:13.1f} {errors:6d}")
        print(f"\n{'case':28s} {'rate':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s}")
        for name in ("candles H1 count=100 M", "pricing EUR_USD"):
            p = CASES[name].format(acct=proc.account_id)
            r = paced_latency(proc.port, p, headers, args.rate, args.latency_seconds)
            results["latency"][name] = r  # type: ignore[index]
            print(f"{name:28s} {r['rate_achieved']:6.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
                  f"{r['max_ms']:7.2f}")
        if args.streams:
            r = streams(proc.port, proc.account_id, proc.token, args.streams,
                        args.stream_seconds)
            results["streams"] = r
            print(f"\nstreams: {r['streams']} held {r['held_seconds']} s, "
                  f"ended early {r['ended_early']}, min heartbeats per stream "
                  f"{r['min_heartbeats']}, prices received {r['total_prices']}")
    finally:
        rc = proc.stop()
        print(f"\nemulator stopped cleanly (exit {rc})")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
