"""The one configuration grid (:mod:`sep_research.signals.grid`): sweeps through it are bit
for bit what they were before it (digests recorded on main at 5a9a256, the packaged real
EUR_USD H1 sample), every spelling of a grid gives the same sweep, its kernel table has the
kernel's layout, and a bad grid is refused with an error naming the field."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest

from sep_research.data import load_sample
from sep_research.kernels import qfh
from sep_research.signals.grid import ConfigGrid, as_grid, product_grid
from sep_research.signals.rules.base import SEED_GRID_COLUMNS
from sep_research.signals.rules.mtf import MtfParams
from sep_research.signals.rules.thresholded import ThresholdedParams
from sep_research.signals.seed import SEED
from sep_research.signals.sweep import prepare_sweep, run_prepared, sweep_seed
from sep_research.training.grid import make_grid, small_grid


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def _digest(res: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(res):
        h.update(k.encode())
        h.update(str(res[k].dtype).encode())
        h.update(np.ascontiguousarray(res[k]).tobytes())
    return h.hexdigest()


def _product() -> ConfigGrid:
    return product_grid(window=[5, 11, 21], w_s=[0.3, 0.45], buy_threshold=[0.48, 0.5, 0.55],
                        sell_threshold=[0.5, 0.53], conf_threshold=[0.6, 0.7],
                        spread=[0.0, 0.7])


#: sha256 of every result array (name, dtype, bytes; sorted by name) of sweep_seed on the
#: packaged sample, scored 200 .. n - 1, half_spread_pips 0.5, cpu engine, computed on main at
#: 5a9a256 (structured arrays, grid_columns and the float table of training.grid) before the
#: one grid type replaced them. A deliberate change of the sweep (kernels, costs) changes them:
#: recompute them then, with the reason in the commit.
MAIN_DIGESTS = {
    "product": "fc1445ac84cfd9fd76bb27404e4c63bcbde95eedb92018c08e4a5d3d55ca8ffd",
    "product_thresholded": "774e6d499cd81f0c01ba6a0417128598d54c3be8134be33ce209bf4d09e859d1",
    "product_mtf": "09cfe1f6ef5e307c5968b2bbfdf0b48942f47d49b698bd1b5055939c9bf0b499",
    "small": "e94bc5911d548902b4de37c1b213ae32c2c67d757a1975b10c07a2d58d185ea8",
    "full": "6e7d14ed48925b5221e7bba1148d311990a7bfbec1969ce979907ba9bc170ffe",
    "small_thresholded": "55d1885aa117774223aa9850b9fd94df3d7eb66fefdcfb06d1cffaae68850835",
}
#: sha256 of the training grids' tables (float64, C order) on main at 5a9a256
MAIN_TABLES = {
    "small": "4b18ce5a6a6a2742d319f5dd39caeaf1d5fd71788fb91cbde8e5e6d50354d58c",
    "full": "1339ffdfaad80b64294790ade02cec8b74eb1e58cfb00531c8295c015233dba3",
}


def test_sweeps_through_the_one_grid_are_bit_identical_to_main(sample) -> None:
    n = len(sample)
    kw = {"score_start": 200, "score_end": n - 1, "half_spread_pips": 0.5, "engine": "cpu"}
    grids = {
        "product": _product(),
        "product_thresholded": product_grid("thresholded", window=[7, 11], k_pips=[0.0, 2.0],
                                            buy_threshold=[0.48, 0.52]),
        "product_mtf": product_grid("mtf", window=[7, 11], htf1_conf=[0.0, 1.0],
                                    buy_threshold=[0.48, 0.52]),
        "small": small_grid(),
        "full": make_grid(),
        "small_thresholded": small_grid(rule="thresholded"),
    }
    got = {name: _digest(sweep_seed(sample, g, **kw)) for name, g in grids.items()}
    assert got == MAIN_DIGESTS
    for name, want in MAIN_TABLES.items():
        t = np.ascontiguousarray(grids[name].table)
        assert hashlib.sha256(t.tobytes()).hexdigest() == want, name
    assert grids["small"].fields == ("window", "w_s", "w_c", "w_e", "buy_threshold",
                                     "sell_threshold", "conf_threshold", "coh_threshold")


def test_every_spelling_of_a_grid_gives_the_same_sweep(sample) -> None:
    """A product grid, a mapping of its columns, the same rows made from columns, the training
    grid and its rows as a mapping, and the walk-forward's preparation: one sweep."""
    from sep_research.training.walkforward import prepare_sweep as wf_prepare

    n = len(sample)
    kw = {"score_start": 300, "score_end": n - 1, "half_spread_pips": 0.5, "engine": "cpu"}
    g = _product()
    ref = sweep_seed(sample, g, **kw)
    for other in (g.columns(), ConfigGrid.from_columns(g.columns()), dict(g.columns())):
        res = sweep_seed(sample, other, **kw)
        assert all(res[k].tobytes() == v.tobytes() for k, v in ref.items())
    small = small_grid()
    a = sweep_seed(sample, small, **kw)
    b = sweep_seed(sample, small.columns(), **kw)
    si = wf_prepare(sample, small, instrument="EUR_USD", half_spread_pips=0.5, engine="cpu")
    c = run_prepared(si, 300, n - 1, engine="cpu")
    for k, v in a.items():
        assert v.tobytes() == b[k].tobytes() == c[k].tobytes(), k
    # a block of rows is the same configurations: its results are those rows' results
    rows = np.array([5, 0, 17, 3])
    part = sweep_seed(sample, g.rows(rows), **kw)
    for k, v in part.items():
        assert v.tobytes() == ref[k][rows].tobytes(), k


