"""HTML: the self-contained export of an executed notebook, and ``reports/index.html``.

The export embeds every figure (the notebooks show figures as PNG outputs, which nbconvert
inlines as data URIs), so a report folder can be mailed or copied alone. The index links each
run's report, notebook, metrics and manifest, shows its status, parameters, headline metrics
and key figures, and is rebuilt from the run folders (it holds no state of its own).

**Across runs** (:func:`batch_pvalues`): for every batch, each finished run's p-value against
random signals with the same rate and mix (``p_vs_random`` in its metrics: the figure its
verdict rests on) beside its Holm-Bonferroni adjusted p-value over the ``m`` runs of that batch
that have one (:func:`sep_research.evaluation.stats.holm_adjust`), with ``m`` stated: trying
many instruments, granularities or settings and keeping the best is a multiple test.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sep_research.reporting.paths import atomic_write_text, read_json

INDEX_FILE = "index.html"
RUNS_DIR = "runs"


def export_html(
    notebook: str | os.PathLike[str], html_path: str | os.PathLike[str], *,
    title: str | None = None,
) -> Path:
    """Export an (executed, possibly partial) notebook to one self-contained HTML file."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(Path(notebook), as_version=4)
    exporter = HTMLExporter(template_name="lab")
    resources = {"metadata": {"name": title or Path(notebook).stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return atomic_write_text(html_path, body)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short_params(params: dict[str, Any], limit: int = 120) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def collect_runs(reports: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every run folder under ``REPORTS/runs`` with its manifest and metrics (newest first)."""
    runs_root = Path(reports) / RUNS_DIR
    out = []
    if not runs_root.is_dir():
        return out
    for d in sorted(p for p in runs_root.iterdir() if p.is_dir()):
        try:
            manifest = read_json(d / "manifest.json")
        except (OSError, ValueError):
            continue
        try:
            metrics = read_json(d / "metrics.json")
        except (OSError, ValueError):
            metrics = {}
        out.append({"dir": d, "manifest": manifest, "metrics": metrics})
    out.sort(key=lambda r: str(r["manifest"].get("started_at") or ""), reverse=True)
    return out


#: the metric whose p-value is adjusted across the runs of a batch
PVALUE_KEY = "p_vs_random"


def batch_pvalues(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per batch (the manifests' ``batch``): its finished runs with a p-value against random
    signals, each with the Holm-adjusted p-value over them, and ``m`` (how many runs the
    adjustment counts) and ``n_runs`` (all the batch's run folders, failed ones included)."""
    from sep_research.evaluation.stats import holm_adjust

    groups: dict[str, list[dict[str, Any]]] = {}
    totals: dict[str, int] = {}
    for r in runs:
        m = r["manifest"]
        batch = str(m.get("batch") or "(no batch)")
        totals[batch] = totals.get(batch, 0) + 1
        met = (r.get("metrics") or {}).get("metrics") or {}
        p = met.get(PVALUE_KEY)
        if m.get("status") != "ok" or not isinstance(p, (int, float)) or isinstance(p, bool):
            continue
        groups.setdefault(batch, []).append({
            "run_id": r["dir"].name, "p_vs_random": float(p),
            "p_direction": met.get("p_direction_vs_random_direction"),
            "net_pips": met.get("oos_net_pips")})
    out: dict[str, dict[str, Any]] = {}
    for batch, rows in sorted(groups.items()):
        adj = holm_adjust([row["p_vs_random"] for row in rows])
        for row, a in zip(rows, adj, strict=True):
            row["p_holm"] = a
        rows.sort(key=lambda row: row["p_vs_random"])
        out[batch] = {"m": len(rows), "n_runs": totals[batch], "runs": rows}
    return out


def holm_lines(batch: str, entry: dict[str, Any], *, alpha: float = 0.05) -> list[str]:
    """:func:`batch_pvalues`'s entry of one batch as text (``sep batch`` prints it)."""
    m = entry["m"]
    lines = [(f"batch {batch}: p-values against random signals (same rate and mix), "
              f"Holm-adjusted over the m = {m} run(s) that have one ({entry['n_runs']} run "
              "folder(s) in all)"),
             f"  {'run':<56} {'net pips':>9} {'p':>7} {'p Holm':>7}"]
    for row in entry["runs"]:
        net = row.get("net_pips")
        lines.append(f"  {row['run_id']:<56} "
                     f"{(f'{net:.1f}' if isinstance(net, (int, float)) else 'n/a'):>9} "
                     f"{row['p_vs_random']:>7.3f} {row['p_holm']:>7.3f}")
    n_sig = sum(1 for row in entry["runs"] if row["p_holm"] < alpha)
    lines.append(f"  {n_sig} of {m} run(s) below {alpha:g} after the Holm adjustment")
    return lines


def _holm_html(stats: dict[str, dict[str, Any]], *, alpha: float = 0.05) -> str:
    if not stats:
        return ("<h2>Across runs</h2><p>No finished run has a p-value against random signals "
                "yet.</p>")
    parts = [("<h2>Across runs</h2><p>Per batch: each run's p-value against random signals "
              "with the same rate and mix (what its verdict rests on) and its Holm-Bonferroni "
              "adjusted p-value over the <i>m</i> runs of the batch that have one. Trying many "
              "runs and keeping the best is a multiple test: read the adjusted column.</p>")]
    for batch, entry in stats.items():
        rows = "".join(
            f"<tr><td>{_e(row['run_id'])}</td>"
            f"<td>{_e(_fmt(row['net_pips']) if row.get('net_pips') is not None else 'n/a')}"
            f"</td><td>{row['p_vs_random']:.3f}</td><td><b>{row['p_holm']:.3f}</b></td>"
            f"<td>{_e(_fmt(row['p_direction']) if row.get('p_direction') is not None else '')}"
            "</td></tr>" for row in entry["runs"])
        n_sig = sum(1 for row in entry["runs"] if row["p_holm"] < alpha)
        parts.append(
            f"<h3>batch {_e(batch)}: m = {entry['m']} run(s) with a p-value "
            f"({entry['n_runs']} run folder(s) in all); {n_sig} below {alpha:g} after Holm</h3>"
            "<table class='holm'><tr><th>run</th><th>net pips</th><th>p vs random</th>"
            f"<th>p Holm (m = {entry['m']})</th><th>p direction vs same candles, random "
            "direction</th></tr>" + rows + "</table>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:6px;vertical-align:top;text-align:left;font-size:13px}
th{background:#f4f4f4}
.ok{color:#176d2c;font-weight:bold}.failed{color:#b00020;font-weight:bold}
.running{color:#a06000;font-weight:bold}
img{max-width:260px;border:1px solid #ccc;margin:2px}
code{font-size:12px}.err{color:#b00020;font-size:12px;white-space:pre-wrap}
.metrics td{border:none;padding:0 6px 0 0;font-size:12px}
"""


def build_index(reports: str | os.PathLike[str] | None = None) -> Path:
    """(Re)write ``REPORTS/index.html`` listing every run; returns its path."""
    from sep_research.reporting.paths import reports_dir

    root = reports_dir(reports)
    runs = collect_runs(root)
    counts: dict[str, int] = {}
    for r in runs:
        s = str(r["manifest"].get("status", "?"))
        counts[s] = counts.get(s, 0) + 1
    holm = batch_pvalues(runs)
    adjusted = {row["run_id"]: (row["p_holm"], entry["m"])
                for entry in holm.values() for row in entry["runs"]}
    rows = []
    for r in runs:
        m, met, d = r["manifest"], r["metrics"], r["dir"]
        rel = f"{RUNS_DIR}/{d.name}"
        status = str(m.get("status", "?"))
        links = [f'<a href="{_e(rel)}/{_e(name)}">{_e(label)}</a>'
                 for name, label in (("report.html", "report"), ("notebook.ipynb", "notebook"),
                                     ("metrics.json", "metrics"), ("manifest.json", "manifest"))
                 if (d / name).is_file()]
        figs = [f for f in met.get("figures", []) if f.get("file")]
        key = [f for f in figs if f.get("key")] or figs[:2]
        imgs = "".join(
            f'<a href="{_e(rel)}/{_e(f["file"])}"><img src="{_e(rel)}/{_e(f["file"])}" '
            f'alt="{_e(f.get("title", f["name"]))}" title="{_e(f.get("title", f["name"]))}">'
            "</a>" for f in key
        )
        metric_rows = "".join(
            f"<tr><td>{_e(k)}</td><td>{_e(_fmt(v))}</td></tr>"
            for k, v in list((met.get("metrics") or {}).items())[:12]
        )
        if d.name in adjusted:
            p_holm, m_runs = adjusted[d.name]
            metric_rows += (f"<tr><td>p_vs_random, Holm-adjusted (m = {m_runs})</td>"
                            f"<td><b>{p_holm:.4g}</b></td></tr>")
        err = m.get("error") or {}
        err_html = (f'<div class="err">{_e(err.get("type", ""))}: '
                    f'{_e(str(err.get("message", ""))[:400])}</div>' if err else "")
        git = m.get("git") or {}
        sha = (git.get("sha") or "")[:10] + ("+dirty" if git.get("dirty") else "")
        dur = m.get("duration_s")
        rows.append(
            "<tr>"
            f"<td><b>{_e(d.name)}</b><br>{' · '.join(links)}<br>"
            f"<code>{_e(Path(str(m.get('notebook', ''))).name)}</code></td>"
            f'<td class="{_e(status)}">{_e(status)}{err_html}</td>'
            f"<td><code>{_e(_short_params(m.get('parameters') or {}))}</code></td>"
            f'<td><table class="metrics">{metric_rows}</table></td>'
            f"<td>{imgs}</td>"
            f"<td>{_e(m.get('started_at', ''))}<br>"
            f"{_e(f'{dur:.1f} s' if isinstance(dur, (int, float)) else '')}<br>"
            f"<code>{_e(sha)}</code></td>"
            "</tr>"
        )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs yet"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SEP Research runs</title>"
        f"<style>{_CSS}</style></head><body><h1>SEP Research runs</h1>"
        f"<p>{len(runs)} run(s): {_e(summary)}. Rebuilt {now}. Newest first.</p>"
        + _holm_html(holm) +
        "<h2>Runs</h2><table><tr><th>run</th><th>status</th><th>parameters</th><th>metrics</th>"
        "<th>key figures</th><th>started, duration, commit</th></tr>"
        + "".join(rows) + "</table></body></html>\n"
    )
    return atomic_write_text(root / INDEX_FILE, page)
