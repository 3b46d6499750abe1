"""The rule interface and the two rule families: the registry and ``sep rules``, what the
framework derives for a registered rule (look-ahead check, sweep, grids, artifact spec),
thresholded bits (k = 0 is the seed rule exactly), multi-timeframe confirmation (causal; the
unfinished-HTF variant and a rule reading one candle ahead are caught), and the resampling."""

from __future__ import annotations

import numpy as np
import pytest

from sep_research import strategy
from sep_research.cli import main
from sep_research.data.resample import (
    CandleResampler,
    closed_index,
    frame_seconds,
    htf_step,
    resample_arrays,
    resample_frame,
)
from sep_research.signals.causality import check_rule
from sep_research.signals.grid import product_grid
from sep_research.signals.rules.base import get_rule, rule_names, rule_signals
from sep_research.signals.rules.mtf import MtfParams
from sep_research.signals.rules.thresholded import ThresholdedParams
from sep_research.signals.seed import SEED, SeedParams, seed_signals
from sep_research.signals.sweep import config_signals, sweep_seed
from sep_research.strategy import CostModel, SpecError, StrategySpec
from sep_research.training.grid import make_grid, small_grid
from tests import rules_examples
from tests.conftest import SEED_O_TEST, seed_file

SHIPPED = ("seed", "thresholded", "mtf")


@pytest.fixture(scope="module")
def sample():
    from sep_research.data import load_sample

    return load_sample()


@pytest.fixture(scope="module")
def head(sample):
    return sample.iloc[:1500]


@pytest.fixture
def registered(monkeypatch):
    """The test rules of tests.rules_examples, registered for the test."""
    for name, entry in rules_examples.ENTRIES.items():
        monkeypatch.setitem(strategy.RULES, name, entry)


# ---- the registry and sep rules ------------------------------------------------------------

def test_sep_rules_lists_every_rule_with_parameters_ranges_and_presets(capsys):
    assert set(SHIPPED) <= set(rule_names())
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert f"\n{name}: " in "\n" + out
    for text in ("k_pips", "float, 0 .. 1000", "repeat_limit=24", "htf1='H4'", "htf1_conf",
                 "window          int, 2 .. 5000", "presets: default, k0",
                 "presets: default, seed-m1", "exact brute force", "threshold-space"):
        assert text in out, text
    assert main(["rules", "mtf"]) == 0
    assert capsys.readouterr().out.startswith("mtf: ")


def test_each_rule_has_its_params_class_and_presets():
    for name in SHIPPED:
        r = get_rule(name)
        assert r.name == name and strategy.rule_params_class(name) is r.params_class
        for p in r.presets.values():
            assert type(p) is r.params_class
            assert r.params_class.from_dict(p.to_dict()) == p
    assert get_rule("thresholded").preset("k0").k_pips == 0.0
    with pytest.raises(ValueError, match="no preset 'x'; known: default, k0"):
        get_rule("thresholded").preset("x")
    with pytest.raises(SpecError, match="unknown rule 'nope'"):
        get_rule("nope")


def test_spec_takes_exactly_the_rules_class_and_names_bad_keys():
    mid = CostModel("mid", 0.5)
    StrategySpec("EUR_USD", "H1", rule="thresholded", params=ThresholdedParams(), costs=mid)
    # a subclass instance is not the seed rule's parameters, nor the reverse
    with pytest.raises(SpecError, match="expected SeedParams for rule 'seed'"):
        StrategySpec("EUR_USD", "H1", rule="seed", params=ThresholdedParams(), costs=mid)
    with pytest.raises(SpecError, match="expected ThresholdedParams"):
        StrategySpec("EUR_USD", "H1", rule="thresholded", params=SEED, costs=mid)
    d = StrategySpec("EUR_USD", "H1", rule="mtf", costs=mid).to_dict()
    assert d["signal_params"]["htf2"] == "D" and StrategySpec.from_dict(d).params == MtfParams()
    for key, value, match in (("k_pips", -1.0, r"signal_params\.k_pips: must be >= 0"),
                              ("repeat_limit", 2.5, r"repeat_limit: expected an integer")):
        t = StrategySpec("EUR_USD", "H1", rule="thresholded", costs=mid).to_dict()
        t["signal_params"][key] = value
        with pytest.raises(SpecError, match=match):
            StrategySpec.from_dict(t)
    bad = {**d, "signal_params": {**d["signal_params"], "htf1": "H5"}}
    with pytest.raises(SpecError, match=r"signal_params\.htf1: must be one of"):
        StrategySpec.from_dict(bad)
    # H4 and D are not higher granularities than D candles: refused, naming the parameter
    with pytest.raises(SpecError, match=r"signal_params\.htf1: H4 is not a higher granularity"):
        StrategySpec.from_dict({**d, "granularity": "D"})
    with pytest.raises(ValueError, match=r"htf1 .H4. must be shorter than htf2 .H1."):
        MtfParams(htf2="H1")


