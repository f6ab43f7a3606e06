"""The relations metric of Kümmerle et al. 2009 ("On measuring the accuracy of SLAM algorithms").

A *relation* is a reference relative pose ``delta_ref = T(t1)^-1 T(t2)``: the pose of
the robot at time ``t2`` in the frame of the robot at ``t1`` (metres, radians),
for the Freiburg logs obtained by scan matching and checked by hand.  A trajectory is
scored by how well it reproduces these relative poses; no global alignment is
needed, and errors are not smeared along the path as in ATE.

For each relation the estimate's poses ``T_world_body`` at ``t1`` and ``t2`` are
interpolated between its timestamps (translation linear, rotation slerp),
``delta_est = T(t1)^-1 T(t2)`` and the error is ``E = delta_ref^-1 delta_est``:

- 3D (default): translational error ``|t(E)|`` [m], rotational error = rotation
  angle of ``E`` [deg].
- planar (``planar=True``, as the paper uses for 2D logs): ``|(x, y) of t(E)|`` [m]
  and ``|yaw(E)|`` [deg], yaw = ``atan2(E[1, 0], E[0, 0])``.  For planar motion
  both agree; a z offset or a tilt counts only in 3D (a pure z error of ``d`` gives
  ``d`` in 3D and 0 planar; a tilt leaks into the yaw only at second order).

Statistics (mean, std, max and RMS = sqrt of the mean squared error, the paper's
squared-error form) are given over all relations, over 'local' ones
(``|t2 - t1| <= local_max_dt``) and over 'long' ones (the rest, which span loops).
A relation time outside the estimate's time span, or farther than ``max_gap`` from
every estimate pose, cannot be evaluated: it is counted as missing, not scored.

File format (Freiburg ``.relations``): one relation per line
``[TAG] t1 t2 x y z roll pitch yaw`` (times [s]; ``x y z`` [m]; ``roll pitch yaw``
[rad], ``R = Rz(yaw) Ry(pitch) Rx(roll)``); blank lines and ``#`` comments ignored;
an optional leading word (e.g. ``FLASER``) is skipped.

The relations of the real logs are in the log's ``ipc_timestamp`` time base; our
bags use another one.  ``map_relation_times`` maps them through a
``<bag>.scan_stamps.csv`` (``ipc_timestamp`` -> ``bag_stamp_ns / 1e9``, nearest scan).

``evaluate.main`` (``dsg_jit_ros_eval --relations FILE EST.tum``) runs ``cli``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from dsg_jit_ros.geometry.poses import from_xyz_rpy, interpolate, rotation_angle, rpy_of, yaw_of
from dsg_jit_ros.io.text_numbers import finite_floats
from dsg_jit_ros.tools.evaluate import TrajectoryError, TrajectoryLike, _load
from dsg_jit_ros.tools.json_ready import json_ready

__all__ = [
    "GAP",
    "OK",
    "OUTSIDE_SPAN",
    "SPAN_TOLERANCE",
    "ErrorStats",
    "RelationErrors",
    "Relations",
    "RelationsResult",
    "add_cli_arguments",
    "cli",
    "evaluate_relations",
    "format_result",
    "interpolate_poses",
    "map_relation_times",
    "read_relations",
    "read_scan_stamps",
    "relation_errors",
    "relations_from_trajectory",
    "write_relations",
]

OK, OUTSIDE_SPAN, GAP = 0, 1, 2  # RelationErrors.status codes
SPAN_TOLERANCE = 1e-6  # [s] a time this close outside the span counts as its end (stamps rounded differently)


@dataclass(frozen=True)
class Relations:
    """Reference relative poses.

    Attributes:
        t1, t2: (n,) times [s].
        delta: (n, 4, 4) pose of the robot at ``t2`` in the frame of the robot at ``t1`` [m].
        lines: (n,) 1-based source line of each relation (0 when not read from a file).
        source: the file read, or ``""``.
    """

    t1: np.ndarray
    t2: np.ndarray
    delta: np.ndarray
    lines: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.t1)



def read_relations(path: str | os.PathLike[str]) -> Relations:
    """Read a Freiburg relations file (format in the module docstring).

    Raises:
        OSError: unreadable file.
        ValueError: naming the file and 1-based line: not 8 numbers (after an optional
            leading word), a non-finite number, ``t2 == t1``; or no relation at all.
    """
    path = os.fspath(path)
    rows: list[list[float]] = []
    lines: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            if tokens[0][0].isalpha() and tokens[0].lower() not in ("nan", "inf", "infinity"):
                tokens = tokens[1:]  # a tag word such as FLASER
            if len(tokens) != 8:
                raise ValueError(f"{path} line {lineno}: expected 't1 t2 x y z roll pitch yaw' (8 numbers), "
                                 f"got {len(tokens)} values")
            values = finite_floats(tokens, path, lineno)
            if values[0] == values[1]:
                raise ValueError(f"{path} line {lineno}: t2 == t1 ({values[0]!r}): not a relation between two poses")
            rows.append(values)
            lines.append(lineno)
    if not rows:
        raise ValueError(f"{path}: no relations in the file")
    data = np.asarray(rows, dtype=np.float64)
    return Relations(t1=data[:, 0].copy(), t2=data[:, 1].copy(), delta=from_xyz_rpy(data[:, 2:].reshape(-1, 6)),
                     lines=np.asarray(lines, dtype=np.int64), source=path)


def write_relations(path: str | os.PathLike[str], relations: Relations, tag: str | None = None) -> None:
    """Write ``relations`` in the Freiburg format (``repr`` values, so a round trip is exact
    up to matrix -> Euler -> matrix, ~1e-15); with ``tag``, each line starts with that word.

    Raises:
        ValueError: non-finite values.
    """
    from dsg_jit_ros.io import atomic_write_text

    d = np.asarray(relations.delta, dtype=np.float64)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(relations.t1)) and np.all(np.isfinite(relations.t2))):
        raise ValueError("write_relations: non-finite values")
    rpy = rpy_of(d[:, :3, :3])
    rows = np.column_stack([relations.t1, relations.t2, d[:, :3, 3], rpy]).tolist()
    prefix = f"{tag} " if tag else ""
    text = "".join(prefix + " ".join(map(repr, row)) + "\n" for row in rows)
    atomic_write_text(path, "# t1 t2 x y z roll pitch yaw  (pose at t2 in the frame at t1; m, rad)\n" + text)


def relations_from_trajectory(stamps: np.ndarray, poses: np.ndarray, pairs: np.ndarray) -> Relations:
    """Relations ``T_i^-1 T_j`` of a (ground-truth) trajectory for index pairs ``(i, j)`` ((m, 2) ints);
    stamps (n,) [s], poses (n, 4, 4) ``T_world_body`` [m]."""
    stamps = np.asarray(stamps, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    return Relations(t1=stamps[i], t2=stamps[j], delta=np.linalg.inv(poses[i]) @ poses[j],
                     lines=np.zeros(len(pairs), dtype=np.int64))


def read_scan_stamps(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(ipc_timestamp [s], bag stamp [s])`` per scan of a ``<bag>.scan_stamps.csv``
    (columns by header name: ``ipc_timestamp`` and ``bag_stamp_ns``), sorted by ipc time.

    Raises:
        ValueError: a missing column, a non-numeric cell or no rows.
    """
    path = os.fspath(path)
    ipc: list[float] = []
    bag: list[float] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"ipc_timestamp", "bag_stamp_ns"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)}; columns: {reader.fieldnames}")
        for row in reader:
            try:
                ipc.append(float(row["ipc_timestamp"]))
                bag.append(int(row["bag_stamp_ns"]) / 1e9)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {reader.line_num}: {exc}") from None
    if not ipc:
        raise ValueError(f"{path}: no rows")
    order = np.argsort(ipc, kind="stable")
    return np.asarray(ipc)[order], np.asarray(bag)[order]


