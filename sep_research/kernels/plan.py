"""How the engine sweeps a grid: groups, the method of each, and the threshold tables.

:func:`plan_sweep` (numpy, host side) splits the rows of a sweep grid ``g`` (layout of
:func:`sep_research.kernels.qfh.sweep_partial`) into three sets:

- ``brute``: rows for the float brute force (:func:`qfh.sweep_partial`; the reference);
- ``exact``: rows for the brute force with exact fixed-point sums
  (:func:`sep_research.kernels.fixed.sweep_partial_exact`);
- ``batches``: groups for the threshold-space sweep (:mod:`sep_research.kernels.thresholds`),
  as the int64/float64 tables its drivers read, in workspace-sized batches.

``method``:

- ``"brute"``: every row to the float brute force (the sums of earlier versions, bit for bit);
- ``"threshold"``: every row to the threshold-space sweep; a grid it cannot take (see below)
  is an error;
- ``"auto"``: per group (rows with the same window index and weights), the threshold sweep
  when its estimated cost (:func:`threshold_cost`: candles x extra spreads + histogram cells
  + rows) is below the exact brute force's (rows x candles) and its histograms fit
  (:data:`MAX_GROUP_CELLS`), else the exact brute force. A grid of unrelated rows (random
  thresholds, no product structure) has about rows**5 cells per group and goes to the brute
  force. Rows whose sums could leave the exact fixed-point range
  (:func:`sep_research.kernels.fixed.exact_range_ok`) go to the float brute force.

**Determinism.** The threshold sweep and the exact brute force give the same integers for a
row, hence the same bits (counts and sums), whatever the method, the engine (CPU, GPU, plain
Python), the order of the rows, or the other rows in the call. So the choice ``"auto"``
makes -- which depends on the group's composition -- never shows in the results, and a grid
cut anywhere (``sep_research.sweeps`` blocks, a group split between workers) merges
bit-identically. Only a row that leaves the exact range goes to the float brute force; that
decision depends on the row's own extra spread and the candles, never on other rows.

The threshold sweep needs ``vm >= 0`` (or NaN) on every scored candle, so that
``threshold * vm`` grows with the threshold; otherwise ``"auto"`` uses the exact brute force.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sep_research.kernels import fixed, qfh, thresholds

METHODS = ("auto", "brute", "threshold")

#: largest histogram workspace of one group (int64 cells); larger groups: brute force
MAX_GROUP_CELLS = 1 << 24
#: largest workspace of one batch of groups (int64 cells: 512 MiB)
MAX_BATCH_CELLS = 1 << 26

# cost model: nanoseconds of one CPU thread (CPU time, numba, the 2-core development machine,
# training grid on the packaged sample: 2.8 ns per configuration-candle for the exact brute
# force; for the threshold sweep about 43 ns per candle with one extra spread, 84 with four,
# and 4-5 ns per histogram cell). Only the ratio matters, and only for speed: both methods
# give the same bits.
COST_EXACT_CONFIG_CANDLE = 2.8
COST_CANDLE = 30.0
COST_CANDLE_SPREAD = 13.0
COST_CELL = 4.5
COST_ROW = 20.0
COST_GROUP = 500.0

#: threshold fields in tv order, with their grid columns
_FIELDS = ((thresholds.TG_B_OFF, qfh.G_BUY), (thresholds.TG_S_OFF, qfh.G_SELL),
           (thresholds.TG_C_OFF, qfh.G_CONF), (thresholds.TG_H_OFF, qfh.G_COH),
           (thresholds.TG_M_OFF, qfh.G_MIN_MOVE), (thresholds.TG_E_OFF, qfh.G_SPREAD))
#: cumulative-sum passes (array, axis, suffix): see thresholds' module docstring
PASSES = np.array(
    [(thresholds.A_HB, ax, 1) for ax in range(4)]
    + [(thresholds.A_HS, 0, 0)] + [(thresholds.A_HS, ax, 1) for ax in range(1, 5)]
    + [(thresholds.A_WB, ax, 1) for ax in range(1, 4)]
    + [(thresholds.A_WS, 1, 0)] + [(thresholds.A_WS, ax, 1) for ax in range(2, 5)],
    dtype=np.int64)


@dataclass
class ThresholdBatch:
    """Tables of one batch of threshold groups (layouts in thresholds' module docstring)."""

    tg: np.ndarray
    tw: np.ndarray
    tv: np.ndarray
    td: np.ndarray
    rows: np.ndarray
    cells: int
    tp: np.ndarray = field(default_factory=lambda: PASSES)


@dataclass
class SweepPlan:
    """What :func:`plan_sweep` returns: row indices of ``g`` per method, threshold batches."""

    brute: np.ndarray
    exact: np.ndarray
    batches: list[ThresholdBatch]
    n_groups: int = 0

    @property
    def n_threshold_rows(self) -> int:
        return int(sum(b.rows.shape[1] for b in self.batches))


def group_cells(nb, ns, nc, nh, nm, ne):
    """Workspace cells of a group with these numbers of distinct thresholds (arrays or ints;
    float64 to stay clear of overflow)."""
    nb, ns, nc, nh, nm, ne = (np.asarray(v, dtype=np.float64) for v in (nb, ns, nc, nh, nm, ne))
    hb = (nb + 1) * (nc + 1) * (nh + 1) * (nm + 1)
    hs = (nb + 1) * (ns + 1) * (nc + 1) * (nh + 1) * (nm + 1)
    wb = ne * (nb + 1) * (nc + 1) * (nh + 1) * 4
    ws = ne * (nb + 1) * (ns + 1) * (nc + 1) * (nh + 1) * 4
    return hb + hs + wb + ws


def threshold_cost(n_candles, rows, cells, n_spreads):
    """Estimated cost of the threshold sweep of one group (model units, see COST_*)."""
    return (n_candles * (COST_CANDLE + COST_CANDLE_SPREAD * n_spreads) + COST_CELL * cells
            + COST_ROW * rows + COST_GROUP)


def exact_cost(n_candles, rows):
    """Estimated cost of the exact brute force of ``rows`` rows."""
    return COST_EXACT_CONFIG_CANDLE * n_candles * rows


def _groups(g: np.ndarray) -> tuple[np.ndarray, int]:
    """Group id of every row (same window index and weights), numbered in sorted order.

    Rows already ordered by the key (as ``sweep_seed`` orders them) are grouped by runs
    without a sort.
    """
    k = g.shape[0]
    cols = (qfh.G_WINDOW_INDEX, qfh.G_WS, qfh.G_WC, qfh.G_WE)
    if k > 1:
        eq = np.ones(k - 1, dtype=bool)
        lt = np.zeros(k - 1, dtype=bool)
        for c in cols:
            a, b = g[:-1, c], g[1:, c]
            lt |= eq & (a < b)
            eq &= a == b
        if np.all(lt | eq):  # ordered by the key (a NaN is neither: not ordered)
            new = np.ones(k, dtype=bool)
            new[1:] = ~eq
            return np.cumsum(new) - 1, int(new.sum())
    key = g[:, cols]
    order = np.lexsort(tuple(key[:, j] for j in reversed(range(len(cols)))))
    ks = key[order]
    new = np.ones(k, dtype=bool)
    if k > 1:
        new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    gid = np.empty(k, dtype=np.int64)
    gid[order] = np.cumsum(new) - 1
    return gid, int(new.sum())


#: distinct-value tables (groups x distinct values of a field) up to this size are built
#: densely (no sort of the rows); larger ones by a sort
_DENSE_MAX = 1 << 24


def _ranks(values: np.ndarray, gid: np.ndarray, ng: int):
    """Per group, the sorted distinct values (concatenated in group order), their count and
    offset per group, and each row's index among its group's values."""
    k = values.shape[0]
    u = np.unique(values)
    if ng * u.size <= _DENSE_MAX:
        code = gid * u.size + np.searchsorted(u, values)
        present = (np.bincount(code, minlength=ng * u.size) > 0).reshape(ng, u.size)
        count = present.sum(axis=1).astype(np.int64)
        first = np.zeros(ng, dtype=np.int64)
        first[1:] = np.cumsum(count)[:-1]
        rank = (np.cumsum(present, axis=1, dtype=np.int64) - 1).reshape(-1)[code]
        return u[np.nonzero(present)[1]], count, first, rank
    order = np.lexsort((values, gid))
    v = values[order]
    gs = gid[order]
    new = np.ones(k, dtype=bool)
    if k > 1:
        new[1:] = (gs[1:] != gs[:-1]) | (v[1:] != v[:-1])
    uid = np.cumsum(new) - 1
    count = np.bincount(gs[new], minlength=ng).astype(np.int64)
    first = np.zeros(ng, dtype=np.int64)
    first[1:] = np.cumsum(count)[:-1]
    rank = np.empty(k, dtype=np.int64)
    rank[order] = uid - first[gs]
    return v[new], count, first, rank


def candle_limits(cv: np.ndarray, lo: int, hi: int) -> tuple[float, bool]:
    """(largest |move| + |spread| over the labelled candles of lo .. hi-1, inf when one is
    not finite; whether vm >= 0 or NaN on all of them)."""
    if hi <= lo:
        return 0.0, True
    mv = cv[2, lo:hi]
    lab = ~np.isnan(mv)
    if not lab.any():
        return 0.0, True
    x = np.abs(mv[lab]) + np.abs(cv[3, lo:hi][lab])
    xmax = float(x.max()) if np.all(np.isfinite(x)) else float("inf")
    vm_ok = not bool(np.any(cv[1, lo:hi][lab] < 0))
    return xmax, vm_ok


@dataclass
class _Structure:
    """What depends on the grid alone: groups, distinct values, cells; threshold tables by
    the set of groups they hold."""

    gid: np.ndarray
    ng: int
    uniq: list
    cells: np.ndarray
    rows_per: np.ndarray
    tables: dict = field(default_factory=dict)


#: recently planned grids (a copy of each, and its structure): the walk-forward sweeps one
#: grid hundreds of times over short ranges, and planning costs more than such a sweep
_RECENT: list = []
_RECENT_MAX = 4
_RECENT_MAX_ROWS = 200_000


def _structure(sub: np.ndarray) -> _Structure:
    for gc, st in _RECENT:
        if gc.shape == sub.shape and np.array_equal(gc, sub):
            return st
    gid, ng = _groups(sub)
    uniq = [_ranks(np.ascontiguousarray(sub[:, col]), gid, ng) for _, col in _FIELDS]
    st = _Structure(gid, ng, uniq, group_cells(*[u[1] for u in uniq]),
                    np.bincount(gid, minlength=ng))
    if sub.shape[0] <= _RECENT_MAX_ROWS:
        _RECENT.insert(0, (sub.copy(), st))
        del _RECENT[_RECENT_MAX:]
    return st


def plan_sweep(g: np.ndarray, cv: np.ndarray, lo: int, hi: int, method: str = "auto",
               *, max_batch_cells: int = MAX_BATCH_CELLS) -> SweepPlan:
    """Split the rows of ``g`` by method (see the module docstring) for candles lo .. hi-1."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown: expected one of {', '.join(METHODS)}")
    k = g.shape[0]
    every = np.arange(k, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    if method == "brute" or k == 0:
        return SweepPlan(every if method == "brute" else none, none, [])
    n = max(0, hi - lo)
    xmax, vm_ok = candle_limits(cv, lo, hi)
    finite = np.all(np.isfinite(g), axis=1)
    tmax = xmax + np.abs(np.where(finite, g[:, qfh.G_SPREAD], 0.0))
    in_range = finite & _range_ok(n, tmax)
    if method == "threshold":
        why = None
        if not in_range.all():
            why = ("some rows are not finite or their sums could leave the exact fixed-point "
                   "range (see sep_research.kernels.fixed)")
        elif not vm_ok:
            why = "vm < 0 on a scored candle: thresholds * vm would not be ordered"
        if why:
            raise ValueError(f"method='threshold' cannot sweep this grid: {why}")
    brute = every[~in_range]
    ok = every[in_range]
    if ok.size == 0:
        return SweepPlan(brute, none, [])
    sub = g if ok.size == k else g[ok]
    st = _structure(sub)
    counts = [u[1] for u in st.uniq]
    if method == "threshold":
        if (st.cells > MAX_GROUP_CELLS).any():
            raise ValueError(
                f"method='threshold' cannot sweep this grid: a group needs "
                f"{st.cells.max():.3g} histogram cells (at most {MAX_GROUP_CELLS}); its rows "
                "are not a product of a few threshold values (use method='auto')")
        use = np.ones(st.ng, dtype=bool)
    else:
        use = (vm_ok & (st.cells <= MAX_GROUP_CELLS)
               & (threshold_cost(n, st.rows_per, st.cells, counts[5])
                  < exact_cost(n, st.rows_per)))
    in_exact = ~use[st.gid]
    # exact rows in group order, so that the brute force's blocks share their scores
    exact_rows = ok[in_exact][np.argsort(st.gid[in_exact], kind="stable")]
    key = (use.tobytes(), int(max_batch_cells), ok.size == k)
    batches = st.tables.get(key)
    if batches is None:
        batches = _batches(sub, ok, st.gid, st.ng, use, st.uniq, st.cells, max_batch_cells)
        if ok.size == k:
            st.tables[key] = batches
    return SweepPlan(brute, exact_rows, batches, int(use.sum()))


def _range_ok(n: int, tmax: np.ndarray) -> np.ndarray:
    """fixed.exact_range_ok for every row's largest term."""
    if n >= 2**30:
        return np.zeros(tmax.shape, dtype=bool)
    m = float(max(1, n))
    lim = 2.0**52
    with np.errstate(over="ignore", invalid="ignore"):
        a = m * (tmax * 2.0**(fixed.Q_SUM - 32) + 1.0) < lim
        b = m * (tmax * tmax * 2.0**(fixed.Q_SQ - 32) + 1.0) < lim
    return np.isfinite(tmax) & a & b


def _batches(sub, ok, gid, ng, use, uniq, cells, max_batch_cells) -> list[ThresholdBatch]:
    groups = np.flatnonzero(use)
    if groups.size == 0:
        return []
    out = []
    start = 0
    while start < groups.size:
        total = 0
        stop = start
        while stop < groups.size and (stop == start or total + cells[groups[stop]]
                                      <= max_batch_cells):
            total += cells[groups[stop]]
            stop += 1
        out.append(_tables(sub, ok, gid, groups[start:stop], uniq))
        start = stop
    return out


def _tables(sub, ok, gid, groups, uniq) -> ThresholdBatch:
    """The thresholds tables of the given groups (ids into gid)."""
    t = thresholds
    nq = groups.size
    local = np.full(int(gid.max()) + 1, -1, dtype=np.int64)
    local[groups] = np.arange(nq)
    tg = np.zeros((nq, t.N_TG), dtype=np.int64)
    parts = []
    base = 0
    for (col_off, _), (vals, count, first, _rank) in zip(_FIELDS, uniq, strict=True):
        c = count[groups]
        f = first[groups]
        # this batch's values of the field, group after group
        off = np.zeros(nq, dtype=np.int64)
        off[1:] = np.cumsum(c)[:-1]
        parts.append(vals[np.repeat(f - off, c) + np.arange(int(c.sum()))])
        tg[:, col_off] = base + off
        tg[:, col_off + 1] = c
        base += int(c.sum())
    tv = np.ascontiguousarray(np.concatenate(parts), dtype=np.float64)
    _, first_row = np.unique(gid, return_index=True)  # first row of each group
    r0 = first_row[groups]
    tg[:, t.TG_WINDOW] = sub[r0, qfh.G_WINDOW_INDEX].astype(np.int64)
    tw = np.ascontiguousarray(sub[r0][:, [qfh.G_WS, qfh.G_WC, qfh.G_WE]], dtype=np.float64)
    nb, ns, nc, nh, nm, ne = (tg[:, o + 1] for o, _ in _FIELDS)
    dims = np.ones((nq, t.N_ARRAYS, t.N_DIMS), dtype=np.int64)
    dims[:, t.A_HB, :4] = np.stack([nb + 1, nc + 1, nh + 1, nm + 1], axis=1)
    dims[:, t.A_HS, :5] = np.stack([nb + 1, ns + 1, nc + 1, nh + 1, nm + 1], axis=1)
    dims[:, t.A_WB, :5] = np.stack([ne, nb + 1, nc + 1, nh + 1, np.full(nq, 4)], axis=1)
    dims[:, t.A_WS, :6] = np.stack([ne, nb + 1, ns + 1, nc + 1, nh + 1, np.full(nq, 4)], axis=1)
    size = dims.prod(axis=2).reshape(-1)
    offs = np.zeros(size.size, dtype=np.int64)
    offs[1:] = np.cumsum(size)[:-1]
    td = np.zeros((nq, t.N_ARRAYS, 1 + t.N_DIMS), dtype=np.int64)
    td[:, :, 0] = offs.reshape(nq, t.N_ARRAYS)
    td[:, :, 1:] = dims
    sel = slice(None) if nq == int(gid.max()) + 1 else np.flatnonzero(local[gid] >= 0)
    lg = local[gid][sel]
    rows = np.empty((t.N_R, lg.size), dtype=np.int64)
    rows[t.R_K] = ok[sel]
    rows[t.R_GROUP] = lg
    for j, (_, _, _, rank) in enumerate(uniq):
        rows[t.R_B + j] = rank[sel]
    return ThresholdBatch(tg, tw, tv, np.ascontiguousarray(td), np.ascontiguousarray(rows),
                          int(size.sum()))