# ---- the look-ahead check for every registered rule ----------------------------------------

def _compatible_presets():
    out = []
    for name in SHIPPED:
        for preset in get_rule(name).presets:
            if name == "mtf" and preset == "seed-m1":
                continue  # M5/M15 over M1 candles: checked on the seed's M1 file below
            out.append((name, preset))
    return out


@pytest.mark.parametrize(("rule", "preset"), _compatible_presets())
def test_every_rule_and_preset_passes_the_look_ahead_check(head, rule, preset):
    reports = check_rule(head, rule, preset=preset, engine="cpu", n_cuts=12)
    assert reports
    for rep in reports.values():
        assert rep.checked == len(rep.cuts) * 5 and rep.ok, rep.summary()


def test_mtf_seed_m1_preset_is_causal_on_the_seed_m1_file():
    from sep_research.signals.cli import load_file

    frame = load_file(seed_file(SEED_O_TEST), instrument="EUR_USD", granularity="M1")
    for rep in check_rule(frame, "mtf", preset="seed-m1", engine="cpu", n_cuts=10).values():
        assert rep.ok, rep.summary()


def test_a_rule_reading_one_candle_ahead_is_caught(head, registered):
    reports = check_rule(head, "leaky", engine="cpu", n_cuts=10)
    for rep in reports.values():
        assert not rep.ok
        assert rep.first.candle <= rep.first.cut
    # the CLI says so with exit status 1
    assert main(["check-causality", "--rule", "leaky", "--cuts", "4"]) == 1


def test_the_unfinished_htf_variant_is_caught(head, registered):
    reps = check_rule(head, "mtf_unfinished", engine="cpu", n_cuts=10)
    sig = reps["mtf_unfinished_signals"]
    assert not sig.ok and sig.first.candle <= sig.first.cut
    feats = reps["mtf_unfinished_features"]
    assert not feats.ok and feats.first.name.startswith("htf")
    assert all(r.ok for r in check_rule(head, "mtf", engine="cpu", n_cuts=10).values())


def test_cli_check_causality_per_rule(capsys):
    for name in SHIPPED:
        assert main(["check-causality", "--rule", name, "--cuts", "4", "--engine", "cpu"]) == 0
        assert f"rule {name}" in capsys.readouterr().out
    assert main(["check-causality", "--rule", "mtf", "--preset", "nope"]) == 2


# ---- thresholded bits -------------------------------------------------------------------------

def _naive_bits(close, k, limit, ppu):
    d = (close[1:] - close[:-1]) * ppu
    out = np.empty(d.size, dtype=np.int8)
    for j in range(d.size):
        out[j] = 1 if close[j + 1] > close[j] else 0
        for jj in range(j, max(0, j - limit + 1) - 1, -1):
            if abs(d[jj]) >= k:
                out[j] = 1 if d[jj] > 0 else 0
                break
    return out


def test_threshold_bits_follow_their_definition(sample):
    r = get_rule("thresholded")
    close = np.asarray(sample["close"], dtype=np.float64)[:3000]
    for k, limit in ((0.0, 24), (2.0, 24), (5.0, 3), (3.0, 1)):
        p = ThresholdedParams(k_pips=k, repeat_limit=limit)
        ref = _naive_bits(close, k, limit, 1e4)
        for engine in ("cpu", "python"):
            assert np.array_equal(r.bits(close, [p], 1e-4, engine)[0], ref), (k, limit, engine)
    # larger k repeats more bits; k = 0 and repeat_limit = 1 are the spec's bits
    spec = (close[1:] > close[:-1]).astype(np.int8)
    assert np.array_equal(_naive_bits(close, 0.0, 24, 1e4), spec)
    assert np.array_equal(_naive_bits(close, 7.0, 1, 1e4), spec)
    changed = [(_naive_bits(close, k, 24, 1e4) != spec).mean() for k in (1.0, 2.0, 4.0)]
    assert 0 < changed[0] < changed[1] < changed[2]


