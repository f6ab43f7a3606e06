"""Map consistency without ground truth: do scans of the same place agree when revisited?

Each scan (points in the body frame [m]) is placed in the world by its pose
``T_world_body``.  For every query point (the points of every ``scan_step``-th scan,
at most ``max_points`` per scan, evenly spaced: deterministic) the distance [m] to
the nearest point of *all* scans taken at least ``min_dt`` seconds earlier or later
is measured.  With a consistent trajectory, revisited walls coincide and these
distances are small; drift doubles walls and they grow.

What is reported (``ConsistencyStats``):

- ``n_query``: query points; ``n_overlap``: those with such a point within ``cap``
  (a revisit), ``overlap_fraction = n_overlap / n_query``.
- ``median_m``, ``mean_m``: over the overlapping points only.  Points without a
  point within ``cap`` are places seen once (or torn apart by more than ``cap``);
  they carry no distance and are left out of the median.
- ``frac_within_5cm``, ``frac_within_10cm``: of *all* query points.  The
  denominator depends only on the log and the subsampling, not on the
  trajectory, so these fractions compare trajectories of one log directly (a
  drifting trajectory cannot look better by losing overlap).

Optionally the same for a 'local' band (scans 1..10 s apart: registration
quality over short times).  Non-finite points are dropped.

Algorithm (exact within ``cap``): scans are grouped in blocks of ``block_scans``
consecutive scans, one k-d tree per block.  Space is cut into cells of size
``cap``; a query point is only paired with the blocks that have a point in its
cell or a neighbouring one (any point within ``cap`` lies there).  A block
entirely inside the query's allowed time range is queried directly; a block that
straddles a range border is queried for its ``k_partial`` nearest points, which
are filtered by time, and when all of those are too close in time, the allowed
scans of the block are queried one by one.  fr079 (4934 scans, 1.7 M points, 493 k
query points at the default ``max_points=100``) takes ~12 s on one core (~20 s when the
two cores are shared with other jobs); the local band costs about 9 s more.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from dsg_jit_ros.tools.json_ready import json_ready

__all__ = ["Consistency", "ConsistencyStats", "map_consistency", "plot_map", "revisit_distances", "world_points"]

_OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=np.int64)
_KEY_BITS = 21
_KEY_HALF = 1 << (_KEY_BITS - 1)


@dataclass(frozen=True)
class ConsistencyStats:
    """Nearest-point distances of the query points to the scans of one time band.

    Attributes:
        min_dt_s, max_dt_s: scans ``min_dt <= |t - t_query| <= max_dt`` apart [s] count.
        n_query: query points; n_overlap: query points with such a point within the cap.
        overlap_fraction: ``n_overlap / n_query``.
        median_m, mean_m: of the distances of the overlapping points [m] (NaN without any).
        frac_within_5cm, frac_within_10cm: fractions of all query points with a distance
            below 0.05 / 0.10 m.
    """

    min_dt_s: float
    max_dt_s: float
    n_query: int
    n_overlap: int
    overlap_fraction: float
    median_m: float
    mean_m: float
    frac_within_5cm: float
    frac_within_10cm: float

    @staticmethod
    def of(dist: np.ndarray, min_dt: float, max_dt: float) -> ConsistencyStats:
        n = len(dist)
        hit = dist[np.isfinite(dist)]
        nan = math.nan
        return ConsistencyStats(
            min_dt_s=float(min_dt), max_dt_s=float(max_dt), n_query=n, n_overlap=len(hit),
            overlap_fraction=len(hit) / n if n else nan,
            median_m=float(np.median(hit)) if len(hit) else nan, mean_m=float(np.mean(hit)) if len(hit) else nan,
            frac_within_5cm=float(np.sum(hit < 0.05)) / n if n else nan,
            frac_within_10cm=float(np.sum(hit < 0.10)) / n if n else nan,
        )


@dataclass(frozen=True)
class Consistency:
    """Map consistency of a trajectory (see the module docstring).

    Attributes:
        cap_m: largest distance [m] counted as a revisit.
        scan_step, max_points: query subsampling (every ``scan_step``-th scan, at most
            ``max_points`` points per scan; None: all).
        n_scans, n_points: scans and finite points placed (all of them are searched).
        revisit: scans at least ``min_dt`` apart.
        local: scans 1..10 s apart (``local_band``), or None when not computed.
    """

    cap_m: float
    scan_step: int
    max_points: int | None
    n_scans: int
    n_points: int
    revisit: ConsistencyStats
    local: ConsistencyStats | None

    def to_dict(self) -> dict:
        """Plain nested dict for JSON (NaN and inf -> None)."""
        return json_ready(asdict(self))


def world_points(clouds: Sequence[np.ndarray], poses: np.ndarray) -> list[np.ndarray]:
    """Each (N_i, 3) body-frame cloud [m] placed by its ``T_world_body`` ((n, 4, 4)), finite points only."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape != (len(clouds), 4, 4):
        raise ValueError(f"need one (4, 4) pose per scan: {len(clouds)} scans, poses {poses.shape}")
    out = []
    for pts, T in zip(clouds, poses):
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        out.append(pts @ T[:3, :3].T + T[:3, 3])
    return out


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    """(n, 3) integer cells -> (n,) int64 keys."""
    c = cells + _KEY_HALF
    return (c[:, 0] << (2 * _KEY_BITS)) | (c[:, 1] << _KEY_BITS) | c[:, 2]


