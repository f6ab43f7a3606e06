"""Real planar laser logs (../shared/data/real): a slice of each replayed through the
pipeline with the shipped planar_laser.yaml, exactly as the node sees the messages.

There is no ground truth for these logs, so the oracle is the data itself: the map
consistency figure (``tools.consistency``: for scan points, the distance to the
nearest point of the scans taken at least ``MIN_DT`` seconds apart) must be clearly
better under the estimate than under the raw wheel odometry, the trajectory stays
planar (z, roll, pitch exactly the odometry's), and nothing recompiles."""

import numpy as np
import pytest

from conftest import REPO, SHARED
from dsg_jit_ros.config import load_pipeline_config
from dsg_jit_ros.mapping.export import poses_at
from dsg_jit_ros.mapping.pipeline import SlamPipeline
from dsg_jit_ros.tools.consistency import map_consistency
from dsg_jit_ros.tools.log_reader import read_laser_log

REAL = SHARED / "data" / "real"
MIN_DT = 10.0  # s: revisits within the slice


@pytest.mark.parametrize("bag, scans", [("mit-csail", 400), ("fr079", 500)])
def test_real_log_slice_is_mapped_more_consistently_than_odometry(bag, scans):
    if not (REAL / bag).exists():
        pytest.skip(f"{REAL / bag} is not there")
    log = read_laser_log(REAL / bag, max_scans=scans)
    assert len(log.clouds) == scans
    pipe = SlamPipeline(load_pipeline_config(REPO / "config" / "planar_laser.yaml"))
    pipe.warm_up()
    log.replay(pipe)
    assert pipe.compilations_after_warmup() == 0
    assert set(pipe.dropped_snapshot()) <= {"odom_jump", "points_out_of_range"}, pipe.dropped_snapshot()
    assert pipe.planar and pipe.keyframes > 100
    odom = log.odometry_at_clouds()
    est = poses_at(pipe, log.cloud_stamps, odom)
    assert np.all(np.isfinite(est))
    # planar data stays planar: z, roll and pitch are the (planar) odometry's
    np.testing.assert_allclose(est[:, 2, 3], odom[:, 2, 3], atol=1e-9)
    np.testing.assert_allclose(est[:, 2, :3], odom[:, 2, :3], atol=1e-9)
    c_odo = map_consistency(log.clouds, log.cloud_stamps, odom, min_dt=MIN_DT).revisit
    c_est = map_consistency(log.clouds, log.cloud_stamps, est, min_dt=MIN_DT).revisit
    print(bag, "odometry", c_odo.median_m, c_odo.frac_within_5cm, "estimate", c_est.median_m, c_est.frac_within_5cm)
    assert c_est.median_m < 0.7 * c_odo.median_m, (c_est, c_odo)
    assert c_est.frac_within_5cm > c_odo.frac_within_5cm + 0.05, (c_est, c_odo)