def _nearest(sorted_t: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index into ``sorted_t`` of the nearest value to each ``t``."""
    k = np.searchsorted(sorted_t, t)
    lo = np.clip(k - 1, 0, len(sorted_t) - 1)
    hi = np.clip(k, 0, len(sorted_t) - 1)
    return np.where(np.abs(sorted_t[lo] - t) <= np.abs(sorted_t[hi] - t), lo, hi)


def map_relation_times(relations: Relations, stamps_csv: str | os.PathLike[str], tolerance: float = 0.01) -> Relations:
    """``relations`` with ``t1``, ``t2`` moved from the log's ipc time base to bag time.

    Each time is replaced by the bag stamp of the scan whose ``ipc_timestamp`` is nearest;
    the default tolerance [s] is far below the scan period (~0.2 s on the real logs).

    Raises:
        ValueError: a relation time with no scan within ``tolerance`` (naming its line).
    """
    ipc, bag = read_scan_stamps(stamps_csv)
    mapped = []
    for name in ("t1", "t2"):
        t = getattr(relations, name)
        k = _nearest(ipc, t)
        off = np.abs(ipc[k] - t)
        if np.any(off > tolerance):
            r = int(np.argmax(off > tolerance))
            where = f"line {relations.lines[r]}" if relations.lines[r] else f"relation {r}"
            raise ValueError(f"{relations.source or 'relations'} {where}: {name} = {float(t[r])!r} matches no scan of "
                             f"{os.fspath(stamps_csv)} within {tolerance} s (nearest ipc_timestamp {float(ipc[k[r]])!r})")
        mapped.append(bag[k])
    return Relations(t1=mapped[0], t2=mapped[1], delta=relations.delta, lines=relations.lines, source=relations.source)


def interpolate_poses(stamps: np.ndarray, poses: np.ndarray, query: np.ndarray,
                      max_gap: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Poses of a trajectory at ``query`` times: translation linear, rotation slerp between
    the bracketing poses.

    Args:
        stamps: (n,) strictly increasing [s]; poses: (n, 4, 4) ``T_world_body`` [m].
        query: (m,) times [s].
        max_gap: largest distance [s] from a query time to the nearest trajectory stamp.

    Returns:
        ``(poses (m, 4, 4), status (m,))``; status ``OK`` (0), ``OUTSIDE_SPAN`` (1: more than
        ``SPAN_TOLERANCE`` before the first or after the last stamp) or ``GAP`` (2: no stamp
        within ``max_gap``);
        poses are NaN where status is not OK.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    n = len(stamps)
    if n == 0:
        raise TrajectoryError("empty trajectory")
    if np.any(np.diff(stamps) <= 0):
        raise TrajectoryError("trajectory stamps must be strictly increasing (duplicate stamps?)")
    status = np.full(len(query), OK, dtype=np.int64)
    status[(query < stamps[0] - SPAN_TOLERANCE) | (query > stamps[-1] + SPAN_TOLERANCE)] = OUTSIDE_SPAN
    k0 = np.clip(np.searchsorted(stamps, query, side="right") - 1, 0, max(n - 2, 0))
    k1 = np.minimum(k0 + 1, n - 1)
    span = stamps[k1] - stamps[k0]
    alpha = np.where(span > 0, (query - stamps[k0]) / np.where(span > 0, span, 1.0), 0.0)
    alpha = np.clip(alpha, 0.0, 1.0)
    gap = np.minimum(np.abs(query - stamps[k0]), np.abs(stamps[k1] - query))
    status[(status == OK) & ~(gap <= max_gap)] = GAP
    out = np.full((len(query), 4, 4), np.nan)
    ok = status == OK
    if np.any(ok):
        a, i, j = alpha[ok], k0[ok], k1[ok]
        out[ok] = interpolate(poses[i], poses[j], a)
    return out, status


@dataclass(frozen=True)
class RelationErrors:
    """Per-relation errors (NaN where not evaluated).

    Attributes:
        trans_m: (n,) translational error [m] (planar: of x, y only).
        rot_deg: (n,) rotational error [deg] (planar: |yaw|).
        status: (n,) ``OK`` 0, ``OUTSIDE_SPAN`` 1, ``GAP`` 2 (worst of the two times).
    """

    trans_m: np.ndarray
    rot_deg: np.ndarray
    status: np.ndarray


def relation_errors(relations: Relations, stamps: np.ndarray, poses: np.ndarray, planar: bool = False,
                    max_gap: float = 1.0) -> RelationErrors:
    """Per-relation errors of the trajectory ``(stamps [s], poses T_world_body [m])`` (module docstring)."""
    p1, s1 = interpolate_poses(stamps, poses, relations.t1, max_gap)
    p2, s2 = interpolate_poses(stamps, poses, relations.t2, max_gap)
    status = np.maximum(s1, s2)
    ok = status == OK
    trans = np.full(len(relations), np.nan)
    rot = np.full(len(relations), np.nan)
    if np.any(ok):
        est = np.linalg.inv(p1[ok]) @ p2[ok]
        err = np.linalg.inv(relations.delta[ok]) @ est
        if planar:
            trans[ok] = np.linalg.norm(err[:, :2, 3], axis=1)
            rot[ok] = np.degrees(np.abs(yaw_of(err)))
        else:
            trans[ok] = np.linalg.norm(err[:, :3, 3], axis=1)
            rot[ok] = np.degrees(rotation_angle(err[:, :3, :3]))
    return RelationErrors(trans_m=trans, rot_deg=rot, status=status)


@dataclass(frozen=True)
class ErrorStats:
    """Error statistics over a set of relations (NaN when ``count`` is 0).

    Translation in metres, rotation in degrees; std is the population standard
    deviation, rms the square root of the mean squared error.
    """

    count: int
    trans_mean_m: float
    trans_std_m: float
    trans_max_m: float
    trans_rms_m: float
    rot_mean_deg: float
    rot_std_deg: float
    rot_max_deg: float
    rot_rms_deg: float

    @staticmethod
    def of(trans: np.ndarray, rot: np.ndarray) -> ErrorStats:
        if len(trans) == 0:
            return ErrorStats(0, *([math.nan] * 8))

        def four(x: np.ndarray) -> list[float]:
            return [float(np.mean(x)), float(np.std(x)), float(np.max(x)), float(np.sqrt(np.mean(x**2)))]

        return ErrorStats(len(trans), *four(trans), *four(rot))


@dataclass(frozen=True)
class RelationsResult:
    """The relations metric of a trajectory (see the module docstring).

    Attributes:
        planar: 2D errors (x, y, yaw) instead of 3D.
        local_max_dt_s: relations with ``|t2 - t1|`` up to this [s] are 'local', the rest 'long'.
        max_gap_s: interpolation limit used [s].
        n_relations: relations given; n_evaluated: scored; n_missing = n_outside_span + n_gap.
        all, local, long: statistics over the scored relations of each group.
    """

    planar: bool
    local_max_dt_s: float
    max_gap_s: float
    n_relations: int
    n_evaluated: int
    n_missing: int
    n_outside_span: int
    n_gap: int
    all: ErrorStats
    local: ErrorStats
    long: ErrorStats

    def to_dict(self) -> dict:
        """Plain nested dict for JSON (NaN and inf -> None)."""
        return json_ready(asdict(self))


def evaluate_relations(relations: Relations | str | os.PathLike[str], est: TrajectoryLike, planar: bool = False,
                       local_max_dt: float = 10.0, max_gap: float = 1.0) -> RelationsResult:
    """Score the estimate ``est`` (TUM path or ``(stamps [s], T_world_body poses)``) against
    ``relations`` (a ``Relations`` or a relations file, times in the estimate's time base).

    Raises:
        TrajectoryError: unreadable or empty estimate, or duplicate estimate stamps.
        ValueError: a malformed relations file.
    """
    rel = relations if isinstance(relations, Relations) else read_relations(relations)
    stamps, poses = _load(est, "estimate")
    errs = relation_errors(rel, stamps, poses, planar=planar, max_gap=max_gap)
    ok = errs.status == OK
    is_local = np.abs(rel.t2 - rel.t1) <= local_max_dt

    def group(mask: np.ndarray) -> ErrorStats:
        m = ok & mask
        return ErrorStats.of(errs.trans_m[m], errs.rot_deg[m])

    return RelationsResult(
        planar=bool(planar), local_max_dt_s=float(local_max_dt), max_gap_s=float(max_gap),
        n_relations=len(rel), n_evaluated=int(np.sum(ok)), n_missing=int(np.sum(~ok)),
        n_outside_span=int(np.sum(errs.status == OUTSIDE_SPAN)), n_gap=int(np.sum(errs.status == GAP)),
        all=group(np.ones(len(rel), dtype=bool)), local=group(is_local), long=group(~is_local),
    )


def format_result(result: RelationsResult) -> str:
    """A small text table of ``result``."""
    kind = "planar (x, y, yaw)" if result.planar else "3D"
    lines = [
        f"relations       {result.n_relations} ({result.n_evaluated} evaluated, {result.n_missing} missing: "
        f"{result.n_outside_span} outside the trajectory, {result.n_gap} beyond the {result.max_gap_s:g} s gap)",
        f"errors          {kind}; local: |t2 - t1| <= {result.local_max_dt_s:g} s",
        f"{'group':8}{'count':>6} {'trans mean':>11} {'std':>8} {'max':>8} {'rms [m]':>8}   "
        f"{'rot mean':>9} {'std':>7} {'max':>7} {'rms [deg]':>9}",
    ]
    for name in ("all", "local", "long"):
        s: ErrorStats = getattr(result, name)
        lines.append(f"{name:8}{s.count:6d} {s.trans_mean_m:11.4f} {s.trans_std_m:8.4f} {s.trans_max_m:8.4f} "
                     f"{s.trans_rms_m:8.4f}   {s.rot_mean_deg:9.3f} {s.rot_std_deg:7.3f} {s.rot_max_deg:7.3f} "
                     f"{s.rot_rms_deg:9.3f}")
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The relations options of ``dsg_jit_ros_eval``."""
    group = parser.add_argument_group("relations metric (Kümmerle et al. 2009): dsg_jit_ros_eval --relations FILE EST.tum")
    group.add_argument("--relations", metavar="FILE",
                       help="score EST against a Freiburg relations file (t1 t2 x y z roll pitch yaw) instead of REF.tum")
    group.add_argument("--stamps", metavar="CSV",
                       help="map relation times (ipc_timestamp) to bag time through a <bag>.scan_stamps.csv")
    group.add_argument("--stamps-tolerance", type=float, default=0.01, metavar="S",
                       help="largest ipc time difference [s] to a scan in --stamps (default: 0.01)")
    group.add_argument("--planar", action="store_true", help="2D errors: |xy| and |yaw| (default: 3D)")
    group.add_argument("--local-max-dt", type=float, default=10.0, metavar="S",
                       help="relations with |t2 - t1| <= S [s] are 'local', the rest 'long' (default: 10)")
    group.add_argument("--max-gap", type=float, default=1.0, metavar="S",
                       help="refuse relation times farther than S [s] from every estimate pose (default: 1)")


RELATIONS_ONLY = ("stamps", "planar", "max_gap", "local_max_dt", "stamps_tolerance")


def cli(args: argparse.Namespace, est: str) -> int:
    """Run the relations metric for ``dsg_jit_ros_eval`` (parsed ``args``, estimate path ``est``);
    prints a table or JSON; 0 on success, 2 on bad input (message on stderr)."""
    import sys

    try:
        rel = read_relations(args.relations)
        if args.stamps:
            rel = map_relation_times(rel, args.stamps, tolerance=args.stamps_tolerance)
        result = evaluate_relations(rel, est, planar=args.planar, local_max_dt=args.local_max_dt, max_gap=args.max_gap)
    except OSError as exc:
        print(f"dsg_jit_ros_eval: error: cannot read {exc.filename!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (TrajectoryError, ValueError) as exc:
        print(f"dsg_jit_ros_eval: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(format_result(result))
    return 0