def test_the_grid_builds_the_kernels_table(sample) -> None:
    """g: the seed fields at their qfh.G_* columns (from the base where not gridded, spread 0),
    the feature row at G_WINDOW_INDEX; a bits rule's feature rows are (bit field values) x
    windows; a decision rule's own fields follow N_GRID."""
    g = product_grid(window=[11, 5], buy_threshold=[0.5, 0.55], min_move=[0.25])
    si = prepare_sweep(sample, g, half_spread_pips=0.5, engine="cpu")
    assert si.g.shape == (4, qfh.N_GRID)
    for name, c in SEED_GRID_COLUMNS.items():
        want = g.column(name)
        assert np.array_equal(si.g[:, c], want), name
    assert np.array_equal(si.g[:, qfh.G_SPREAD], np.zeros(4))
    assert np.array_equal(si.g[:, qfh.G_WS], np.full(4, SEED.w_s))
    assert np.array_equal(si.g[:, qfh.G_WINDOW_INDEX], [1, 1, 0, 0])  # windows 5, 11 sorted
    t = product_grid("thresholded", k_pips=[2.0, 0.0], window=[7, 11])
    st = prepare_sweep(sample.iloc[:600], t, half_spread_pips=0.5, engine="cpu")
    # feature rows: k_pips index x 2 windows + window index (k_pips 0.0 first, sorted)
    assert np.array_equal(st.g[:, qfh.G_WINDOW_INDEX], [2, 3, 0, 1])
    assert st.g.shape[1] == qfh.N_GRID  # the bit field is in the features, not in g
    m = product_grid("mtf", window=[7], htf2_conf=[0.5, 1.5], base=MtfParams(htf1_conf=0.25))
    sm = prepare_sweep(sample.iloc[:1500], m, half_spread_pips=0.5, engine="cpu")
    assert sm.g.shape == (2, qfh.N_GRID + 2)
    assert np.array_equal(sm.g[:, qfh.N_GRID:], [[0.25, 0.5], [0.25, 1.5]])


