"""Numbers from whitespace-separated text lines (TUM trajectories, relations files), with
errors that name the file and the line."""

from __future__ import annotations

import math


def finite_floats(tokens: list[str], path, lineno: int) -> list[float]:
    """``tokens`` as floats; ``ValueError`` naming ``path`` and ``lineno`` when one is not
    a number or not finite."""
    try:
        values = [float(tok) for tok in tokens]
    except ValueError as exc:
        raise ValueError(f"{path} line {lineno}: non-numeric value ({exc})") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{path} line {lineno}: non-finite value")
    return values
