"""What every pydantic schema of the project shares (the runner config, the batch grid
files): a strict base model and a finite-number type. pydantic is a core dependency, so the
live runner imports this too.

- :class:`StrictModel`: unknown keys are errors (``extra="forbid"``), values are not coerced
  across types (``strict``: ``"no"`` is not a bool, ``true`` is not a number), NaN and
  infinity are refused, and a validated object is frozen.
- :data:`Num`: a finite number (an int or a float, never a bool); a numeric YAML string is
  read as the number it is, since YAML 1.1 reads ``1e-3`` (no dot) as a string.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _yaml_number(v: Any) -> Any:
    """A numeric string as its number; anything else unchanged for the strict float check
    (``true`` stays refused)."""
    if isinstance(v, str) and _NUMBER_RE.match(v.strip()):
        return float(v)
    return v


#: a finite number (int or float; a numeric YAML string is read as one; never a bool)
Num = Annotated[float, BeforeValidator(_yaml_number)]


class StrictModel(BaseModel):
    """Base of every configuration schema: see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