def test_thresholded_with_k_zero_is_the_seed_rule_exactly(sample):
    k0 = ThresholdedParams(k_pips=0.0)
    a = seed_signals(sample, SEED, engine="cpu")
    b = rule_signals(sample, k0, rule="thresholded", engine="cpu")
    for name in ("action", "confidence", "hc"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    for name, v in a.features.items():
        assert np.array_equal(v, b.features[name], equal_nan=True), name
    axes = {"window": [5, 11, 17], "w_s": [0.3, 0.4], "buy_threshold": [0.45, 0.5, 0.55],
            "conf_threshold": [0.6, 0.65], "min_move": [0.0, 0.5], "spread": [0.0, 0.3]}
    n = len(sample)
    kw = {"score_start": 40, "score_end": n - 1, "half_spread_pips": 0.5, "engine": "cpu"}
    ref = sweep_seed(sample, product_grid(**axes), **kw)
    got = sweep_seed(sample, product_grid("thresholded", k_pips=[0.0], **axes),
                     rule="thresholded", params=k0, **kw)
    for key, v in ref.items():
        assert v.dtype == got[key].dtype and v.tobytes() == got[key].tobytes(), key


def test_thresholded_sweep_equals_its_signals_and_engines_agree(sample):
    n = len(sample)
    grid = product_grid("thresholded", window=[7, 11], buy_threshold=[0.48, 0.52],
                        k_pips=[0.0, 1.5, 3.0])
    kw = {"rule": "thresholded", "score_start": 100, "score_end": n - 1,
          "half_spread_pips": 0.5}
    cpu = sweep_seed(sample, grid, engine="cpu", **kw)
    py = sweep_seed(sample.iloc[:1200], grid, **{**kw, "score_end": 1199}, engine="python")
    cpu_head = sweep_seed(sample.iloc[:1200], grid, **{**kw, "score_end": 1199}, engine="cpu")
    for key in cpu:
        assert np.array_equal(py[key], cpu_head[key]), key
    _check_sweep_against_signals(sample, grid, cpu, "thresholded", 100, n - 1)


def _check_sweep_against_signals(frame, grid, res, rule, lo, hi):
    """Counts of the sweep equal those of each configuration's own signals; sums agree."""
    from sep_research.signals.seed import label_moves

    mv = label_moves(frame["close"], pip=1e-4)
    for j in range(len(grid)):
        sig = config_signals(frame, grid.row_dict(j), rule=rule, engine="cpu")
        a = sig.action[lo:hi].astype(float)
        ok = np.isfinite(mv[lo:hi])
        traded = (a != 0) & ok
        hc = traded & sig.hc[lo:hi]
        assert res["n_non_hold"][j] == traded.sum() and res["n_hc"][j] == hc.sum()
        assert res["n_buy"][j] == ((a == 1) & ok).sum()
        pips = a * np.nan_to_num(mv[lo:hi]) - 1.0
        assert res["hc_sum_pips_net"][j] == pytest.approx(pips[hc].sum(), abs=1e-6)


# ---- multi-timeframe confirmation -------------------------------------------------------------

def test_mtf_follows_its_definition_from_resampled_frames(sample):
    """The rule's signals against an independent statement of the definition: the seed rule's
    signals on frames resampled by pandas-free resample_frame, the latest closed HTF candle
    found by time."""
    p = MtfParams(htf1_conf=0.9, htf2_conf=0.0)
    got = rule_signals(sample, p, rule="mtf", engine="cpu")
    base = seed_signals(sample, p, engine="cpu")
    t = frame_seconds(sample)
    votes = []
    for htf, conf in ((p.htf1, p.htf1_conf), (p.htf2, p.htf2_conf)):
        h = resample_frame(sample, htf)
        s = seed_signals(h, p, engine="cpu")
        ends = frame_seconds(h) + htf_step("H1", htf)[1]
        j = np.array([np.flatnonzero(ends <= ti + 3600).max(initial=-1) for ti in t])
        act = np.where(j >= 0, s.action[j], 0)
        cf = np.where(j >= 0, s.confidence[j], np.nan)
        votes.append((act, cf, conf))
    ok = base.action != 0
    for act, cf, conf in votes:
        ok &= (act == base.action) & (cf >= conf)
    want = np.where(ok, base.action, 0)
    assert np.array_equal(got.action, want)
    assert np.array_equal(got.hc, ok & base.hc)
    assert np.array_equal(got.confidence, base.confidence, equal_nan=True)
    assert 50 < (want != 0).sum() < (base.action != 0).sum()


def test_mtf_sweep_engines_agree_and_equal_the_signals(sample):
    n = len(sample)
    grid = product_grid("mtf", window=[7, 11], buy_threshold=[0.48, 0.52], htf1_conf=[0.0, 1.0],
                        htf2_conf=[0.0, 1.0])
    kw = {"rule": "mtf", "score_start": 100, "score_end": n - 1, "half_spread_pips": 0.5}
    cpu = sweep_seed(sample, grid, engine="cpu", **kw)
    py = sweep_seed(sample, grid, engine="python", **kw)
    for key in cpu:
        assert cpu[key].tobytes() == py[key].tobytes(), key
    # candles per chunk change nothing (exact sums)
    c2 = sweep_seed(sample, grid, engine="cpu", chunk=333, **kw)
    for key in cpu:
        assert cpu[key].tobytes() == c2[key].tobytes(), key
    _check_sweep_against_signals(sample, grid, cpu, "mtf", 100, n - 1)


def test_generic_brute_force_sweep_equals_the_seed_sweep(sample, registered):
    """The seed rule written as a decision rule: the generic brute force (exact sums) gives
    the seed sweep's results bit for bit (its default is exact too)."""
    n = len(sample)
    axes = {"window": [5, 11], "w_s": [0.3, 0.4], "buy_threshold": [0.45, 0.5, 0.55],
            "conf_threshold": [0.6, 0.65], "spread": [0.0, 0.3]}
    kw = {"score_start": 40, "score_end": n - 1, "half_spread_pips": 0.5, "engine": "cpu"}
    ref = sweep_seed(sample, product_grid(**axes), **kw)
    got = sweep_seed(sample, product_grid("seed_decision", **axes), rule="seed_decision",
                     params=SEED, **kw)
    for key, v in ref.items():
        assert v.tobytes() == got[key].tobytes(), key
    a = seed_signals(sample, engine="cpu")
    b = rule_signals(sample, SEED, rule="seed_decision", engine="cpu")
    assert np.array_equal(a.action, b.action) and np.array_equal(a.hc, b.hc)
    assert np.array_equal(a.confidence, b.confidence, equal_nan=True)


def test_mtf_refuses_what_it_cannot_do(sample):
    with pytest.raises(ValueError, match="supports 'causal'"):
        rule_signals(sample, rule="mtf", alignment="legacy")
    x = {k: np.asarray(sample[k])[:300] for k in ("open", "high", "low", "close", "volume")}
    with pytest.raises(ValueError, match="no times"):
        rule_signals(x, rule="mtf", instrument="EUR_USD", granularity="H1")
    with pytest.raises(SpecError, match=r"granularity.*no granularity"):
        rule_signals({**x, "time": frame_seconds(sample)[:300]}, rule="mtf",
                     instrument="EUR_USD")


# ---- grids ------------------------------------------------------------------------------------

def test_training_grids_add_the_rules_own_fields():
    assert len(small_grid()) == 72 and len(make_grid()) == 10_000
    g = small_grid(rule="thresholded")
    assert len(g) == 144 and g.fields[-1] == "k_pips" and g.rule == "thresholded"
    p = g.params(len(g) - 1)
    assert type(p) is ThresholdedParams and p.k_pips == 2.0 and p.window == 15
    assert g.find(p) == len(g) - 1
    m = small_grid(rule="mtf")
    assert len(m) == 288 and m.fields[-2:] == ("htf1_conf", "htf2_conf")
    assert len(make_grid(rule="thresholded")) == 40_000
    assert len(make_grid(rule="mtf", own={"htf1_conf": [0.5]})) == 20_000
    with pytest.raises(ValueError, match="not rule 'seed''s own"):
        make_grid(own={"k_pips": [1.0]})
    with pytest.raises(ValueError, match="grid field 'k_pips' must be >= 0"):
        make_grid(rule="thresholded", own={"k_pips": [-1.0]})
    with pytest.raises(ValueError, match="takes ThresholdedParams"):
        small_grid(base=SEED, rule="thresholded")


def test_sweep_grids_take_a_rule_key():
    from sep_research.reporting.grid_schema import GridError, load_sweep_grid

    doc = {"kind": "sweep", "instruments": ["EUR_USD"], "rule": "thresholded",
           "grid": {"window": [7, 11], "k_pips": [0, 2]}}
    sg = load_sweep_grid(doc)
    assert sg.rule == "thresholded" and len(sg.config_grid()) == 4
    seed = load_sweep_grid({**doc, "rule": "seed", "grid": {"window": [7, 11]}})
    assert "rule" not in seed.spec("EUR_USD")  # the seed rule's run ids are unchanged
    for bad, msg in (({"rule": "nope"}, "rule: unknown rule 'nope'"),
                     ({"rule": "seed"}, "grid.k_pips: not a grid field of rule 'seed'"),
                     ({"grid": {"k_pips": [-1]}}, "grid.k_pips: must be >= 0")):
        with pytest.raises(GridError, match=msg):
            load_sweep_grid({**doc, **bad})


def test_product_grid_knows_each_rules_fields():
    assert product_grid("mtf", htf1_conf=[0.0, 1.0]).fields == ("htf1_conf",)
    with pytest.raises(ValueError, match="unknown grid fields"):
        product_grid(k_pips=[1.0])
    with pytest.raises(ValueError, match="must hold integers >= 2"):
        sweep_seed({"close": np.ones(10), "high": np.ones(10), "low": np.ones(10),
                    "volume": np.ones(10)}, {"window": [1.5]}, score_start=0, score_end=5,
                   instrument="EUR_USD", half_spread_pips=0.5)


# ---- resampling -------------------------------------------------------------------------------

def test_resample_equals_pandas_on_real_data(sample):
    for htf in ("H4", "D"):
        got = resample_frame(sample, htf)
        ref = sample.resample(htf.replace("D", "1D").replace("H4", "4h"), label="left",
                              closed="left").agg({"open": "first", "high": "max", "low": "min",
                                                  "close": "last", "volume": "sum"}).dropna()
        assert list(got.index) == list(ref.index)
        for col in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(got[col].to_numpy(), ref[col].to_numpy()), (htf, col)
        assert got["complete"].iloc[:-1].all()
        assert got.attrs["provenance"]["granularity"] == htf


def test_resampler_stream_gives_the_closed_candles_at_the_same_candles(sample):
    t = frame_seconds(sample)[:800]
    cols = [np.asarray(sample[k], dtype=np.float64)[:800]
            for k in ("open", "high", "low", "close", "volume")]
    for htf in ("H2", "H4", "D"):
        d, s = htf_step("H1", htf)
        h = resample_arrays(t, *cols, base_seconds=d, step=s)
        jj = closed_index(t, h["end"], base_seconds=d)
        rs = CandleResampler(d, s)
        seen = -1
        for i in range(t.size):
            for c in rs.update(int(t[i]), *(float(a[i]) for a in cols)):
                seen += 1
                assert c[0] == h["start"][seen]
                assert c[1:] == tuple(float(h[k][seen]) for k in ("open", "high", "low",
                                                                   "close", "volume"))
            assert seen == jj[i], (htf, i)


def test_resampling_is_causal_and_refuses_overlaps(sample):
    t = frame_seconds(sample)[:600]
    cols = {k: np.asarray(sample[k], dtype=np.float64)[:600]
            for k in ("open", "high", "low", "close", "volume")}
    h = resample_arrays(t, *cols.values(), base_seconds=3600, step=14400)
    jj = closed_index(t, h["end"], base_seconds=3600)
    cut = 333
    changed = {k: v.copy() for k, v in cols.items()}
    for v in changed.values():
        v[cut + 1:] *= 1.01
    h2 = resample_arrays(t, *changed.values(), base_seconds=3600, step=14400)
    last = jj[cut]  # every HTF candle closed by candle `cut`'s close is unchanged
    for k in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(h[k][:last + 1], h2[k][:last + 1])
    assert not np.array_equal(h["close"][last + 1], h2["close"][last + 1])
    with pytest.raises(ValueError, match="less than the base length"):
        resample_arrays(t[[0, 0]] + np.array([0, 60]), *(v[:2] for v in cols.values()),
                        base_seconds=3600, step=14400)
    with pytest.raises(ValueError, match="htf: H3 is not a higher granularity than H4"):
        htf_step("H4", "H3")
    with pytest.raises(ValueError, match="length must divide a day"):
        htf_step("H1", "W")


def test_seed_params_subclasses_keep_the_seed_checks():
    with pytest.raises(ValueError, match="window must be an integer"):
        ThresholdedParams(window=1)
    with pytest.raises(ValueError, match="k_pips must be a number of pips"):
        ThresholdedParams(k_pips=-1.0)
    assert isinstance(MtfParams(), SeedParams)
