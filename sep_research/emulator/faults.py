"""Fault injection: the ``--faults`` SPEC.

A SPEC is a comma-separated list of items ``KIND[:RATE][@SECONDS][xCOUNT]`` and optionally
``seed=N``:

=============  ==========================================================================
``429``        answer ``429 Too Many Requests`` (JSON ``errorMessage``, ``Retry-After: 1``)
``503``        answer ``503 Service Unavailable`` with a plain-text (non-JSON) body
``slow``       wait ``SECONDS`` (default 2) before answering
``stall``      a stream stops sending (no prices, no heartbeats) ``SECONDS`` (default 1)
               after it opened, and holds the connection open
``cut``        a stream is cut mid-chunk ``SECONDS`` (default 1) after it opened: a chunk
               header promises more bytes than are sent, then the socket closes
``drop-order`` an order request (create, replace, trade or position close) is carried out
               and its answer is never sent: the connection is held until the client gives
               up (or ``SECONDS``, default 30, pass) and then closed
=============  ==========================================================================

``RATE`` (default 1.0) is the chance that the fault hits each eligible request; ``xCOUNT``
stops the item after it has hit COUNT times (``429x2``: the next two requests get 429).
``429``, ``503`` and ``slow`` apply to REST requests and to the opening of streams; ``stall``
and ``cut`` to streams; ``drop-order`` to order requests. Draws come from one random generator
seeded with ``seed`` (default 0), so a given sequence of requests meets the same faults.

Example: ``429:0.1,503:0.05,slow:0.1@2.0,stall:0.5@3,cut:0.2,drop-order:1.0x1,seed=7``.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass

KINDS = ("429", "503", "slow", "stall", "cut", "drop-order")
DEFAULT_SECONDS = {"429": 0.0, "503": 0.0, "slow": 2.0, "stall": 1.0, "cut": 1.0,
                   "drop-order": 30.0}
_ITEM = re.compile(
    r"^(?P<kind>429|503|slow|stall|cut|drop-order)"
    r"(?::(?P<rate>\d*\.?\d+))?(?:@(?P<sec>\d*\.?\d+))?(?:x(?P<count>\d+))?$"
)


@dataclass
class FaultRule:
    kind: str
    rate: float = 1.0
    seconds: float = 0.0
    count: int | None = None


class FaultSpec:
    """Parsed fault rules and the seeded generator that decides when they hit."""

    def __init__(self, rules: list[FaultRule] | None = None, seed: int = 0, text: str = ""):
        self.rules = {r.kind: r for r in (rules or [])}
        self.seed = seed
        self.text = text
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault draws, not secrets
        self._lock = threading.Lock()
        self.hits: dict[str, int] = dict.fromkeys(KINDS, 0)

    @classmethod
    def parse(cls, spec: str | None) -> FaultSpec:
        if spec is not None and not isinstance(spec, str):
            raise ValueError(f"fault spec: must be a string, got {type(spec).__name__}")
        if spec is None or not spec.strip() or spec.strip() == "none":
            return cls()
        rules: list[FaultRule] = []
        seed = 0
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            if item.startswith("seed="):
                try:
                    seed = int(item[5:])
                except ValueError:
                    raise ValueError(f"fault spec: bad seed in {item!r}") from None
                continue
            m = _ITEM.match(item)
            if not m:
                raise ValueError(
                    f"fault spec: cannot read {item!r}; expected KIND[:RATE][@SECONDS][xCOUNT] "
                    f"with KIND one of {', '.join(KINDS)} (e.g. '429:0.1,slow:0.2@1.5')"
                )
            rate = float(m["rate"]) if m["rate"] else 1.0
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault spec: rate in {item!r} must be between 0 and 1")
            if any(r.kind == m["kind"] for r in rules):
                raise ValueError(f"fault spec: {m['kind']!r} given twice")
            rules.append(FaultRule(
                kind=m["kind"], rate=rate,
                seconds=float(m["sec"]) if m["sec"] else DEFAULT_SECONDS[m["kind"]],
                count=int(m["count"]) if m["count"] else None,
            ))
        return cls(rules, seed, spec.strip())

    def __bool__(self) -> bool:
        return bool(self.rules)

    def draw(self, kind: str) -> FaultRule | None:
        """Whether fault ``kind`` hits this request (consumes one draw when the kind is on)."""
        rule = self.rules.get(kind)
        if rule is None:
            return None
        with self._lock:
            if rule.count is not None and rule.count <= 0:
                return None
            if self._rng.random() >= rule.rate:
                return None
            if rule.count is not None:
                rule.count -= 1
            self.hits[kind] += 1
            return rule
