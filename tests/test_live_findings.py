"""Issue 12's findings in the runner and its journal, one test (or a few) per finding; the
finding's number is in each docstring (``../shared/docs/security-review-2026-12.md``).

Synthetic values only; the emulator runs in this process on a manual replay clock; tokens are
obviously fake."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sep_research.live.journal import Journal, JournalCorrupt, JournalError, JournalFull
from sep_research.live.runner import NeedsHuman, needs_human
from tests.live_helpers import (
    ROOT,
    Rig,
    check_no_duplicates,
    compare_with_account,
    make_artifact,
    paper_runner,
    sample_frame,
    write_candle_json,
)

OTHER_ACCOUNT = "101-001-0000000-002"


def _stop(r) -> None:
    r.stop()
    r.shutdown()
    r.journal.close()


# ------------------------------------------------------------------ finding 4


def test_journal_of_another_account_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 4: a journal reused with another account marked the open trades closed with
    P&L 0, orphaned the live trade and kept the old last transaction ID. The journal now
    records account and environment and the runner refuses a mismatch (exit 2)."""
    rig = Rig(tmp_path, emulator={"extra_accounts": (OTHER_ACCOUNT,)},
              conf_threshold=0.0, coh_threshold=0.0)
    try:
        r = rig.runner(monkeypatch)
        for _ in range(3):
            rig.advance_and_step(r)
        _stop(r)
        before = Journal(rig.journal)
        open_before = before.positions("open")
        last_before = before.last_transaction_id
        before.close()
        assert open_before, "the scenario needs an open trade"
        monkeypatch.setenv("OANDA_ACCOUNT_ID", OTHER_ACCOUNT)
        rig.env["OANDA_ACCOUNT_ID"] = OTHER_ACCOUNT
        other = rig.build(monkeypatch)
        with pytest.raises(NeedsHuman, match=f"belongs to account {rig.emu.account_id}"):
            other.start(status=False)
        other.shutdown()
        other.journal.close()
        after = Journal(rig.journal)
        assert after.positions("open") == open_before  # nothing marked closed
        assert after.last_transaction_id == last_before
        after.close()
        # through `sep run`: exit status 2 (systemd does not restart it), the reason named
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **rig.env}
        out = subprocess.run([sys.executable, "-m", "runners.live", "--config",
                              str(rig.config), "--model", rig.models[0]], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "needs a person" in out.stderr and OTHER_ACCOUNT in out.stderr
    finally:
        rig.stop()


def test_account_behind_the_journal_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 4 (and 12, "last_transaction_id far ahead: runs silently and misses fills"):
    an account whose last transaction ID is below the journal's (reset or replaced) is
    refused as needing a person."""
    rig = Rig(tmp_path)
    try:
        r = rig.runner(monkeypatch)
        _stop(r)
        j = Journal(rig.journal)
        j.set_last_transaction_id("987654")
        j.close()
        r2 = rig.build(monkeypatch)
        with pytest.raises(NeedsHuman, match="below the journal's"):
            r2.start(status=False)
        r2.shutdown()
        r2.journal.close()
    finally:
        rig.stop()


# ------------------------------------------------------------------ findings 8 and 9


def test_reload_reads_only_configured_artifacts_bounded(tmp_path: Path) -> None:
    """Finding 8: /api/reload read any path without bounds (/dev/zero took the runner to
    8.9 GB) and its errors told whether a file exists or is a directory. Now only the
    configured artifacts or regular files in their folder, of bounded size, are read, and a
    path outside gets the same answer whether or not it exists."""
    r = paper_runner(tmp_path, sample_frame().iloc[:50])
    try:
        answers = {p: r.command("reload", {"models": [p]})
                   for p in ("/etc/shadow", "/nonexistent/model.json", str(tmp_path),
                             "/etc/hostname", str(tmp_path / "models" / ".." / "x.json"))}
        for p, a in answers.items():
            assert a["ok"] is False, (p, a)
        texts = {a["error"] for a in answers.values()}
        assert len(texts) == 1, texts  # one answer: nothing learnt about outside files
        t0 = time.monotonic()
        zero = r.command("reload", {"models": ["/dev/zero"]})
        assert zero["ok"] is False and zero["error"] in texts
        assert time.monotonic() - t0 < 5
        models = tmp_path / "models"
        (models / "link.json").symlink_to("/dev/zero")
        assert r.command("reload", {"models": [str(models / "link.json")]})["error"] in texts
        big = models / "big.json"
        with big.open("wb") as fh:
            fh.truncate(5 * 1024 * 1024)
        assert "more than an artifact may have" in r.command(
            "reload", {"models": [str(big)]})["error"]
        (models / "sub").mkdir()
        assert "not a regular file" in r.command(
            "reload", {"models": [str(models / "sub")]})["error"]
        for bad in ("x", ["a"] * 10, [5]):
            assert r.command("reload", {"models": bad})["ok"] is False
        ok = r.command("reload", {})  # the configured artifact
        assert ok["ok"] is True, ok
        refused = r.journal.decisions(limit=100, kind="reload", taken=False)
        assert len(refused) >= 9
    finally:
        _stop(r)


def test_unusable_artifact_is_not_half_swapped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 9: reloading a verify-passing but unusable artifact (``window: 11.0``) answered
    "ok", then warm-up failed after ``models`` was assigned and before ``paths``: status and
    client IDs from the new model, signals from the old, no decision journalled. Now the new
    paths are built and warmed up first; a failure swaps nothing and is journalled.

    (Artifacts now refuse a float window when written and read, so the failure of the new
    model's signal code is injected: its ``update`` raises the IndexError the review saw.)"""
    from sep_research.live.model import SignalPath

    frame = sample_frame().iloc[:120]
    r = paper_runner(tmp_path, frame, conf_threshold=0.0, coh_threshold=0.0)
    real_update = SignalPath.update

    def update(self: SignalPath, candle):
        if self.model.path.endswith("unusable.json"):
            raise IndexError("only integers, slices ... are valid indices")
        return real_update(self, candle)

    monkeypatch.setattr(SignalPath, "update", update)
    try:
        for _ in range(60):
            r.step()
        old_id = r.status()["model_id"]["EUR_USD"]
        old_path = r.state.paths["EUR_USD"]
        bad = make_artifact(tmp_path / "models" / "unusable.json", window=12,
                            stop_loss_pips=20.0)
        answer = r.command("reload", {"models": [str(bad)]})
        assert answer["ok"] is False and "fails on recent candles" in answer["error"], answer
        for _ in range(5):
            r.step()
        assert r.status()["model_id"]["EUR_USD"] == old_id
        assert r.state.paths["EUR_USD"] is old_path
        assert r.state.model_paths == [str(tmp_path / "models" / "m.json")]
        assert {s["model_id"] for s in r.journal.signals(limit=5)} == {old_id}
        (d,) = r.journal.decisions(limit=100, kind="reload")
        assert not d["taken"] and "unusable.json" in d["reason"]
        # a good artifact is swapped in whole, at the next step, and the decision journalled
        good = make_artifact(tmp_path / "models" / "good.json", window=13, conf_threshold=0.0,
                             coh_threshold=0.0, stop_loss_pips=20.0)
        assert r.command("reload", {"models": [str(good)]})["ok"] is True
        r.step()
        new_id = r.status()["model_id"]["EUR_USD"]
        assert new_id != old_id and r.state.paths["EUR_USD"].model.model_id == new_id
        assert r.journal.decisions(limit=1, kind="reload")[0]["taken"]
        r.step()
        assert r.journal.signals(limit=1)[0]["model_id"] == new_id
    finally:
        _stop(r)


# ------------------------------------------------------------------ finding 11


def _cap(journal: Journal, extra_pages: int) -> None:
    """Fault injection: a full disk for this connection (SQLite's page cap)."""
    n = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count={n + extra_pages}")


def test_disk_full_is_named_counted_in_health_and_never_called_corrupt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 11: with the journal's disk full every candle failed with "database or disk is
    full" while /health said ok, and the restart advice called the journal corrupt (following
    it discards the unresolved intents and the history). Now: reported as disk full, counted
    in /health (503 after status.unhealthy_after_errors in a row), never called corrupt."""
    r = paper_runner(tmp_path, sample_frame().iloc[:300], config={
        "status": {"enabled": False, "unhealthy_after_errors": 3}})
    try:
        r.run(max_steps=5)
        assert r.health()[0]
        r._stop.clear()
        _cap(r.journal, 0)
        r.run(max_steps=40)
        ok, body = r.health()
        assert not ok and body["loop_errors"] >= 3, body
        assert body["last_error"].startswith("disk full") and "not corrupt" in body["last_error"]
        assert "corrupt or not" not in body["last_error"]
    finally:
        r.shutdown()
        r.journal.close()
    # the journal is intact and opens again (the disk has room now)
    j = Journal(tmp_path / "journal.sqlite")
    assert j.signals(limit=1)
    j.close()
    # a journal that cannot even be created on a full disk: "disk full", not "corrupt"
    real = sqlite3.connect

    def tiny(*a, **k):
        con = real(*a, **k)
        con.execute("PRAGMA max_page_count=1")
        return con

    monkeypatch.setattr(sqlite3, "connect", tiny)
    with pytest.raises(JournalFull) as info:
        Journal(tmp_path / "new.sqlite")
    assert "disk full" in str(info.value) and "corrupt or not" not in str(info.value)
    assert not needs_human(info.value)  # exit 1: systemd retries, nobody discards it


# ------------------------------------------------------------------ finding 12


def _journal_with_rows(path: Path) -> None:
    j = Journal(path)
    j.add_order_intent("sep-abc", "EUR_USD", "2017-06-12T00:00:00.000000000Z", "open", 1000,
                       "1.1", None)
    j.update_order("sep-abc", "filled", order_id="4", trade_id="5")
    j.open_position(trade_id="5", instrument="EUR_USD", units=1000, entry_price=1.12,
                    stop_loss=1.118, take_profit=None, client_id="sep-abc", origin="runner",
                    opened_at="2017-06-12T00:00:00.000000000Z")
    j.record_candle("EUR_USD", "2017-06-12T00:00:00.000000000Z", 1.12)  # type: ignore[arg-type]
    j.set_meta("risk_state", json.dumps({"halted": False, "consecutive_losses": 0}))
    j.set_meta("blocked", "{}")
    j.set_last_transaction_id("5")
    j.record_financing(transaction_id="6", time="2017-06-12T21:00:00.000000000Z",
                       trades=[("5", "EUR_USD", -0.0773)])
    j.close()


@pytest.mark.parametrize(("sql", "where"), [
    ("UPDATE orders SET client_id=CAST(X'736570FF2D61' AS TEXT)", "orders"),
    ("UPDATE positions SET instrument=CAST(X'4555FE52' AS TEXT)", "positions"),
    ("UPDATE meta SET value='{not json' WHERE key='risk_state'", "risk_state"),
    ("UPDATE meta SET value='{\"halted\": \"yes\"}' WHERE key='risk_state'", "risk_state"),
    ("UPDATE meta SET value='{\"consecutive_losses\": 1.5}' WHERE key='risk_state'",
     "risk_state"),
    ("UPDATE meta SET value='{\"EUR_USD\": \"x\"}' WHERE key='blocked'", "blocked"),
    ("UPDATE meta SET value='abc' WHERE key='last_transaction_id'", "last_transaction_id"),
    ("UPDATE candles SET time='garbage'", "candles"),
    ("UPDATE orders SET state='weird'", "orders"),
    ("UPDATE positions SET units='many'", "positions"),
    ("UPDATE financing SET amount='lots'", "financing"),
    ("UPDATE financing SET time='soon'", "financing"),
])
def test_bad_rows_are_refused_naming_the_journal(tmp_path: Path, sql: str, where: str) -> None:
    """Finding 12: invalid UTF-8 in a row crashed the runner (exit 1, restarted every 10 s
    forever); non-JSON or wrongly typed state gave messages that never named the journal, or
    a loop error at every step. Every row the runner relies on is read with its type at
    open; a bad one refuses the journal, naming it and the table, and leaves it as it was."""
    p = tmp_path / "journal.sqlite"
    _journal_with_rows(p)
    con = sqlite3.connect(p)
    con.execute(sql)
    con.commit()
    con.close()
    before = p.read_bytes()
    with pytest.raises(JournalCorrupt) as info:
        Journal(p)
    assert str(p) in str(info.value) and where in str(info.value)
    assert p.read_bytes() == before


def test_integrity_check_sees_what_quick_check_misses(tmp_path: Path) -> None:
    """Finding 12: ``PRAGMA quick_check`` passed damaged journals (an index that no longer
    matches its table is one quick_check does not look at); ``integrity_check`` is used."""
    p = tmp_path / "journal.sqlite"
    _journal_with_rows(p)
    con = sqlite3.connect(p)
    con.execute("PRAGMA writable_schema=ON")
    con.execute("UPDATE sqlite_master SET sql='CREATE INDEX orders_state ON orders (instrument)'"
                " WHERE name='orders_state'")
    con.commit()
    con.close()
    con = sqlite3.connect(p)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
    con.close()
    before = p.read_bytes()
    with pytest.raises(JournalCorrupt, match="integrity check"):
        Journal(p)
    assert p.read_bytes() == before


def test_foreign_sqlite_file_is_refused_unchanged(tmp_path: Path) -> None:
    """Finding 12: a foreign SQLite file with a ``meta`` table was changed before it was
    refused (WAL mode set, the runner's tables created, application_id set)."""
    p = tmp_path / "app.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'x')")
    con.commit()
    con.close()
    before = p.read_bytes()
    with pytest.raises(JournalCorrupt, match="not a runner journal"):
        Journal(p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["app.sqlite"]
    wal = tmp_path / "wal.sqlite"  # a foreign file in WAL mode: no -wal/-shm left behind
    con = sqlite3.connect(wal)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE other (x)")
    con.commit()
    con.close()
    with pytest.raises(JournalCorrupt):
        Journal(wal)
    assert not (tmp_path / "wal.sqlite-wal").exists()
    other = tmp_path / "other-app.sqlite"
    con = sqlite3.connect(other)
    con.execute("PRAGMA application_id=1234")
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.commit()
    con.close()
    with pytest.raises(JournalCorrupt, match="application_id"):
        Journal(other)


def test_corrupt_journal_exits_2_and_the_unit_does_not_restart_it(tmp_path: Path) -> None:
    """Finding 12: exit status 2 for a corrupt journal, which sep-runner.service excludes
    from restarts (RestartPreventExitStatus=2), instead of a traceback and exit 1 every 10 s."""
    unit = (ROOT / "runners" / "deploy" / "sep-runner.service").read_text()
    assert "RestartPreventExitStatus=2" in unit and "Restart=on-failure" in unit
    p = tmp_path / "journal.sqlite"
    _journal_with_rows(p)
    con = sqlite3.connect(p)
    con.execute("UPDATE orders SET client_id=CAST(X'736570FF2D61' AS TEXT)")
    con.commit()
    con.close()
    write_candle_json(sample_frame().iloc[:30], tmp_path / "c.json")
    art = make_artifact(tmp_path / "m.json", stop_loss_pips=20.0)
    (tmp_path / "r.yaml").write_text(
        f"instruments: [EUR_USD]\njournal: {p}\n"
        f"feed: {{source: file, files: {{EUR_USD: {tmp_path / 'c.json'}}}}}\n"
        "status: {enabled: false}\n")
    out = subprocess.run([sys.executable, "-m", "runners.live", "--paper", "--model", str(art),
                          "--config", str(tmp_path / "r.yaml")], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False,
                         env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert out.returncode == 2, out.stderr[-2000:]
    assert str(p) in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------ finding 14


def test_empty_journal_on_an_account_with_history_imports_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 14: a power cut before the first WAL checkpoint lost the whole history; the
    restarted runner read no transactions (no last transaction ID), so orders and fills were
    missing for good. An empty journal against a non-empty account now imports the account's
    transactions: fills, positions and the runner's orders (so none is sent again)."""
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    try:
        r = rig.runner(monkeypatch)
        for _ in range(8):
            rig.advance_and_step(r)
        _stop(r)
        for f in tmp_path.glob("journal.sqlite*"):
            f.unlink()  # the whole journal lost
        r2 = rig.runner(monkeypatch)  # re-decides the newest candle: a repeat, not a 2nd order
        _stop(r2)
        figures = compare_with_account(rig, rig.journal)
        assert figures["fills"] >= 4, figures
        check_no_duplicates(rig, rig.journal)
        j = Journal(rig.journal)
        imported = j.orders(limit=1000)
        assert imported and all(o["state"] != "intent" for o in imported)
        assert any(d["reason"].startswith("empty journal on an account with history")
                   for d in j.decisions(limit=100, kind="reconcile"))
        j.close()
    finally:
        rig.stop()


def test_orders_and_fills_survive_losing_the_wal(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 14: with synchronous=NORMAL the WAL is not synced until a checkpoint, so a
    power cut (modelled by losing the WAL) lost every order. The journal is checkpointed
    when created and after each order outcome and fill; an order's intent is synced before
    it is sent."""
    rig = Rig(tmp_path, conf_threshold=0.0, coh_threshold=0.0)
    try:
        r = rig.runner(monkeypatch)
        for _ in range(6):
            rig.advance_and_step(r)
        orders = {o["client_id"]: o["state"] for o in r.journal.orders(limit=1000)}
        fills = {f["transaction_id"] for f in r.journal.fills(limit=1000)}
        assert len(orders) >= 3
        # the database file alone, as a power cut that loses the WAL would leave it
        cut = tmp_path / "cut"
        cut.mkdir()
        (cut / "journal.sqlite").write_bytes(rig.journal.read_bytes())
        _stop(r)
    finally:
        rig.stop()
    j = Journal(cut / "journal.sqlite")
    try:
        assert {o["client_id"]: o["state"] for o in j.orders(limit=1000)} == orders
        assert {f["transaction_id"] for f in j.fills(limit=1000)} == fills
    finally:
        j.close()


# ------------------------------------------------------------------ finding 20


def test_halt_reason_is_bounded(tmp_path: Path) -> None:
    """Finding 20 (runner part): a 1 MB halt reason was persisted in meta and served by every
    /api/status."""
    r = paper_runner(tmp_path, sample_frame().iloc[:30])
    try:
        answer = r.command("halt", {"reason": "x" * 1_000_000})
        assert answer["ok"] and len(answer["reason"]) <= 500
        assert len(json.dumps(r.status())) < 20_000
        assert r.command("halt", {"reason": {"nested": 1}})["ok"] is False
    finally:
        _stop(r)
    j = Journal(tmp_path / "journal.sqlite")
    assert len(j.get_meta("risk_state") or "") < 2_000
    assert all(len(d["reason"]) <= 500 for d in j.decisions(limit=100))
    j.close()


def test_journal_errors_are_journal_errors() -> None:
    assert issubclass(JournalCorrupt, JournalError) and issubclass(JournalFull, JournalError)
    assert needs_human(JournalCorrupt("x")) and needs_human(NeedsHuman("x"))
