"""Footprint of the live runner against the emulator: memory, start-up, latency, growth.

    .venv/bin/python bench/live.py [--steps 1300] [--out bench/results/live.json]

Setup: the emulator runs in this process on a manual replay clock; the runner runs as a
separate process (``python -m runners.live``, as on the server) trading 4 instruments. Each
step moves the clock one H1 candle and waits until the runner has handled that candle for
every instrument. The model trades every BUY/SELL signal, so orders are frequent.

Data (labelled): the packaged **real** EUR_USD H1 sample, replayed under four instrument
names (EUR_USD, GBP_USD, AUD_USD, NZD_USD; all quoted in USD so no conversion is needed).
The prices of the last three are therefore not those instruments' prices: this measures the
runner's footprint, not a strategy.

Figures (targets from the issue): resident memory of the runner process (<= 120 MB), process
start to first poll (<= 2 s), completed candle visible to order sent, p99 (<= 5 ms), and
resident memory growth over the replayed candles (<= 10 %; measured from after the first
100 steps to the end).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INSTRUMENTS = ("EUR_USD", "GBP_USD", "AUD_USD", "NZD_USD")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def journal_min_candle(path: Path) -> str:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT instrument, time FROM candles").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return ""
    if len(rows) < len(INSTRUMENTS):
        return ""
    return min(r[1] for r in rows)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, val = line.rpartition(" ")
            out[key] = float(val)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1800,
                    help="clock steps of one hour (weekends have no candles)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.json"))
    args = ap.parse_args(argv)
    import faulthandler

    faulthandler.dump_traceback_later(240, exit=False, file=sys.stderr)
    # a SIGTERM (e.g. from `timeout`) must still stop the runner child: raise instead of dying
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    from sep_research.data import load_sample
    from sep_research.emulator.app import Emulator, EmulatorConfig
    from tests.live_helpers import make_artifact

    frame = load_sample()
    start_i = 250
    if start_i + args.steps + 1 >= len(frame):
        raise SystemExit(f"--steps at most {len(frame) - start_i - 2}")
    tmp = Path(tempfile.mkdtemp(prefix="sep-bench-live-"))
    frames = {}
    for name in INSTRUMENTS:
        f = frame.copy()
        prov = dict(f.attrs["provenance"])
        prov.update(instrument=name, note=f"EUR_USD sample relabelled {name} for a benchmark")
        f.attrs["provenance"] = prov
        frames[name] = f
    emu = Emulator(EmulatorConfig(candles=frames,
                                  start=frame.index[start_i], half_spread_pips=0.7)).start()
    models = [str(make_artifact(tmp / f"{i}.json", i, "H1", conf_threshold=0.0,
                                coh_threshold=0.0)) for i in INSTRUMENTS]
    cfg = {"instruments": list(INSTRUMENTS), "granularity": "H1",
           "journal": str(tmp / "journal.sqlite"),
           "risk": {"fixed_units": 1000, "max_spread_pips": None, "max_open_positions": 4,
                    "weekend_cutoff_minutes": None, "cooldown_losses": None,
                    "daily_loss_limit": None, "max_drawdown": None,
                    "max_exposure_per_currency": None},
           "feed": {"poll_interval_s": 0.02, "request_rate": 100, "warmup_candles": 200},
           "status": {"port": 0}, "logging": {"level": "WARNING"}}
    (tmp / "runner.yaml").write_text(json.dumps(cfg))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "OANDA_API_KEY": emu.token,
           "OANDA_ACCOUNT_ID": emu.account_id, "OANDA_ENVIRONMENT": emu.base_url}
    cmd = [sys.executable, "-m", "runners.live", "--config", str(tmp / "runner.yaml")]
    for m in models:
        cmd += ["--model", m]
    log = (tmp / "runner.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    port = None
    try:
        deadline = time.time() + 60
        while port is None and time.time() < deadline:
            text = (tmp / "runner.log").read_text()
            for line in text.splitlines():
                if line.startswith("status API: http"):
                    port = int(line.rsplit(":", 1)[1])
            time.sleep(0.02)
        if port is None:
            raise SystemExit("the runner did not start:\n" + (tmp / "runner.log").read_text())
        while "sep_runner_start_to_first_poll_seconds" not in metrics(port):
            time.sleep(0.02)
        m0 = metrics(port)
        first_poll = m0["sep_runner_start_to_first_poll_seconds"]
        rss_start = rss_mb(proc.pid)
        samples = []
        stamps = [t.timestamp() for t in frame.index]
        t0 = time.time()
        rss_after_warm = None
        for step in range(args.steps):
            emu.clock.advance(candles=1)
            # the newest stored candle that has completed (weekends have none)
            done = emu.clock.now() - timedelta(hours=1)
            k = bisect.bisect_right(stamps, done.timestamp()) - 1
            want = frame.index[k].strftime("%Y-%m-%dT%H")
            limit = time.time() + 30
            while journal_min_candle(tmp / "journal.sqlite")[:13] < want:
                if proc.poll() is not None or time.time() > limit:
                    raise SystemExit("runner died or stuck:\n"
                                     + (tmp / "runner.log").read_text()[-3000:])
                time.sleep(0.002)
            if step == 99:
                rss_after_warm = rss_mb(proc.pid)
            if step % 100 == 0:
                samples.append((step, rss_mb(proc.pid)))
        elapsed = time.time() - t0
        rss_end = rss_mb(proc.pid)
        m1 = metrics(port)
        proc.terminate()
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        emu.stop()
    con = sqlite3.connect(tmp / "journal.sqlite")
    n_candles = con.execute("SELECT count(*) FROM signals").fetchone()[0]
    n_orders = con.execute("SELECT count(*) FROM orders").fetchone()[0]
    con.close()
    growth = (rss_end - rss_after_warm) / rss_after_warm * 100.0
    result = {
        "what": "live runner vs emulator, 4 instruments (real EUR_USD H1 sample replayed under "
                "4 names)",
        "machine_cpus": os.cpu_count(),
        "steps": args.steps, "candles_handled": n_candles, "orders": n_orders,
        "exit_code_after_sigterm": rc,
        "rss_mb_start": round(rss_start, 1), "rss_mb_after_100_steps": round(rss_after_warm, 1),
        "rss_mb_end": round(rss_end, 1), "rss_mb_max_sampled": round(max(
            [r for _, r in samples] + [rss_end]), 1),
        "rss_growth_pct": round(growth, 2),
        "start_to_first_poll_s": round(first_poll, 3),
        "order_latency_ms_p50": m1.get('sep_runner_order_latency_ms{quantile="0.5"}'),
        "order_latency_ms_p99": m1.get('sep_runner_order_latency_ms{quantile="0.99"}'),
        "seconds": round(elapsed, 1),
        "targets": {"rss_mb": 120, "start_to_first_poll_s": 2.0, "latency_p99_ms": 5.0,
                    "rss_growth_pct": 10.0},
    }
    ok = (result["rss_mb_max_sampled"] <= 120 and first_poll <= 2.0
          and (result["order_latency_ms_p99"] or 1e9) <= 5.0 and growth <= 10.0)
    result["all_targets_met"] = ok
    result["at_least_5000_candles"] = n_candles >= 5000
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result.items():
        print(f"{k:32s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
