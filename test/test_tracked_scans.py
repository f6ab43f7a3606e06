"""The compact table of clouds registered between keyframes (mapping.tracked_scans)."""

import numpy as np
import pytest

from dsg_jit_ros.mapping.tracked_scans import TrackedScans


def _row(i: int):
    inc = np.eye(4)
    inc[:3, 3] = [0.1 * i, -0.2 * i, 0.0]
    return 0.1 * i + 1.0, float(i // 3), inc


def test_rows_survive_growth_in_order():
    table = TrackedScans(capacity=2)
    rows = [_row(i) for i in range(11)]
    for row in rows:
        table.append(*row)
    assert len(table) == 11
    np.testing.assert_array_equal(table.stamps, [r[0] for r in rows])
    np.testing.assert_array_equal(table.keyframe_stamps, [r[1] for r in rows])
    np.testing.assert_array_equal(table.increments, np.array([r[2] for r in rows]))
    assert table.nbytes == 16 * 144  # capacity 16 after growth, 144 bytes a row


def test_a_stamp_not_after_the_last_is_refused():
    table = TrackedScans()
    table.append(*_row(1))
    with pytest.raises(ValueError, match="not after the last"):
        table.append(*_row(1))
    assert len(table) == 1
