"""Trajectory accuracy: ATE after alignment and RPE, on top of ``evo``.

Both trajectories are ``T_world_body`` poses with timestamps (TUM files or
arrays).  Poses are associated by nearest timestamp (``evo.core.sync``, at most
``max_dt`` seconds apart); the estimate is then aligned to the reference with
Umeyama's method on positions (``se3``: rotation + translation, ``sim3``: plus
scale, ``none``: as is).

- ATE: RMSE [m] of the position differences after alignment.
- RPE: the translation error of a pair ``(i, j)`` is the norm of the translation
  of ``(Q_i^-1 Q_j)^-1 (P_i^-1 P_j)`` [m] (``Q`` reference, ``P`` estimate).
  ``rpe_rmse`` [m] is its RMSE over consecutive associated poses (typically
  keyframes); ``rpe_per_m`` [m/m] is the drift per metre: for each ``i``, ``j`` is
  the first pose at least ``rpe_delta_m`` further along the reference path, and
  the sum of the errors is divided by the sum of the reference path lengths of
  those pairs (so it does not depend on the sampling rate).  RPE is computed on
  the aligned estimate, so a ``sim3`` scale correction counts and a rigid
  alignment does not change it.

Console entry point ``dsg_jit_ros_eval REF.tum EST.tum [--align se3|sim3|none] [--json]``;
``dsg_jit_ros_eval --relations FILE EST.tum [--stamps CSV] [--planar]`` scores EST with the
relations metric instead (``dsg_jit_ros.tools.relations``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Evaluation", "TrajectoryError", "ate_rmse", "drift_per_metre", "evaluate", "main", "plot_xy"]

ALIGN_MODES = ("se3", "sim3", "none")

TrajectoryLike = str | os.PathLike[str] | tuple[np.ndarray, np.ndarray]


class TrajectoryError(ValueError):
    """Trajectories that cannot be evaluated (unreadable, empty, nothing associated)."""


@dataclass(frozen=True)
class Evaluation:
    """Accuracy of an estimate against a reference.

    Attributes:
        align: alignment mode used (``se3``, ``sim3`` or ``none``).
        n_matched: number of associated pose pairs.
        ate_rmse, ate_mean, ate_max: absolute position error after alignment [m].
        rpe_rmse: RMSE of the consecutive-pair translation error [m] (NaN below 2 poses).
        rpe_per_m: translation drift per metre over ``rpe_delta_m`` segments [m/m]
            (NaN when the reference path is shorter than ``rpe_delta_m``).
        rpe_delta_m: segment length used for ``rpe_per_m`` [m].
        scale: scale of the alignment (1 unless ``sim3``).
        T_ref_est: 4x4 alignment applied to the estimate (``sim3``: rotation block
            times ``scale``); maps estimate coordinates into the reference frame.
    """

    align: str
    n_matched: int
    ate_rmse: float
    ate_mean: float
    ate_max: float
    rpe_rmse: float
    rpe_per_m: float
    rpe_delta_m: float
    scale: float
    T_ref_est: tuple[tuple[float, ...], ...]


def _load(traj: TrajectoryLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(stamps (n,) [s], poses (n, 4, 4)) from a TUM path or a (stamps, poses) pair."""
    if isinstance(traj, (str, os.PathLike)):
        from dsg_jit_ros.io.tum import read_tum

        try:
            stamps, poses = read_tum(traj)
        except OSError as exc:
            raise TrajectoryError(f"{what}: cannot read {os.fspath(traj)!r}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise TrajectoryError(f"{what}: {exc}") from None
    else:
        stamps, poses = (np.asarray(a, dtype=float) for a in traj)
    if stamps.ndim != 1 or poses.shape != (len(stamps), 4, 4):
        raise TrajectoryError(f"{what}: need stamps (n,) and poses (n, 4, 4), got {stamps.shape} and {poses.shape}")
    if len(stamps) == 0:
        raise TrajectoryError(f"{what}: empty trajectory")
    order = np.argsort(stamps, kind="stable")
    return stamps[order], poses[order]


def _pair_translation_errors(ref: np.ndarray, est: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Norms [m] of the translations of ``(Q_i^-1 Q_j)^-1 (P_i^-1 P_j)`` for (n, 4, 4) ``Q = ref``, ``P = est``."""
    rel_ref = np.linalg.inv(ref[i]) @ ref[j]
    rel_est = np.linalg.inv(est[i]) @ est[j]
    return np.linalg.norm((np.linalg.inv(rel_ref) @ rel_est)[:, :3, 3], axis=1)


def drift_per_metre(ref: np.ndarray, est: np.ndarray, delta_m: float) -> float:
    """Translation drift [m/m] of ``est`` against ``ref`` (associated (n, 4, 4) poses) over
    segments of at least ``delta_m`` metres of reference path (see the module docstring)."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ref[:, :3, 3], axis=0), axis=1))])
    i = np.arange(len(s))
    j = np.searchsorted(s, s + delta_m, side="left")
    ok = j < len(s)
    if not np.any(ok) or delta_m <= 0:
        return float("nan")
    i, j = i[ok], j[ok]
    return float(np.sum(_pair_translation_errors(ref, est, i, j)) / np.sum(s[j] - s[i]))


def evaluate(ref: TrajectoryLike, est: TrajectoryLike, align: str = "se3", max_dt: float = 0.01,
             rpe_delta_m: float = 1.0) -> Evaluation:
    """ATE and RPE of ``est`` against ``ref`` (see the module docstring).

    Args:
        ref, est: TUM file paths or ``(stamps [s], T_world_body poses [m])`` pairs.
        align: ``se3``, ``sim3`` or ``none``.
        max_dt: largest timestamp difference [s] for two poses to be associated.
        rpe_delta_m: segment length [m] of the drift per metre.

    Raises:
        TrajectoryError: unreadable input, or fewer than 3 associated poses with
            an alignment (Umeyama needs them), or none at all.
        ValueError: unknown ``align``.
    """
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    from evo.core import metrics, sync
    from evo.core.trajectory import PoseTrajectory3D

    ref_t, ref_p = _load(ref, "reference")
    est_t, est_p = _load(est, "estimate")
    traj_ref = PoseTrajectory3D(timestamps=ref_t, poses_se3=list(ref_p))
    traj_est = PoseTrajectory3D(timestamps=est_t, poses_se3=list(est_p))
    try:
        traj_ref, traj_est = sync.associate_trajectories(traj_ref, traj_est, max_diff=max_dt)
    except sync.SyncException as exc:
        raise TrajectoryError(f"no poses associated within {max_dt} s: {exc}") from None
    n = traj_est.num_poses
    if align != "none" and n < 3:
        raise TrajectoryError(f"{n} associated poses: alignment needs at least 3")

    T = np.eye(4)
    scale = 1.0
    if align != "none":
        rot, trans, scale = traj_est.align(traj_ref, correct_scale=(align == "sim3"))
        T[:3, :3], T[:3, 3] = scale * rot, trans

    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((traj_ref, traj_est))
    errors = np.asarray(ape.error)

    rpe_rmse = rpe_per_m = float("nan")
    if n >= 2:
        rpe = metrics.RPE(metrics.PoseRelation.translation_part, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((traj_ref, traj_est))
        rpe_rmse = float(np.sqrt(np.mean(np.asarray(rpe.error) ** 2)))
        rpe_per_m = drift_per_metre(np.asarray(traj_ref.poses_se3), np.asarray(traj_est.poses_se3), rpe_delta_m)

    return Evaluation(
        align=align, n_matched=int(n),
        ate_rmse=float(np.sqrt(np.mean(errors**2))), ate_mean=float(np.mean(errors)), ate_max=float(np.max(errors)),
        rpe_rmse=rpe_rmse, rpe_per_m=rpe_per_m, rpe_delta_m=float(rpe_delta_m), scale=float(scale),
        T_ref_est=tuple(tuple(float(v) for v in row) for row in T),
    )


def ate_rmse(ref: TrajectoryLike, est: TrajectoryLike, align: str = "se3", max_dt: float = 0.01) -> float:
    """ATE RMSE [m] of ``est`` against ``ref`` after ``align`` (see ``evaluate``)."""
    return evaluate(ref, est, align=align, max_dt=max_dt).ate_rmse


def plot_xy(path: str | os.PathLike[str], ref: TrajectoryLike, est: TrajectoryLike, result: Evaluation,
            labels: tuple[str, str] = ("reference", "estimate")) -> None:
    """Top view (x-y, metres) PNG of the reference and the aligned estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, ref_p = _load(ref, "reference")
    _, est_p = _load(est, "estimate")
    T = np.asarray(result.T_ref_est)
    est_xyz = est_p[:, :3, 3] @ T[:3, :3].T + T[:3, 3]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    ax.plot(ref_p[:, 0, 3], ref_p[:, 1, 3], "k-", lw=1.5, label=labels[0])
    ax.plot(est_xyz[:, 0], est_xyz[:, 1], "-", color="tab:red", lw=1.0, label=f"{labels[1]} ({result.align})")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"ATE {result.ate_rmse:.3f} m, drift {100 * result.rpe_per_m:.2f} % per {result.rpe_delta_m:g} m")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``dsg_jit_ros_eval``: print ATE/RPE of EST against REF, or with ``--relations`` the
    relations metric of EST (``relations.cli``); 0 on success, 2 on bad input."""
    from dsg_jit_ros.tools import relations

    parser = argparse.ArgumentParser(
        prog="dsg_jit_ros_eval", usage="%(prog)s [options] REF.tum EST.tum | %(prog)s --relations FILE [options] EST.tum",
        description="ATE (after alignment) and RPE of a TUM trajectory against a reference, or its relations "
                    "metric (Kümmerle et al. 2009) against a relations file.")
    parser.add_argument("paths", nargs="+", metavar="REF.tum EST.tum",
                        help="reference and estimated trajectories (TUM: t tx ty tz qx qy qz qw); "
                             "only EST.tum with --relations")
    parser.add_argument("--align", choices=ALIGN_MODES, default="se3", help="alignment of the estimate (default: se3)")
    parser.add_argument("--max-dt", type=float, default=0.01, help="timestamp association tolerance [s] (default: 0.01)")
    parser.add_argument("--rpe-delta", type=float, default=1.0, metavar="M",
                        help="segment length in metres of the drift per metre (default: 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--plot", metavar="PNG", help="also write a top-view plot of both trajectories")
    relations.add_cli_arguments(parser)
    args = parser.parse_args(argv)
    if args.relations:
        if len(args.paths) != 1:
            parser.error(f"with --relations give only EST.tum, got {len(args.paths)} paths")
        ate_only = [f"--{n.replace('_', '-')}" for n in ("align", "max_dt", "rpe_delta", "plot")
                    if getattr(args, n) != parser.get_default(n)]
        if ate_only:
            parser.error(f"{', '.join(ate_only)} only apply to REF.tum EST.tum (ATE/RPE), not with --relations")
        return relations.cli(args, args.paths[0])
    if len(args.paths) != 2:
        parser.error(f"give REF.tum and EST.tum (or --relations FILE EST.tum), got {len(args.paths)} paths")
    given = [name for name in relations.RELATIONS_ONLY if getattr(args, name) != parser.get_default(name)]
    if given:
        parser.error(f"{', '.join('--' + g.replace('_', '-') for g in given)} only apply with --relations")
    ref, est = args.paths
    try:
        result = evaluate(ref, est, align=args.align, max_dt=args.max_dt, rpe_delta_m=args.rpe_delta)
    except TrajectoryError as exc:
        print(f"dsg_jit_ros_eval: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot_xy(args.plot, ref, est, result)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"matched poses   {result.n_matched}")
        print(f"alignment       {result.align} (scale {result.scale:.6f})")
        print(f"ATE RMSE        {result.ate_rmse:.4f} m  (mean {result.ate_mean:.4f}, max {result.ate_max:.4f})")
        print(f"RPE per pair    {result.rpe_rmse:.4f} m RMSE")
        print(f"RPE per metre   {result.rpe_per_m:.5f} m/m ({100 * result.rpe_per_m:.3f} %, over {result.rpe_delta_m:g} m segments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
