"""HTML: the self-contained export of an executed notebook, and ``reports/index.html``.

The export embeds every figure (the notebooks show figures as PNG outputs, which nbconvert
inlines as data URIs), so a report folder can be mailed or copied alone. The index links each
run's report, notebook, metrics and manifest, shows its status, parameters, headline metrics
and key figures, and is rebuilt from the run folders (it holds no state of its own).
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
        "<table><tr><th>run</th><th>status</th><th>parameters</th><th>metrics</th>"
        "<th>key figures</th><th>started, duration, commit</th></tr>"
        + "".join(rows) + "</table></body></html>\n"
    )
    return atomic_write_text(root / INDEX_FILE, page)