def _expand(first: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[first_i, first_i + count_i)``: (owner i, value) of every element."""
    owner = np.repeat(np.arange(len(first)), count)
    start = np.repeat(first - np.cumsum(count) + count, count)
    return owner, start + np.arange(int(count.sum()))


class _Index:
    """Block trees, per-scan trees and the cell -> block table of the placed scans."""

    def __init__(self, scans: list[np.ndarray], cap: float, block_scans: int):
        self.n = len(scans)
        sizes = np.array([len(s) for s in scans], dtype=np.int64)
        self.offset = np.concatenate([[0], np.cumsum(sizes)])
        self.points = np.concatenate(scans) if self.offset[-1] else np.zeros((0, 3))
        self.scan_of = np.repeat(np.arange(self.n), sizes)
        self.cap = cap
        nb = (self.n + block_scans - 1) // block_scans
        self.bstart = np.arange(nb, dtype=np.int64) * block_scans
        self.bend = np.minimum(self.bstart + block_scans, self.n)
        self.trees: list[cKDTree | None] = []
        keys, owners = [], []
        cells = self._cells(self.points)
        for b in range(nb):
            lo, hi = self.offset[self.bstart[b]], self.offset[self.bend[b]]
            self.trees.append(cKDTree(self.points[lo:hi]) if hi > lo else None)
            if hi > lo:
                c = np.unique(cells[lo:hi], axis=0)
                k = np.unique(_cell_keys((c[:, None, :] + _OFFSETS[None]).reshape(-1, 3)))
                keys.append(k)
                owners.append(np.full(len(k), b, dtype=np.int64))
        keys_a = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        owners_a = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        order = np.argsort(keys_a, kind="stable")
        self.keys, self.key_block = keys_a[order], owners_a[order]
        self.scan_trees: dict[int, cKDTree] = {}

    def _cells(self, pts: np.ndarray) -> np.ndarray:
        cells = np.floor(pts / self.cap).astype(np.int64)
        if len(cells) and np.max(np.abs(cells)) >= _KEY_HALF - 1:
            raise ValueError(f"points farther than {(_KEY_HALF - 1) * self.cap:g} m from the origin")
        return cells

    def scan_tree(self, s: int) -> cKDTree:
        tree = self.scan_trees.get(s)
        if tree is None:
            tree = self.scan_trees[s] = cKDTree(self.points[self.offset[s]:self.offset[s + 1]])
        return tree

    def nearest(self, query: np.ndarray, qscan: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                k_partial: int, chunk: int = 100_000) -> np.ndarray:
        """Distance [m] from each query point to the nearest point of the scans allowed for its
        scan ``s``, ``[lo[s, r], hi[s, r])`` for r = 0, 1 (inf when none within the cap)."""
        best = np.full(len(query), np.inf)
        qkeys = _cell_keys(self._cells(query))
        first = np.searchsorted(self.keys, qkeys, side="left")
        count = np.searchsorted(self.keys, qkeys, side="right") - first
        for c0 in range(0, len(query), chunk):
            sel = slice(c0, min(c0 + chunk, len(query)))
            owner, pos = _expand(first[sel], count[sel])
            qi = owner + c0
            blk = self.key_block[pos]
            s = qscan[qi]
            b0, b1 = self.bstart[blk], self.bend[blk]
            inside = np.zeros(len(qi), dtype=bool)
            meets = np.zeros(len(qi), dtype=bool)
            for r in range(2):
                inside |= (b0 >= lo[s, r]) & (b1 <= hi[s, r])
                meets |= (b1 > lo[s, r]) & (b0 < hi[s, r]) & (lo[s, r] < hi[s, r])
            self._full(query, qi[inside], blk[inside], best)
            self._partial(query, qscan, lo, hi, qi[meets & ~inside], blk[meets & ~inside], best, k_partial)
        return best

    @staticmethod
    def _groups(qi: np.ndarray, key: np.ndarray, n: int):
        """(key value, query indices) for each key value present."""
        order = np.argsort(key, kind="stable")
        qi, key = qi[order], key[order]
        bounds = np.searchsorted(key, np.arange(n + 1))
        for v in np.nonzero(np.diff(bounds))[0]:
            yield int(v), qi[bounds[v]:bounds[v + 1]]

    def _full(self, query, qi, blk, best):
        for b, idx in self._groups(qi, blk, len(self.trees)):
            d, _ = self.trees[b].query(query[idx], distance_upper_bound=self.cap)
            np.minimum.at(best, idx, d)

    def _partial(self, query, qscan, lo, hi, qi, blk, best, k_partial):
        undecided_q, undecided_b = [], []
        for b, idx in self._groups(qi, blk, len(self.trees)):
            tree = self.trees[b]
            k = min(k_partial, tree.n)
            d, j = tree.query(query[idx], k=k, distance_upper_bound=self.cap)
            d, j = d.reshape(len(idx), k), j.reshape(len(idx), k)
            found = np.isfinite(d)
            rs = self.scan_of[self.offset[self.bstart[b]] + np.where(found, j, 0)]
            s = qscan[idx][:, None]
            ok = found & (((rs >= lo[s, 0]) & (rs < hi[s, 0])) | ((rs >= lo[s, 1]) & (rs < hi[s, 1])))
            np.minimum.at(best, idx, np.where(ok, d, np.inf).min(axis=1))
            # all k neighbours too close in time and the k-th within the cap: more may follow
            undecided = ~ok.any(axis=1) & found[:, -1]
            undecided_q.append(idx[undecided])
            undecided_b.append(np.full(int(undecided.sum()), b, dtype=np.int64))
        if not undecided_q:
            return
        uq, ub = np.concatenate(undecided_q), np.concatenate(undecided_b)
        pairs_q, pairs_s = [], []
        for r in range(2):
            s = qscan[uq]
            a = np.maximum(self.bstart[ub], lo[s, r])
            e = np.minimum(self.bend[ub], hi[s, r])
            owner, scan = _expand(a, np.maximum(e - a, 0))
            pairs_q.append(uq[owner])
            pairs_s.append(scan)
        for sc, idx in self._groups(np.concatenate(pairs_q), np.concatenate(pairs_s), self.n):
            if self.offset[sc + 1] > self.offset[sc]:
                d, _ = self.scan_tree(sc).query(query[idx], distance_upper_bound=self.cap)
                np.minimum.at(best, idx, d)


def _check(clouds, stamps, poses, min_dt, cap, scan_step, max_points, block_scans, k_partial) -> np.ndarray:
    stamps = np.asarray(stamps, dtype=np.float64)
    if stamps.shape != (len(clouds),):
        raise ValueError(f"need one stamp per scan: {len(clouds)} scans, stamps {stamps.shape}")
    if np.shape(poses) != (len(clouds), 4, 4):
        raise ValueError(f"need one (4, 4) pose per scan: {len(clouds)} scans, poses {np.shape(poses)}")
    if not np.all(np.isfinite(stamps)):
        raise ValueError("non-finite stamps")
    if not (min_dt > 0 and cap > 0 and scan_step >= 1 and block_scans >= 1 and k_partial >= 1):
        raise ValueError("min_dt > 0, cap > 0, scan_step >= 1, block_scans >= 1 and k_partial >= 1 are required")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be >= 1 or None, got {max_points}")
    return stamps


class _Problem:
    """Scans sorted by time and placed, the search index and the query points."""

    def __init__(self, clouds, stamps, poses, cap, scan_step, max_points, block_scans):
        self.order = np.argsort(stamps, kind="stable")
        self.t = stamps[self.order]
        scans = world_points([clouds[i] for i in self.order], np.asarray(poses, dtype=np.float64)[self.order])
        self.index = _Index(scans, cap, block_scans)
        q_points, q_scan = [], []
        for s in range(0, len(scans), scan_step):
            pts = scans[s]
            if max_points is not None and len(pts) > max_points:
                pts = pts[np.unique(np.round(np.linspace(0, len(pts) - 1, max_points)).astype(np.int64))]
            q_points.append(pts)
            q_scan.append(np.full(len(pts), s, dtype=np.int64))
        self.query = np.concatenate(q_points) if q_points else np.zeros((0, 3))
        self.qscan = np.concatenate(q_scan) if q_scan else np.zeros(0, dtype=np.int64)

    def distances(self, dt_lo: float, dt_hi: float, k_partial: int) -> np.ndarray:
        """Nearest distances to the scans ``dt_lo <= |t - t_query| <= dt_hi`` apart (inf: none within the cap)."""
        t, n = self.t, len(self.t)
        lo = np.stack([np.searchsorted(t, t - dt_hi, side="left"), np.searchsorted(t, t + dt_lo, side="left")], axis=1)
        hi = np.stack([np.searchsorted(t, t - dt_lo, side="right"), np.searchsorted(t, t + dt_hi, side="right")], axis=1)
        return self.index.nearest(self.query, self.qscan, lo, np.minimum(hi, n), k_partial)


def revisit_distances(clouds: Sequence[np.ndarray], stamps: np.ndarray, poses: np.ndarray, min_dt: float = 30.0,
                      max_dt: float = math.inf, cap: float = 1.0, scan_step: int = 1, max_points: int | None = 100,
                      block_scans: int = 64, k_partial: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query point, the distance [m] to the nearest point of the scans ``min_dt <= |dt| <= max_dt``
    seconds apart (inf when none is within ``cap``); arguments as ``map_consistency``.

    Returns:
        ``(points (M, 3) world [m], scan (M,) index into clouds, distance (M,) [m])``, query
        points grouped by scan in time order.
    """
    stamps = _check(clouds, stamps, poses, min_dt, cap, scan_step, max_points, block_scans, k_partial)
    if not max_dt >= min_dt:
        raise ValueError(f"max_dt must be >= min_dt, got {max_dt} < {min_dt}")
    prob = _Problem(clouds, stamps, poses, cap, scan_step, max_points, block_scans)
    return prob.query, prob.order[prob.qscan], prob.distances(min_dt, max_dt, k_partial)


def map_consistency(clouds: Sequence[np.ndarray], stamps: np.ndarray, poses: np.ndarray, min_dt: float = 30.0,
                    cap: float = 1.0, scan_step: int = 1, max_points: int | None = 100, local: bool = False,
                    local_band: tuple[float, float] = (1.0, 10.0), block_scans: int = 64,
                    k_partial: int = 16) -> Consistency:
    """Consistency of the map made of ``clouds`` placed by ``poses`` (module docstring).

    Args:
        clouds: n arrays (N_i, 3), points in the body frame [m].
        stamps: (n,) scan times [s].
        poses: (n, 4, 4) ``T_world_body`` of each scan [m].
        min_dt: scans at least this far apart in time [s] are revisits.
        cap: largest distance [m] counted as a revisit (and the cell size of the search).
        scan_step, max_points: query every ``scan_step``-th scan (in time order), at most
            ``max_points`` evenly spaced points of each (None: all).  The searched map is
            always all points of all scans.
        local: also compute the 'local' band ``local_band`` [s] (about as costly again).
        block_scans, k_partial: search tuning only (the result does not depend on them).

    Raises:
        ValueError: mismatched inputs or non-positive parameters.
    """
    stamps = _check(clouds, stamps, poses, min_dt, cap, scan_step, max_points, block_scans, k_partial)
    if not 0 < local_band[0] <= local_band[1]:
        raise ValueError(f"local_band must satisfy 0 < lo <= hi, got {local_band}")
    prob = _Problem(clouds, stamps, poses, cap, scan_step, max_points, block_scans)
    revisit = ConsistencyStats.of(prob.distances(min_dt, math.inf, k_partial), min_dt, math.inf)
    local_stats = None
    if local:
        local_stats = ConsistencyStats.of(prob.distances(*local_band, k_partial), *local_band)
    return Consistency(cap_m=float(cap), scan_step=int(scan_step), max_points=max_points, n_scans=len(stamps),
                       n_points=int(prob.index.offset[-1]), revisit=revisit, local=local_stats)


def plot_map(path: str | os.PathLike[str], clouds: Sequence[np.ndarray], poses: np.ndarray,
             stamps: np.ndarray | None = None, scan_step: int = 1, title: str | None = None,
             point_size: float = 0.3, dpi: int = 150) -> None:
    """Top view (x-y [m], equal axes) PNG of the scans placed by ``poses`` (``T_world_body``)
    as small dots, coloured by scan time when ``stamps`` are given (so doubled walls from
    different visits show in different colours), and the trajectory as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    poses = np.asarray(poses, dtype=np.float64)
    keep = np.arange(0, len(clouds), scan_step)
    scans = world_points([clouds[i] for i in keep], poses[keep])
    xyz = np.concatenate(scans) if scans else np.zeros((0, 3))
    fig, ax = plt.subplots(figsize=(10, 10), dpi=dpi)
    if stamps is not None:
        t = np.repeat(np.asarray(stamps, dtype=np.float64)[keep], [len(s) for s in scans])
        sc = ax.scatter(xyz[:, 0], xyz[:, 1], c=t, s=point_size, cmap="viridis", marker=".", linewidths=0,
                        rasterized=True)
        fig.colorbar(sc, ax=ax, shrink=0.6, label="scan time [s]")
    else:
        ax.scatter(xyz[:, 0], xyz[:, 1], s=point_size, c="k", marker=".", linewidths=0, rasterized=True)
    ax.plot(poses[:, 0, 3], poses[:, 1, 3], "-", color="tab:red", lw=0.6, label="trajectory")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dsg_jit_ros.tools.consistency BAG [--tum EST.tum] [--png PNG] [--json]``: consistency of
    the bag's scans placed by its raw odometry (or by EST interpolated at the scan stamps)."""
    import argparse
    import json
    import sys
    import time

    from dsg_jit_ros.tools.log_reader import read_laser_log

    parser = argparse.ArgumentParser(prog="python -m dsg_jit_ros.tools.consistency", description=main.__doc__)
    parser.add_argument("bag", help="bag directory with /odom and /points")
    parser.add_argument("--tum", help="trajectory T_world_body (TUM) to place the scans by, instead of the odometry")
    parser.add_argument("--max-gap", type=float, default=1.0, help="with --tum: interpolation limit [s] (default: 1)")
    parser.add_argument("--min-dt", type=float, default=30.0, help="revisit time [s] (default: 30)")
    parser.add_argument("--cap", type=float, default=1.0, help="revisit distance cap [m] (default: 1)")
    parser.add_argument("--max-points", type=int, default=100, help="query points per scan, 0: all (default: 100)")
    parser.add_argument("--scan-step", type=int, default=1, help="query every n-th scan (default: 1)")
    parser.add_argument("--local", action="store_true", help="also the 1..10 s band")
    parser.add_argument("--png", help="write a top-view map PNG")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    log = read_laser_log(args.bag)
    stamps, clouds = log.cloud_stamps, list(log.clouds)
    if args.tum:
        from dsg_jit_ros.io.tum import read_tum
        from dsg_jit_ros.tools.relations import OK, interpolate_poses

        poses, status = interpolate_poses(*read_tum(args.tum), stamps, max_gap=args.max_gap)
        keep = np.nonzero(status == OK)[0]
        print(f"{len(keep)} of {len(stamps)} scans within the trajectory", file=sys.stderr)
        stamps, clouds, poses = stamps[keep], [clouds[i] for i in keep], poses[keep]
    else:
        poses = log.odometry_at_clouds()
    read_s = time.perf_counter() - started
    result = map_consistency(clouds, stamps, poses, min_dt=args.min_dt, cap=args.cap, scan_step=args.scan_step,
                             max_points=args.max_points or None, local=args.local)
    metric_s = time.perf_counter() - started - read_s
    if args.png:
        plot_map(args.png, clouds, poses, stamps, title=f"{os.path.basename(os.path.normpath(args.bag))}: "
                 f"median {result.revisit.median_m:.3f} m, {100 * result.revisit.frac_within_5cm:.1f} % within 5 cm")
    if args.json:
        print(json.dumps({**result.to_dict(), "read_s": read_s, "metric_s": metric_s}))
    else:
        for name in ("revisit", "local"):
            s = getattr(result, name)
            if s is not None:
                print(f"{name:8} |dt| {s.min_dt_s:g}..{s.max_dt_s:g} s: median {s.median_m:.4f} m, mean {s.mean_m:.4f} m, "
                      f"within 5 cm {100 * s.frac_within_5cm:.1f} %, within 10 cm {100 * s.frac_within_10cm:.1f} %, "
                      f"overlap {s.n_overlap}/{s.n_query} ({100 * s.overlap_fraction:.1f} %)")
        print(f"{result.n_scans} scans, {result.n_points} points; read {read_s:.1f} s, metric {metric_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
