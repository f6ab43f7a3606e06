"""Plain JSON from evaluation results: non-finite floats (NaN, inf) become None."""

from __future__ import annotations

import math


def json_ready(value):
    """``value`` with every non-finite float, also inside nested dicts, replaced by None."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value
