"""Every registered rule's sweep on the GPU agrees with the CPU: in the CUDA simulator here (a
fresh interpreter with ``NUMBA_ENABLE_CUDASIM=1``, small blocks and chunks so that multi-block
and multi-chunk paths run), on a real GPU when present (marker ``gpu``).

A rule with the seed's decision (seed, thresholded) runs the seed's kernels on its own feature
columns; a rule with its own decision (mtf, and the seed rule written as one) runs the generic
brute-force kernel compiled with its decide body. Sums are exact fixed-point sums either way,
so the same inputs give the same bits on every engine; features computed on the GPU may differ
from the CPU's by an ulp of ``exp``/``log2``/``sin``, so the end-to-end GPU check compares
counts exactly and sums within 1e-12, as the seed rule's test does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cases():
    """(rule, params, grid axes) of every registered rule and the test decision rule."""
    from sep_research.signals.rules.mtf import MtfParams

    base = {"window": [5, 11], "buy_threshold": [0.45, 0.5, 0.55], "conf_threshold": [0.6, 0.65],
            "spread": [0.0, 0.3]}
    return [
        ("seed", None, base),
        ("thresholded", None, {**base, "k_pips": [0.0, 1.5, 3.0]}),
        ("mtf", MtfParams(htf1="H2", htf2="H4"), {**base, "htf1_conf": [0.0, 1.0],
                                                   "htf2_conf": [0.0, 0.9]}),
        ("seed_decision", None, base),
    ]


def _register_examples() -> None:
    from sep_research import strategy
    from tests import rules_examples

    strategy.RULES.update(rules_examples.ENTRIES)


def _simulated_checks() -> None:
    """Runs inside the simulator (see the test below); raises on any disagreement."""
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    from sep_research.data import load_sample
    from sep_research.kernels import engine as eng
    from sep_research.signals.grid import product_grid
    from sep_research.signals.rules.base import get_rule
    from sep_research.signals.sweep import sweep_seed

    _register_examples()
    frame = load_sample().iloc[:260]
    n = len(frame)
    for rule, params, axes in _cases():
        grid = product_grid(rule, **axes)
        kw = {"rule": rule, "params": params, "score_start": 5, "score_end": n - 1,
              "half_spread_pips": 0.5}
        gpu = sweep_seed(frame, grid, engine="cuda", chunk=40, cuda_block=8, **kw)
        ref = sweep_seed(frame, grid, engine="python", **kw)
        for k, v in ref.items():
            assert v.tobytes() == gpu[k].tobytes(), (rule, k)
        assert ref["n_hc"].sum() > 0, rule
        r = get_rule(rule)
        if r.decision == "seed" and rule != "seed":  # a rule's bits, features on the GPU
            x = r.inputs(frame)
            p = r.preset()
            bits = r.bits(x["close"], [p], 1e-4, "python")
            args = (x["close"], x["high"], x["low"], x["volume"], [5, 11], p.to_vector(1e-4))
            a = eng.compute_features(*args, engine="cuda", bits=bits)
            b = eng.compute_features(*args, engine="python", bits=bits)
            assert np.array_equal(a, b, equal_nan=True), rule
    # an empty score range on the generic kernel
    res = sweep_seed(frame, product_grid("mtf", window=[5]), rule="mtf", score_start=7,
                     score_end=7, half_spread_pips=0.5, engine="cuda")
    assert not any(v.any() for v in res.values())
    print("simulated rule checks passed")


@pytest.mark.slow
def test_every_rules_sweep_in_the_cuda_simulator_matches_python():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tests.test_rules_cuda"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "simulated rule checks passed" in r.stdout


def _real_gpu() -> bool:
    from sep_research.kernels import engine

    return engine.cuda_available() and not engine.cuda_simulated()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="needs a real CUDA GPU")
@pytest.mark.parametrize("case", range(4))
def test_every_rules_sweep_on_the_gpu_matches_the_cpu(case):
    from sep_research.data import load_sample
    from sep_research.signals.grid import product_grid
    from sep_research.signals.sweep import prepare_sweep, run_prepared, sweep_seed

    _register_examples()
    rule, params, axes = _cases()[case]
    if rule == "mtf":
        params = None  # the default preset (H4, D) on the whole sample
    frame = load_sample()
    n = len(frame)
    grid = product_grid(rule, **{**axes, "w_s": [0.3, 0.4], "window": [9, 11, 13]})
    # the same prepared inputs: the same bits
    si = prepare_sweep(frame, grid, rule=rule, params=params, half_spread_pips=0.5,
                       engine="cpu")
    a = run_prepared(si, 20, n - 1, engine="cpu")
    b = run_prepared(si, 20, n - 1, engine="cuda")
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), (rule, k)
    # end to end, features on the GPU too
    kw = {"rule": rule, "params": params, "score_start": 20, "score_end": n - 1,
          "half_spread_pips": 0.5}
    c = sweep_seed(frame, grid, engine="cuda", **kw)
    for k in ("n_non_hold", "n_correct", "n_buy", "n_sell", "n_hc", "n_hc_correct",
              "n_hc_buy"):
        assert np.array_equal(a[k], c[k]), (rule, k)
    for k in ("sum_pips_net", "sum_pips_net_sq", "hc_sum_pips_net", "hc_sum_pips_net_sq"):
        np.testing.assert_allclose(c[k], a[k], rtol=1e-12, atol=1e-12, err_msg=f"{rule} {k}")


if __name__ == "__main__":
    _simulated_checks()