def test_grid_api() -> None:
    g = product_grid(window=[7, 11], w_s=[0.3, 0.4], spread=[0.0, 0.5])
    assert len(g) == 8 and g.fields == ("window", "w_s", "spread") and g.rule == "seed"
    assert g.base is SEED
    # rows: the last axis fastest, as itertools.product
    want = list(itertools.product([7, 11], [0.3, 0.4], [0.0, 0.5]))
    assert [tuple(r) for r in g.table.tolist()] == [tuple(map(float, w)) for w in want]
    assert g.row_dict(1) == {"window": 7, "w_s": 0.3, "spread": 0.5}
    assert type(g.row_dict(1)["window"]) is int
    assert g.params(1) == SEED.with_(window=7, w_s=0.3)  # spread is not a parameter
    assert np.array_equal(g.column("w_c"), np.full(8, SEED.w_c))
    assert np.array_equal(g.column("spread"), [0.0, 0.5] * 4)
    assert list(g.windows) == [7, 11]
    assert g.find(SEED.with_(window=11, w_s=0.4)) == 6  # spread 0 only
    assert g.find(SEED.with_(window=9)) is None
    with pytest.raises(ValueError, match="read-only"):
        g.table[0, 0] = 5.0
    sub = g.rows([3, 0])
    assert len(sub) == 2 and sub.row_dict(0) == g.row_dict(3)
    other = SEED.with_(w_c=0.2)
    assert g.with_base(other).column("w_c")[0] == 0.2 and g.base is SEED
    # tied axes: the training grid's weight triples
    t = ConfigGrid.product({"window": [5], ("w_s", "w_c", "w_e"): [(0.4, 0.1, 0.5),
                                                                  (0.5, 0.0, 0.5)]})
    assert t.fields == ("window", "w_s", "w_c", "w_e") and len(t) == 2
    one = ConfigGrid.single(SEED)
    assert len(one) == 1 and one.fields == () and one.column("window")[0] == SEED.window
    tg = small_grid(rule="thresholded")
    assert tg.params(0).k_pips == 0.0 and isinstance(tg.params(0), ThresholdedParams)
    assert "ConfigGrid(rule='seed', 8 configurations" in repr(g)


@pytest.mark.parametrize(("grid", "message"), [
    ({"window": [7, 11], "w_x": [0.1, 0.2]}, "unknown grid fields ['w_x'] for rule 'seed'"),
    ({"window": [7, 11], "w_s": [0.1]}, "grid field 'w_s' has 1 value(s) but 'window' has 2"),
    ({"window": ["seven"]}, "grid field 'window': values must be numbers"),
    ({"window": [[7, 11]]}, "grid field 'window': values must be a 1-D list"),
    ({"window": []}, "grid field 'window' has no values"),
    ({"window": [7], "w_s": [float("nan")]}, "grid field 'w_s' holds NaN or infinite values"),
    ({"window": [1]}, "grid field 'window' must hold integers >= 2"),
    ({"window": [7.5]}, "grid field 'window' must hold integers >= 2"),
    ({"min_move": [-1.0]}, "grid field 'min_move' must be >= 0"),
    ({}, "at least one field"),
])
def test_bad_grids_name_the_field(grid, message) -> None:
    with pytest.raises(ValueError, match=_literal(message)):
        as_grid(grid)
    if grid:  # the same error where a sweep is given the mapping
        with pytest.raises(ValueError, match=_literal(message)):
            sweep_seed({"close": np.ones(10), "high": np.ones(10), "low": np.ones(10),
                        "volume": np.ones(10)}, grid, score_start=0, score_end=5,
                       instrument="EUR_USD", half_spread_pips=0.5)


def _literal(s: str) -> str:
    import re

    return re.escape(s)


def test_what_is_not_a_grid_is_refused() -> None:
    old = np.zeros(3, dtype=[("window", np.float64)])
    with pytest.raises(ValueError, match="numpy structured array: pass"):
        as_grid(old)
    with pytest.raises(ValueError, match="got list"):
        as_grid([7, 11])
    with pytest.raises(ValueError, match="rule='seed' but the grid is of rule 'thresholded'"):
        as_grid(small_grid(rule="thresholded"), rule="seed")
    with pytest.raises(ValueError, match="takes ThresholdedParams"):
        as_grid(small_grid(rule="thresholded"), params=SEED)
    with pytest.raises(ValueError, match="given twice"):
        ConfigGrid.product({"window": [5], ("window", "w_s"): [(7, 0.1)]})
    with pytest.raises(ValueError, match=r"each entry must hold 3 values \(w_s, w_c, w_e\)"):
        make_grid(weights=[(0.4, 0.6)])
    with pytest.raises(ValueError, match="must be \\(K, 1\\)"):
        ConfigGrid(table=np.zeros((2, 2)), fields=("window",))
