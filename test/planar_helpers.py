"""Small planar fixtures shared by the tests: poses, wall points, a planar-laser replay."""

import numpy as np


def planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 ``T`` at (x, y) m with heading ``yaw`` rad (z = 0)."""
    t = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    t[:2, :2] = [[c, -s], [s, c]]
    t[:2, 3] = x, y
    return t


def wall_points(segments, step: float = 0.1) -> np.ndarray:
    """(N, 2) points every ``step`` m along each segment ((x0, y0), (x1, y1)), ends included."""
    pts = []
    for a, b in segments:
        a, b = np.asarray(a, float), np.asarray(b, float)
        n = int(np.linalg.norm(b - a) / step) + 1
        pts.append(a + (b - a) * np.linspace(0.0, 1.0, n)[:, None])
    return np.concatenate(pts)


def replay_planar(stamps, odometry, scans, overrides: list[str]):
    """A ``SlamPipeline`` with config/planar_laser.yaml and ``overrides`` fed every
    (stamp, T_odom_base, scan) in turn, finished and closed (its results stay readable)."""
    from conftest import REPO
    from dsg_jit_ros.config import load_pipeline_config
    from dsg_jit_ros.mapping.pipeline import SlamPipeline

    pipe = SlamPipeline(load_pipeline_config(REPO / "config" / "planar_laser.yaml", overrides=overrides))
    pipe.warm_up()
    for t, o, c in zip(stamps, odometry, scans):
        pipe.add_odometry(t, o)
        pipe.add_cloud(t, c)
    pipe.finish()
    pipe.close()
    return pipe
